"""Server-side SMART sessions: the browser holds only an opaque cookie; tokens never leave the server.

A row is created at launch (phase ``authorizing``: ``state`` and the PKCE ``code_verifier``), becomes
``active`` after the code exchange (tokens and launch context; ``state`` and verifier are erased), and is
deleted at logout or expiry. The row's key is the SHA-256 of the cookie value, so the table alone does not
yield usable cookies; the session id is rotated when the sign-in completes (no session fixation). Tokens are
encrypted at rest when ``settings.smart.token_key`` (a Fernet key) is set.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete

from risk.store.db import Database
from risk.store.smart_session import SmartSessionRow

COOKIE_BYTES = 32


class SessionPhase(StrEnum):
    AUTHORIZING = "authorizing"
    ACTIVE = "active"


class LaunchMode(StrEnum):
    EHR = "ehr"
    STANDALONE = "standalone"


@dataclass(frozen=True, slots=True)
class SmartSession:
    """A decrypted, immutable view of one session row."""

    id_hash: str
    phase: SessionPhase
    launch_mode: LaunchMode
    created_at: datetime
    expires_at: datetime
    iss: str
    client_id: str
    redirect_uri: str
    token_endpoint: str
    jwks_uri: str | None
    auth_issuer: str | None
    requested_scope: str
    state: str | None
    code_verifier: str | None = field(repr=False)
    csrf_token: str = field(repr=False)
    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    token_expires_at: datetime | None = None
    granted_scope: str | None = None
    patient_id: str | None = None
    encounter_id: str | None = None
    fhir_user: str | None = None
    need_patient_banner: bool | None = None
    app_context: str | None = None
    launch_context: Mapping[str, Any] | None = None

    def token_expires_within(self, seconds: float, now: datetime | None = None) -> bool:
        if self.token_expires_at is None:
            return True
        return self.token_expires_at - (now or datetime.now(UTC)) <= timedelta(seconds=seconds)


def hash_cookie(cookie_value: str) -> str:
    return hashlib.sha256(cookie_value.encode("utf-8")).hexdigest()


def _aware(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes even for timezone=True columns
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class TokenCipher:
    """Fernet encryption of tokens at rest when a key is configured; pass-through otherwise."""

    PREFIX = "fernet:"

    def __init__(self, key: str | None) -> None:
        self._fernet = Fernet(key.encode("ascii")) if key else None

    @property
    def encrypting(self) -> bool:
        return self._fernet is not None

    def seal(self, value: str | None) -> str | None:
        if value is None or self._fernet is None:
            return value
        return self.PREFIX + self._fernet.encrypt(value.encode("utf-8")).decode("ascii")

    def open(self, value: str | None) -> str | None:
        if value is None or not value.startswith(self.PREFIX):
            return value
        if self._fernet is None:
            return None  # sealed with a key we no longer have: treat as no token
        try:
            return self._fernet.decrypt(value[len(self.PREFIX):].encode("ascii")).decode("utf-8")
        except InvalidToken:
            return None


class SessionStore:
    """CRUD for :class:`SmartSession` over the service's database."""

    def __init__(self, db: Database, *, ttl_s: int, cipher: TokenCipher | None = None) -> None:
        self._db = db
        self._ttl = timedelta(seconds=ttl_s)
        self._cipher = cipher or TokenCipher(None)

    def create_pending(self, *, launch_mode: LaunchMode, iss: str, client_id: str, redirect_uri: str,
                       token_endpoint: str, jwks_uri: str | None, auth_issuer: str | None, requested_scope: str,
                       state: str, code_verifier: str) -> tuple[str, SmartSession]:
        """A new session in phase ``authorizing``; returns the cookie value (shown to the browser once)."""
        cookie = secrets.token_urlsafe(COOKIE_BYTES)
        now = datetime.now(UTC)
        row = SmartSessionRow(
            id_hash=hash_cookie(cookie), phase=SessionPhase.AUTHORIZING.value, launch_mode=launch_mode.value,
            created_at=now, updated_at=now, expires_at=now + min(self._ttl, timedelta(minutes=15)),
            iss=iss, client_id=client_id, redirect_uri=redirect_uri, token_endpoint=token_endpoint,
            jwks_uri=jwks_uri, auth_issuer=auth_issuer, requested_scope=requested_scope, state=state,
            code_verifier=code_verifier, csrf_token=secrets.token_urlsafe(32))
        with self._db.session() as s:
            s.add(row)
            s.flush()
            view = self._view(row)
        return cookie, view

    def get(self, cookie_value: str | None) -> SmartSession | None:
        """The live session for a cookie; expired sessions are deleted and give None."""
        if not cookie_value:
            return None
        key = hash_cookie(cookie_value)
        with self._db.session() as s:
            row = s.get(SmartSessionRow, key)
            if row is None:
                return None
            if _aware(row.expires_at) <= datetime.now(UTC):  # type: ignore[operator]
                s.delete(row)
                return None
            return self._view(row)

    def activate(self, old_cookie: str, *, access_token: str, refresh_token: str | None,
                 token_expires_at: datetime, granted_scope: str, patient_id: str | None,
                 encounter_id: str | None, fhir_user: str | None, need_patient_banner: bool | None,
                 app_context: str | None, launch_context: Mapping[str, Any]) -> tuple[str, SmartSession]:
        """Complete the sign-in: store tokens, erase state and verifier, rotate the session id."""
        new_cookie = secrets.token_urlsafe(COOKIE_BYTES)
        now = datetime.now(UTC)
        with self._db.session() as s:
            row = s.get(SmartSessionRow, hash_cookie(old_cookie))
            if row is None:
                raise LookupError("session vanished during sign-in")
            fresh = SmartSessionRow(**{c.name: getattr(row, c.name) for c in SmartSessionRow.__table__.columns})
            s.delete(row)
            s.flush()
            fresh.id_hash = hash_cookie(new_cookie)
            fresh.phase = SessionPhase.ACTIVE.value
            fresh.updated_at = now
            fresh.expires_at = now + self._ttl
            fresh.state = None
            fresh.code_verifier = None
            fresh.csrf_token = secrets.token_urlsafe(32)
            fresh.access_token = self._cipher.seal(access_token)
            fresh.refresh_token = self._cipher.seal(refresh_token)
            fresh.token_expires_at = token_expires_at
            fresh.granted_scope = granted_scope
            fresh.patient_id = patient_id
            fresh.encounter_id = encounter_id
            fresh.fhir_user = fhir_user
            fresh.need_patient_banner = need_patient_banner
            fresh.app_context = app_context
            fresh.launch_context = dict(launch_context)
            s.add(fresh)
            s.flush()
            view = self._view(fresh)
        return new_cookie, view

    def update_tokens(self, id_hash: str, *, access_token: str, refresh_token: str | None,
                      token_expires_at: datetime, granted_scope: str) -> SmartSession | None:
        """Store refreshed tokens; a refresh response without a new refresh token keeps the old one."""
        with self._db.session() as s:
            row = s.get(SmartSessionRow, id_hash)
            if row is None:
                return None
            row.access_token = self._cipher.seal(access_token)
            if refresh_token is not None:
                row.refresh_token = self._cipher.seal(refresh_token)
            row.token_expires_at = token_expires_at
            row.granted_scope = granted_scope
            row.updated_at = datetime.now(UTC)
            s.flush()
            return self._view(row)

    def reload(self, id_hash: str) -> SmartSession | None:
        with self._db.session() as s:
            row = s.get(SmartSessionRow, id_hash)
            return None if row is None else self._view(row)

    def delete(self, id_hash: str) -> None:
        with self._db.session() as s:
            s.execute(delete(SmartSessionRow).where(SmartSessionRow.id_hash == id_hash))

    def purge_expired(self, now: datetime | None = None) -> int:
        now = now or datetime.now(UTC)
        with self._db.session() as s:
            result = s.execute(delete(SmartSessionRow).where(SmartSessionRow.expires_at <= now))
            return int(getattr(result, "rowcount", 0) or 0)

    def _view(self, row: SmartSessionRow) -> SmartSession:
        return SmartSession(
            id_hash=row.id_hash, phase=SessionPhase(row.phase), launch_mode=LaunchMode(row.launch_mode),
            created_at=_aware(row.created_at), expires_at=_aware(row.expires_at),  # type: ignore[arg-type]
            iss=row.iss, client_id=row.client_id, redirect_uri=row.redirect_uri, token_endpoint=row.token_endpoint,
            jwks_uri=row.jwks_uri, auth_issuer=row.auth_issuer, requested_scope=row.requested_scope,
            state=row.state, code_verifier=row.code_verifier, csrf_token=row.csrf_token,
            access_token=self._cipher.open(row.access_token), refresh_token=self._cipher.open(row.refresh_token),
            token_expires_at=_aware(row.token_expires_at), granted_scope=row.granted_scope,
            patient_id=row.patient_id, encounter_id=row.encounter_id, fhir_user=row.fhir_user,
            need_patient_banner=row.need_patient_banner, app_context=row.app_context,
            launch_context=row.launch_context)


__all__ = ["LaunchMode", "SessionPhase", "SessionStore", "SmartSession", "SmartSessionRow", "TokenCipher",
           "hash_cookie"]
