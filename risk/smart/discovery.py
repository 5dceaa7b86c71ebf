"""SMART discovery: ``{iss}/.well-known/smart-configuration`` (SMART App Launch 2.2, conformance).

The document SHALL be JSON regardless of ``Accept`` and its URLs SHALL be absolute;
``code_challenge_methods_supported`` SHALL include ``S256``. A configuration that breaks these is refused
(:class:`~risk.smart.errors.AppError` ``DISCOVERY_FAILED``) rather than guessed around. Answers are cached
per issuer for ``cache_s`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from risk.smart.errors import AppError, ErrorCode

WELL_KNOWN = "/.well-known/smart-configuration"
RETRIABLE_STATUS = (408, 429, 502, 503, 504)


def is_absolute_http_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


@dataclass(frozen=True, slots=True)
class SmartConfiguration:
    """The parts of the discovery document the app uses."""

    fhir_base: str
    authorization_endpoint: str
    token_endpoint: str
    capabilities: tuple[str, ...]
    code_challenge_methods_supported: tuple[str, ...]
    issuer: str | None = None
    jwks_uri: str | None = None
    revocation_endpoint: str | None = None
    scopes_supported: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, fhir_base: str, data: Mapping[str, Any]) -> SmartConfiguration:
        """Validate a discovery document; raises ValueError naming the offending field."""
        if not isinstance(data, Mapping):
            raise ValueError("the document is not a JSON object")
        for name in ("authorization_endpoint", "token_endpoint"):
            if not is_absolute_http_url(data.get(name)):
                raise ValueError(f'"{name}" must be an absolute http(s) URL, got {data.get(name)!r}')
        for name in ("issuer", "jwks_uri", "revocation_endpoint"):
            if data.get(name) is not None and not is_absolute_http_url(data.get(name)):
                raise ValueError(f'"{name}" must be an absolute http(s) URL, got {data.get(name)!r}')
        methods = data.get("code_challenge_methods_supported")
        if not isinstance(methods, list) or "S256" not in methods:
            raise ValueError('"code_challenge_methods_supported" must include "S256" (PKCE is required)')
        caps = data.get("capabilities")
        if not isinstance(caps, list):
            raise ValueError('"capabilities" must be a list')
        scopes = data.get("scopes_supported")
        return cls(
            fhir_base=fhir_base,
            authorization_endpoint=str(data["authorization_endpoint"]),
            token_endpoint=str(data["token_endpoint"]),
            capabilities=tuple(str(c) for c in caps),
            code_challenge_methods_supported=tuple(str(m) for m in methods),
            issuer=data.get("issuer"),
            jwks_uri=data.get("jwks_uri"),
            revocation_endpoint=data.get("revocation_endpoint"),
            scopes_supported=tuple(str(s) for s in scopes) if isinstance(scopes, list) else (),
        )

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities


class Discovery:
    """Fetches and caches discovery documents. ``timeout_s`` per call, ``retries`` on transient failures."""

    def __init__(self, *, timeout_s: float = 5.0, retries: int = 2, backoff_s: float = 0.2,
                 cache_s: float = 300.0, transport: httpx.BaseTransport | None = None) -> None:
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False, transport=transport,
                                    headers={"Accept": "application/json"})
        self._retries = retries
        self._backoff_s = backoff_s
        self._cache_s = cache_s
        self._cache: dict[str, tuple[float, SmartConfiguration]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def get(self, fhir_base: str) -> SmartConfiguration:
        base = fhir_base.rstrip("/")
        with self._lock:
            hit = self._cache.get(base)
            if hit and hit[0] > time.monotonic():
                return hit[1]
        config = self._fetch(base)
        with self._lock:
            self._cache[base] = (time.monotonic() + self._cache_s, config)
        return config

    def _fetch(self, base: str) -> SmartConfiguration:
        url = base + WELL_KNOWN
        last = ""
        for attempt in range(self._retries + 1):
            if attempt:
                time.sleep(self._backoff_s * 2 ** (attempt - 1))
            try:
                resp = self._client.get(url)
            except httpx.TimeoutException:
                last = "timed out"
                continue
            except httpx.HTTPError as exc:
                last = f"could not connect ({type(exc).__name__})"
                continue
            if resp.status_code in RETRIABLE_STATUS:
                last = f"HTTP {resp.status_code}"
                continue
            if resp.status_code != 200:
                raise AppError(ErrorCode.DISCOVERY_FAILED, f"{url} answered HTTP {resp.status_code}")
            try:
                return SmartConfiguration.from_json(base, resp.json())
            except ValueError as exc:
                raise AppError(ErrorCode.DISCOVERY_FAILED, f"{url}: {exc}") from None
        raise AppError(ErrorCode.DISCOVERY_FAILED, f"{url}: {last}")
