"""Card rendering from an Assessment: the indicator policy, summary length, stale data, gaps, model versions."""

from __future__ import annotations

import uuid
from datetime import timedelta

from risk import codes
from risk.assess import assess
from risk.cds.cards import CardSettings, new_uuid, patient_view_cards, summary
from risk.domain import ConditionKind, SourceState, SourceStatus
from tests.assess.builders import AS_OF, observation, snapshot, study, track
from tests.cds.conftest import assert_no_empty, validator

CS = CardSettings(base_url="https://cds.example.org", synthetic_data=True)
RESPONSE = validator("response")


def _cards(s):  # type: ignore[no-untyped-def]
    cards = [c.card for c in patient_view_cards(assess(s), s, CS)]
    document = {"cards": cards}
    assert not list(RESPONSE.iter_errors(document))
    assert_no_empty(document, allow_empty_cards=True)
    return cards


def test_card_uuids_are_random_rfc_9562_version_4() -> None:
    made = [new_uuid() for _ in range(2000)]
    assert len(set(made)) == len(made)
    for text in made:
        parsed = uuid.UUID(text)
        assert (str(parsed), parsed.version, parsed.variant) == (text, 4, uuid.RFC_4122)
    # every non-fixed bit takes both values somewhere in the sample
    ored, anded = 0, (1 << 128) - 1
    for text in made:
        ored |= uuid.UUID(text).int
        anded &= uuid.UUID(text).int
    assert bin(ored ^ anded).count("1") == 122


def test_summary_is_cut_below_140_characters() -> None:
    text = "word " * 60
    out = summary(text)
    assert len(out) < 140 and out.endswith("…")
    assert summary("short") == "short"


def test_high_risk_outside_screening_criteria() -> None:
    (card,) = _cards(snapshot(age=48, cigarettes_per_day=40, smoking_years=33, pack_years=66,
                              conditions=(ConditionKind.COPD,), family_history=True))
    assert card["source"]["topic"]["code"] == codes.CARD_HIGH_RISK.code
    assert card["indicator"] == "warning"
    assert "screening criteria not met" in card["summary"] and "PLCOm2012" in card["summary"]
    assert "age 48 outside 50-80" in card["detail"]


def test_rising_nodule_without_a_due_follow_up_gets_a_risk_card() -> None:
    first, second = AS_OF - timedelta(days=300), AS_OF - timedelta(days=20)
    s = snapshot(age=45, pack_years=10, studies=(study("1.1", first, "CT abdomen"), study("1.2", second, "CT abdomen")),
                 tracks=(track("n1", observation("1.1", first, 6.0), observation("1.2", second, 8.0)),))
    cards = _cards(s)
    risk = next(c for c in cards if c["source"]["topic"]["code"] == codes.CARD_HIGH_RISK.code)
    assert risk["summary"].startswith("Rising lung cancer risk") and "n1" in risk["summary"]


def test_stale_smoking_history_is_flagged_in_the_detail() -> None:
    (card,) = _cards(snapshot(smoking_recorded=AS_OF - timedelta(days=700)))
    assert "⚠ stale (> 365 days)" in card["detail"] and "**Stale data:** smoking history" in card["detail"]
    assert "_Demo deployment on synthetic data" in card["detail"]


def test_gaps_are_listed_in_cards() -> None:
    s = snapshot(source_status=(SourceStatus("pacs", SourceState.UNAVAILABLE, "timed out"),))
    (card,) = _cards(s)
    assert "**Could not be checked:** imaging (PACS): not reachable: timed out" in card["detail"]
    assert "**Models and guidelines:**" in card["detail"] and "plcom2012 tammemagi-nejm-2013" in card["detail"]


def test_app_context_is_read_by_the_smart_app() -> None:
    from risk.smart.launch import parse_app_context

    seen = AS_OF - timedelta(days=150)
    s = snapshot(studies=(study("1.2", seen),),
                 tracks=(track("n1", observation("1.2", seen, long_mm=10.0, short_mm=9.0, tracking_uid="2.25.7")),))
    card = next(c for c in _cards(s) if c["source"]["topic"]["code"] == codes.CARD_NODULE_FOLLOW_UP.code)
    link = next(link for link in card["links"] if link["type"] == "smart")
    context = parse_app_context(link["appContext"])
    assert context is not None and context.tracking_uid == "2.25.7" and context.view == "timeline"
    assert context.assessment_id
