"""``risk cds-feedback``: rates per card type from the store, bad dates rejected with exit status 2."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from risk.cli import main
from risk.config import StoreSettings
from risk.store import open_database
from risk.store.cds import insert_cards, insert_feedback


def test_rates_printed_as_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    monkeypatch.setenv("RISK_STORE__URL", url)
    db = open_database(StoreSettings(url=url))
    card = str(uuid.uuid4())
    now = datetime.now(UTC)
    with db.session() as s:
        insert_cards(s, [{"uuid": card, "service_id": "lung-risk", "hook": "patient-view", "hook_instance": "h",
                          "card_type": "screening-due", "indicator": "info", "patient": "Patient/p",
                          "assessment_id": None, "issued_at": now, "suggestions": None}])
        insert_feedback(s, [{"item_digest": "d1", "service_id": "lung-risk", "card_uuid": card,
                             "card_type": "screening-due", "outcome": "overridden", "outcome_timestamp": now,
                             "accepted_suggestions": None, "override_system": "sys", "override_code": "c",
                             "user_comment": None, "received_at": now}])
    db.dispose()
    assert main(["cds-feedback", "--since", "2000-01-01"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rates"] == [{"card_type": "screening-due", "issued": 1, "with_feedback": 1, "accepted": 0,
                             "overridden": 1, "accept_rate": 0.0, "override_rate": 1.0, "response_rate": 1.0}]
    assert out["override_reasons"] == [{"system": "sys", "code": "c", "count": 1}]


def test_bad_date_is_exit_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cds-feedback", "--since", "yesterday"]) == 2
    assert "--since" in capsys.readouterr().err
