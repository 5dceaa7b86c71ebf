"""Coordinator access: who may see which sites, and their server-side sessions.

Coordinators sign in with a SMART standalone launch as a practitioner (risk.population.web reuses smart_app's launch
helpers: discovery, PKCE, authorize URL, code exchange, id_token verification). The verified ``fhirUser``
(``Practitioner/<id>``) must be a member of a program in ``population.programs``; the session then carries that
program's sites, and every query of the pages is restricted to them. A user in no program is refused (403), never
shown an empty worklist.

The browser holds an opaque random cookie; the store keeps its SHA-256 (``coordinator_session``), the program, the
sites and a CSRF token for the forms.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import delete, select

from risk.config import CoordinatorProgram, PopulationSettings
from risk.store.db import Database
from risk.store.population import CoordinatorSession

PENDING: Final = "pending"
ACTIVE: Final = "active"
PENDING_TTL_S: Final = 600


def hash_cookie(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def program_of(settings: PopulationSettings, user: str | None) -> CoordinatorProgram | None:
    """The program whose members include ``user`` (a ``Practitioner/<id>`` reference)."""
    if not user:
        return None
    for program in settings.programs:
        if user in program.members:
            return program
    return None


@dataclass(frozen=True, slots=True)
class Coordinator:
    user: str
    program: str
    sites: tuple[str, ...]
    csrf_token: str
    id_hash: str


class SessionStore:
    def __init__(self, db: Database, ttl_s: int) -> None:
        self.db = db
        self.ttl_s = ttl_s

    def create_pending(self, *, state: str, code_verifier: str, token_endpoint: str, jwks_uri: str | None,
                       auth_issuer: str | None, iss: str) -> str:
        cookie = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with self.db.session() as s:
            s.execute(delete(CoordinatorSession).where(CoordinatorSession.expires_at < now))
            s.add(CoordinatorSession(id_hash=hash_cookie(cookie), phase=PENDING, created_at=now,
                                     expires_at=now + timedelta(seconds=PENDING_TTL_S), state=state,
                                     code_verifier=code_verifier, token_endpoint=token_endpoint, jwks_uri=jwks_uri,
                                     auth_issuer=auth_issuer, iss=iss, csrf_token=secrets.token_urlsafe(24)))
        return cookie

    def pending(self, cookie: str | None) -> CoordinatorSession | None:
        row = self._get(cookie)
        return row if row is not None and row.phase == PENDING else None

    def activate(self, cookie: str, *, user: str, program: CoordinatorProgram) -> str:
        """Replace the pending session by an active one under a new cookie (no session fixation)."""
        new_cookie = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with self.db.session() as s:
            s.execute(delete(CoordinatorSession).where(CoordinatorSession.id_hash == hash_cookie(cookie)))
            s.add(CoordinatorSession(id_hash=hash_cookie(new_cookie), phase=ACTIVE, created_at=now,
                                     expires_at=now + timedelta(seconds=self.ttl_s), user=user, program=program.name,
                                     sites=list(program.sites), csrf_token=secrets.token_urlsafe(24)))
        return new_cookie

    def active(self, cookie: str | None) -> Coordinator | None:
        row = self._get(cookie)
        if row is None or row.phase != ACTIVE or not row.user or not row.program:
            return None
        return Coordinator(user=row.user, program=row.program, sites=tuple(row.sites or ()),
                           csrf_token=row.csrf_token, id_hash=row.id_hash)

    def delete(self, cookie: str | None) -> None:
        if cookie:
            with self.db.session() as s:
                s.execute(delete(CoordinatorSession).where(CoordinatorSession.id_hash == hash_cookie(cookie)))

    def _get(self, cookie: str | None) -> CoordinatorSession | None:
        if not cookie or len(cookie) > 128:
            return None
        with self.db.session() as s:
            row = s.scalar(select(CoordinatorSession).where(CoordinatorSession.id_hash == hash_cookie(cookie)))
            if row is None:
                return None
            expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
            if expires < datetime.now(UTC):
                s.delete(row)
                return None
            return row
