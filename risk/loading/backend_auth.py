"""SMART Backend Services (SMART App Launch 2.2 §backend-services): system-level access tokens for jobs.

The client signs a short-lived JWT assertion (``iss`` = ``sub`` = client_id, ``aud`` = the token endpoint,
``exp`` ≤ 5 minutes ahead, a fresh ``jti``) with its private key (RS384 or ES384), posts it as a
``client_credentials`` grant with ``private_key_jwt`` client authentication, and caches the access token until
shortly before it expires; a new assertion is minted for every token (no refresh tokens, as the spec says).

:class:`BackendServicesAuth` is a zero-argument callable returning the current token, which is what
:class:`risk.sources.fhir_rest.RestFhirSource` accepts as ``token``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import jwt

from risk.config import SmartBackendSettings
from risk.errors import ConfigurationError, InvalidInput, UpstreamRejected, UpstreamUnavailable

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SIGNING_ALGORITHMS = ("RS384", "ES384")
ASSERTION_LIFETIME_S = 240
"""Under the spec's five-minute ceiling, with room for clock skew."""
REFRESH_MARGIN_S = 30.0
SYSTEM = "SMART authorization server"


def read_private_jwks(path: Path) -> list[dict[str, Any]]:
    """The RS384/ES384 private keys of a JWK Set file (errors name the file)."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise InvalidInput("smart_backend.private_jwks_file", f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise InvalidInput("smart_backend.private_jwks_file", f"{path} is not JSON: {exc}") from exc
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list):
        raise InvalidInput("smart_backend.private_jwks_file", f"{path} is not a JWK Set (no 'keys' list)")
    usable = [k for k in keys if isinstance(k, dict) and k.get("alg") in SIGNING_ALGORITHMS and "d" in k]
    if not usable:
        raise InvalidInput("smart_backend.private_jwks_file",
                           f"{path} holds no private key with alg {' or '.join(SIGNING_ALGORITHMS)}")
    return usable


class BackendServicesAuth:
    """Mints and caches SMART Backend Services access tokens; ``auth()`` returns a valid bearer token."""

    def __init__(self, token_url: str, client_id: str, keys: Sequence[Mapping[str, Any]], *, scope: str,
                 key_id: str | None = None, timeout_s: float = 10.0, http: httpx.Client | None = None) -> None:
        if not token_url.startswith(("http://", "https://")):
            raise InvalidInput("smart_backend.token_url", f"must be an http(s) URL, got {token_url!r}")
        if not client_id:
            raise InvalidInput("smart_backend.client_id", "must not be empty")
        if not scope.strip():
            raise InvalidInput("smart_backend.scope", "must name at least one scope")
        candidates = [k for k in keys if key_id is None or k.get("kid") == key_id]
        if not candidates:
            raise InvalidInput("smart_backend.key_id", f"no key with kid {key_id!r} in the JWK Set")
        jwk = dict(candidates[0])
        if jwk.get("alg") not in SIGNING_ALGORITHMS:
            raise InvalidInput("smart_backend.key_id",
                               f"key {jwk.get('kid')!r} is not {' or '.join(SIGNING_ALGORITHMS)}")
        try:
            self._key = jwt.PyJWK(jwk).key
        except (jwt.PyJWKError, ValueError, TypeError) as exc:
            raise InvalidInput("smart_backend.private_jwks_file", f"key {jwk.get('kid')!r} is unusable: {exc}") from exc
        self.token_url = token_url
        self.client_id = client_id
        self.scope = scope
        self.algorithm: str = jwk["alg"]
        self.key_id: str | None = jwk.get("kid")
        self._timeout_s = timeout_s
        self._http = http or httpx.Client(timeout=timeout_s)
        self._owns_http = http is None
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self.granted_scope: str | None = None

    @classmethod
    def from_settings(cls, settings: SmartBackendSettings, *, scope: str | None = None,
                      timeout_s: float | None = None) -> BackendServicesAuth:
        """From ``settings.smart_backend``; ``scope`` and ``timeout_s`` override the configured ones (a loader
        needs write scopes; a batch job can wait longer than an interactive request)."""
        for name in ("token_url", "client_id", "private_jwks_file"):
            if getattr(settings, name) is None:
                raise ConfigurationError(f"RISK_SMART_BACKEND__{name.upper()}", "is not set")
        assert settings.private_jwks_file is not None and settings.token_url is not None
        assert settings.client_id is not None
        return cls(str(settings.token_url), settings.client_id, read_private_jwks(settings.private_jwks_file),
                   scope=scope or settings.scope, key_id=settings.key_id, timeout_s=timeout_s or settings.timeout_s)

    @staticmethod
    def configured(settings: SmartBackendSettings) -> bool:
        return None not in (settings.token_url, settings.client_id, settings.private_jwks_file)

    def __call__(self) -> str:
        return self.token()

    def token(self) -> str:
        """A bearer token, minted when none is cached or the cached one is within ``REFRESH_MARGIN_S`` (or a quarter
        of its lifetime) of expiring."""
        with self._lock:
            if self._token is None or time.monotonic() >= self._refresh_at:
                self._fetch()
            assert self._token is not None
            return self._token

    def invalidate(self) -> None:
        """Forget the cached token (after the resource server refused it)."""
        with self._lock:
            self._token = None

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def client_assertion(self) -> str:
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": self.token_url, "iat": now,
                  "exp": now + ASSERTION_LIFETIME_S, "jti": str(uuid.uuid4())}
        headers = {"typ": "JWT", **({"kid": self.key_id} if self.key_id else {})}
        return jwt.encode(claims, self._key, algorithm=self.algorithm, headers=headers)

    def _fetch(self) -> None:
        form = {"grant_type": "client_credentials", "scope": self.scope,
                "client_assertion_type": ASSERTION_TYPE, "client_assertion": self.client_assertion()}
        started = time.monotonic()
        try:
            response = self._http.post(self.token_url, data=form, headers={"Accept": "application/json"},
                                       timeout=self._timeout_s)
        except httpx.TimeoutException as exc:
            raise UpstreamUnavailable(SYSTEM, f"token request: no answer within {self._timeout_s} s") from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(SYSTEM, f"token request to {self.token_url}: {exc}") from exc
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise UpstreamUnavailable(SYSTEM, f"token request: HTTP {response.status_code}",
                                      status_code=response.status_code)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
            error = body.get("error", "") if isinstance(body, dict) else ""
            detail = body.get("error_description", "") if isinstance(body, dict) else ""
            raise UpstreamRejected(SYSTEM, f"token request for client {self.client_id!r}: HTTP {response.status_code}"
                                   f" {error} {detail}".rstrip(), status_code=response.status_code)
        expires_in = body.get("expires_in", 300)
        try:
            lifetime = float(expires_in)
        except (TypeError, ValueError):
            lifetime = 300.0
        self._token = str(body["access_token"])
        self._refresh_at = started + lifetime - min(REFRESH_MARGIN_S, lifetime / 4)
        self.granted_scope = body.get("scope")
