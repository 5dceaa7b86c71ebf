"""SMART scopes, v2 syntax with v1 accepted (SMART App Launch 2.2, scopes-and-launch-context).

v2 resource scopes are ``<context>/<resource>.<permissions>[?<query>]`` where the permissions are an
in-order subset of ``cruds`` (create, read, update, delete, search). v1 scopes (``.read``, ``.write``,
``.*``) are honoured with v2 meaning: ``.read`` ⇒ ``.rs``, ``.write`` ⇒ ``.cud``, ``.*`` ⇒ ``.cruds``.
Granted scopes can differ from the requested ones, so the app always decides from the token response's
``scope``.

A scope narrowed by a query (``patient/Observation.rs?category=…``) is counted for reads (the server
applies the filter) but not for writes: the app cannot know that what it writes matches the filter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

V2_PERMISSIONS = "cruds"
V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
NON_RESOURCE_SCOPES = frozenset({"launch", "openid", "fhirUser", "profile", "offline_access", "online_access"})

_RESOURCE_RE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.([A-Za-z*]+)(\?.*)?$")


class ScopeContext(StrEnum):
    PATIENT = "patient"
    USER = "user"
    SYSTEM = "system"


class Interaction(StrEnum):
    CREATE = "c"
    READ = "r"
    UPDATE = "u"
    DELETE = "d"
    SEARCH = "s"


@dataclass(frozen=True, slots=True)
class ResourceScope:
    """One resource scope, normalised to v2 permissions."""

    context: ScopeContext
    resource_type: str
    """A FHIR resource type or ``*``."""
    permissions: frozenset[Interaction]
    query: str | None
    raw: str
    v1: bool

    def covers(self, resource_type: str, interaction: Interaction) -> bool:
        if self.resource_type not in ("*", resource_type) or interaction not in self.permissions:
            return False
        # a query-restricted scope is good enough to read (the server filters), never to write
        return self.query is None or interaction in (Interaction.READ, Interaction.SEARCH)


def _permissions(text: str) -> tuple[frozenset[Interaction], bool] | None:
    if text in V1_PERMISSIONS:
        return frozenset(Interaction(c) for c in V1_PERMISSIONS[text]), True
    # v2: a non-empty, in-order subset of "cruds"
    pos = 0
    for ch in text:
        idx = V2_PERMISSIONS.find(ch, pos)
        if idx < 0:
            return None
        pos = idx + 1
    if not text:
        return None
    return frozenset(Interaction(c) for c in text), False


def parse_scope(token: str) -> ResourceScope | None:
    """A resource scope, or None for a non-resource or malformed scope."""
    m = _RESOURCE_RE.match(token)
    if not m:
        return None
    parsed = _permissions(m.group(3))
    if parsed is None:
        return None
    perms, v1 = parsed
    query = m.group(4)[1:] if m.group(4) else None
    return ResourceScope(ScopeContext(m.group(1)), m.group(2), perms, query or None, token, v1)


@dataclass(frozen=True, slots=True)
class ScopeSet:
    """The scopes of one grant: resource scopes, the other scopes, and what could not be parsed."""

    resource: tuple[ResourceScope, ...]
    other: frozenset[str]
    invalid: tuple[str, ...]

    @classmethod
    def parse(cls, scope: str | Iterable[str] | None) -> ScopeSet:
        tokens = scope.split() if isinstance(scope, str) else list(scope or ())
        resource: list[ResourceScope] = []
        other: set[str] = set()
        invalid: list[str] = []
        for tok in tokens:
            rs = parse_scope(tok)
            if rs is not None:
                resource.append(rs)
            elif tok in NON_RESOURCE_SCOPES or tok.startswith("launch/"):
                other.add(tok)
            elif "/" in tok:
                invalid.append(tok)
            else:
                other.add(tok)
        return cls(tuple(resource), frozenset(other), tuple(invalid))

    def permits(self, resource_type: str, interaction: Interaction,
                contexts: Iterable[ScopeContext] = (ScopeContext.PATIENT, ScopeContext.USER)) -> bool:
        allowed = set(contexts)
        return any(s.context in allowed and s.covers(resource_type, interaction) for s in self.resource)

    def can_read(self, resource_type: str) -> bool:
        return self.permits(resource_type, Interaction.READ)

    def can_create(self, resource_type: str) -> bool:
        return self.permits(resource_type, Interaction.CREATE)

    def has(self, scope: str) -> bool:
        return scope in self.other

    @property
    def uses_v1(self) -> bool:
        return any(s.v1 for s in self.resource)

    def __str__(self) -> str:
        return " ".join(sorted(self.other) + [s.raw for s in self.resource])


def standalone_scopes(requested: str) -> str:
    """The EHR-launch scope string turned into a standalone one: ``launch`` → ``launch/patient``."""
    tokens = [t for t in requested.split() if t != "launch"]
    if "launch/patient" not in tokens:
        tokens.insert(0, "launch/patient")
    return " ".join(tokens)


def ehr_scopes(requested: str) -> str:
    """The scope string for an EHR launch: it must contain ``launch``."""
    tokens = requested.split()
    if "launch" not in tokens:
        tokens.insert(0, "launch")
    return " ".join(tokens)
