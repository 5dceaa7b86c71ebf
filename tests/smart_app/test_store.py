"""Server-side sessions: hashed ids, rotation at sign-in, expiry, encrypted tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from risk.store.db import Database
from smart_app.store import LaunchMode, SessionPhase, SessionStore, SmartSessionRow, TokenCipher, hash_cookie


@pytest.fixture
def db(tmp_path: Path) -> Database:
    d = Database(f"sqlite:///{tmp_path}/s.db")
    d.upgrade()
    return d


def _pending(store: SessionStore) -> str:
    cookie, sess = store.create_pending(
        launch_mode=LaunchMode.EHR, iss="http://fhir/R4", client_id="lungrisk-app", redirect_uri="http://app/cb",
        token_endpoint="http://as/token", jwks_uri=None, auth_issuer=None, requested_scope="launch",
        state="state-1", code_verifier="v" * 43)
    assert sess.phase is SessionPhase.AUTHORIZING and sess.state == "state-1"
    return cookie


def _activate(store: SessionStore, cookie: str, expires_in_s: int = 3600) -> str:
    new, _ = store.activate(cookie, access_token="AT-1", refresh_token="RT-1",
                            token_expires_at=datetime.now(UTC) + timedelta(seconds=expires_in_s),
                            granted_scope="launch patient/*.rs", patient_id="p1", encounter_id=None,
                            fhir_user="Practitioner/1", need_patient_banner=True, app_context=None,
                            launch_context={"fhirContext": []})
    return new


def test_row_key_is_the_hash_not_the_cookie(db: Database) -> None:
    store = SessionStore(db, ttl_s=3600)
    cookie = _pending(store)
    with db.session() as s:
        keys = list(s.scalars(select(SmartSessionRow.id_hash)))
    assert keys == [hash_cookie(cookie)] and cookie not in keys


def test_activation_rotates_the_id_and_erases_state_and_verifier(db: Database) -> None:
    store = SessionStore(db, ttl_s=3600)
    cookie = _pending(store)
    new = _activate(store, cookie)
    assert new != cookie
    assert store.get(cookie) is None  # the pre-login id no longer works (no session fixation)
    sess = store.get(new)
    assert sess is not None and sess.phase is SessionPhase.ACTIVE
    assert sess.state is None and sess.code_verifier is None
    assert sess.access_token == "AT-1" and sess.patient_id == "p1"


def test_refresh_keeps_the_old_refresh_token_when_none_is_returned(db: Database) -> None:
    store = SessionStore(db, ttl_s=3600)
    sess = store.get(_activate(store, _pending(store)))
    assert sess is not None
    updated = store.update_tokens(sess.id_hash, access_token="AT-2", refresh_token=None,
                                  token_expires_at=datetime.now(UTC) + timedelta(hours=1), granted_scope="x")
    assert updated is not None and updated.access_token == "AT-2" and updated.refresh_token == "RT-1"


def test_expired_sessions_are_gone(db: Database) -> None:
    store = SessionStore(db, ttl_s=60)
    cookie = _activate(store, _pending(store))
    assert store.purge_expired(datetime.now(UTC) + timedelta(seconds=61)) == 1
    assert store.get(cookie) is None


def test_token_expiry_check() -> None:
    from smart_app.store import SmartSession

    now = datetime.now(UTC)
    sess = SmartSession(id_hash="h", phase=SessionPhase.ACTIVE, launch_mode=LaunchMode.EHR, created_at=now,
                        expires_at=now, iss="i", client_id="c", redirect_uri="r", token_endpoint="t", jwks_uri=None,
                        auth_issuer=None, requested_scope="", state=None, code_verifier=None, csrf_token="x",
                        token_expires_at=now + timedelta(seconds=30))
    assert sess.token_expires_within(60, now) and not sess.token_expires_within(10, now)


def test_tokens_are_encrypted_at_rest_with_a_key(db: Database) -> None:
    store = SessionStore(db, ttl_s=3600, cipher=TokenCipher(Fernet.generate_key().decode()))
    new = _activate(store, _pending(store))
    with db.session() as s:
        row = s.get(SmartSessionRow, hash_cookie(new))
        assert row is not None and row.access_token is not None
        assert "AT-1" not in row.access_token and row.access_token.startswith("fernet:")
    sess = store.get(new)
    assert sess is not None and sess.access_token == "AT-1" and sess.refresh_token == "RT-1"
    # a store without the key cannot use the tokens (and does not pass the ciphertext off as a token)
    assert SessionStore(db, ttl_s=3600).get(new).access_token is None  # type: ignore[union-attr]
