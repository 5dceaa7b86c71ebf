"""Authenticating CDS clients: the JWT bearer token of CDS Hooks 2.0 §"Trusting CDS Clients".

Checks, in order (cds-hooks best practices, "CDS Services → JWT"; shared/reference/interop.md §1.7):

1. ``Authorization: Bearer <JWT>`` is present (every call: discovery, service, feedback).
2. Header: ``alg`` is an allowed asymmetric algorithm (ES384 and RS384 by default; ``none`` and HMAC are
   always refused), ``kid`` is present, ``typ`` is ``JWT``.
3. ``iss`` is on the allowlist (``settings.cds.issuers``).
4. The key: from the ``jku`` JWK Set when the header names one, and only if that URL is allowlisted (the
   issuer's ``jwks_url`` or ``settings.cds.allowed_jku``; an unlisted URL is never fetched, against SSRF);
   otherwise from the issuer's configured ``jwks`` (out-of-band) or ``jwks_url``. JWK Sets are cached for
   ``jwks_cache_s``; an unknown ``kid`` re-fetches the set (key rotation) at most every ``jwks_min_refresh_s``.
   The key's type and curve must match ``alg``.
5. Signature, then claims: ``aud`` equals the URL of the endpoint being called exactly (string or one of an
   array), ``exp`` not past and ``iat`` not in the future (both within ``max_clock_skew_s``), the token lives at
   most ``max_token_lifetime_s``, ``jti`` present, ``tenant`` on the issuer's list when it has one.
6. ``jti`` not seen before for this ``iss`` (the replay cache is persisted: a restart does not reopen it).

Any failure raises :class:`Unauthorized`; the HTTP layer answers 401 with the same body whatever the reason,
and logs the reason with ``iss``/``jti`` only: never the token.

Open mode (``settings.cds.open_mode``) skips all of this, for local demos only; it is refused in production by
the settings validator and announced in the logs at start and on every call.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import orjson
from jwt import PyJWK
from starlette.concurrency import run_in_threadpool

from risk.config import CdsIssuer, CdsSettings
from risk.store.cds import live_jtis, prune_jtis, remember_jtis, replay_key
from risk.store.db import Database

log = logging.getLogger(__name__)

OPEN_MODE_ISSUER = "urn:lungrisk:cds-open-mode"
OPEN_MODE_WARN_EVERY_S = 60.0
MAX_REPLAY_BATCH = 500
"""The ``iss`` recorded for calls accepted in open mode (no token was checked)."""

_KEY_TYPES = {"ES": "EC", "RS": "RSA", "PS": "RSA", "Ed": "OKP"}
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


class Unauthorized(Exception):
    """The caller is not authenticated. ``reason`` is for the service's own log, never for the response."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CdsCaller:
    """An authenticated CDS client (or the open-mode placeholder)."""

    iss: str
    jti: str | None
    tenant: str | None = None
    open_mode: bool = False


# --- JWK Sets ---------------------------------------------------------------------------------------------
@dataclass(slots=True)
class _CachedSet:
    keys: dict[str, dict[str, Any]]
    fetched_at: float


class JwksCache:
    """JWK Sets fetched from allowlisted URLs, cached and re-fetched on rotation.

    Only URLs passed in ``allowed_urls`` are ever fetched. Fetch failures keep serving a stale set (keys do not
    become invalid because the client's server blinked) and otherwise yield no key (→ 401).
    """

    def __init__(self, *, allowed_urls: set[str], ttl_s: float, timeout_s: float, min_refresh_s: float,
                 transport: httpx.AsyncBaseTransport | None = None, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self._allowed = {_norm_url(u) for u in allowed_urls}
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._min_refresh_s = min_refresh_s
        self._transport = transport
        self._clock = clock
        self._sets: dict[str, _CachedSet] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.fetches = 0

    def allowed(self, url: str) -> bool:
        return _norm_url(url) in self._allowed

    async def key(self, url: str, kid: str) -> dict[str, Any] | None:
        url = _norm_url(url)
        if url not in self._allowed:
            return None
        cached = self._sets.get(url)
        now = self._clock()
        fresh = cached is not None and now - cached.fetched_at < self._ttl_s
        if fresh and cached is not None and kid in cached.keys:
            return cached.keys[kid]
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:
            cached = self._sets.get(url)
            now = self._clock()
            stale_or_missing = cached is None or now - cached.fetched_at >= self._ttl_s
            unknown_kid = cached is not None and kid not in cached.keys
            may_refresh = cached is None or now - cached.fetched_at >= self._min_refresh_s
            if stale_or_missing or (unknown_kid and may_refresh):
                fetched = await self._fetch(url)
                if fetched is not None:
                    cached = _CachedSet(fetched, now)
                    self._sets[url] = cached
        return None if cached is None else cached.keys.get(kid)

    async def _fetch(self, url: str) -> dict[str, dict[str, Any]] | None:
        self.fetches += 1
        try:
            async with httpx.AsyncClient(timeout=self._timeout_s, follow_redirects=False,
                                         transport=self._transport) as client:
                response = await client.get(url, headers={"Accept": "application/json"})
            if response.status_code != 200:
                log.warning("JWK Set fetch from %s answered %s", url, response.status_code)
                return None
            return _keys_by_kid(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("JWK Set fetch from %s failed: %s", url, type(exc).__name__)
            return None


def _keys_by_kid(jwks: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
        raise ValueError("not a JWK Set")
    return {k["kid"]: dict(k) for k in jwks["keys"] if isinstance(k, Mapping) and isinstance(k.get("kid"), str)}


def _norm_url(url: str) -> str:
    return str(url).rstrip("/")


# --- replay cache -----------------------------------------------------------------------------------------
WRITE_BEHIND_DELAY_S = 0.05
class ReplayCache:
    """``(iss, jti)`` pairs already accepted, until their JWT expires.

    The database row is the shared truth (several workers, restarts): a JWT is accepted only once its id is
    stored and was not there before. Checks are *group-committed*: calls waiting at the same moment share one
    ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` transaction (run in the threadpool), so the cost of the
    database round trip is paid once per batch, not per request, and no request is answered before its jti is
    stored. An in-process map answers repeats without a round trip. Without a database (unit tests) the map alone
    is used.
    """

    def __init__(self, db: Database | None = None, *, strict: bool = True) -> None:
        self._db = db
        self.strict = strict
        """False: write-behind (settings.cds.replay_check); this process's map decides, the store is filled
        in the background and a cross-worker replay found there is logged."""
        self._seen: dict[str, float] = {}
        self._last_prune = 0.0
        self._last_db_prune = 0.0
        self._pending: list[tuple[str, float, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0

    def attach(self, db: Database | None) -> None:
        self._db = db
        if db is not None:
            with db.session() as s:
                for key, expires in live_jtis(s).items():
                    self._seen[key] = _aware(expires).timestamp()

    async def first_use(self, iss: str, jti: str, exp: float) -> bool:
        now = time.time()
        key = replay_key(iss, jti)
        if self._seen.get(key, 0.0) > now:
            return False
        self._seen[key] = exp
        if now - self._last_prune > 60:
            self._last_prune = now
            self._seen = {k: e for k, e in self._seen.items() if e > now}
        if self._db is None:
            return True
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((key, exp, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        if not self.strict:
            future.add_done_callback(_log_late_replay(key))
            return True
        return await future

    async def _drain(self) -> None:
        if not self.strict:
            await asyncio.sleep(WRITE_BEHIND_DELAY_S)  # nobody waits: gather a bigger batch per transaction
        while self._pending:
            batch, self._pending = self._pending[:MAX_REPLAY_BATCH], self._pending[MAX_REPLAY_BATCH:]
            try:
                fresh = await run_in_threadpool(self._remember, [(k, e) for k, e, _ in batch])
            except Exception as exc:  # the store failed: refuse rather than accept unchecked tokens
                log.error("JWT replay cache write failed (%s): %d calls refused", type(exc).__name__, len(batch))
                fresh = set()
            self.batches += 1
            for key, _exp, future in batch:
                if not future.done():
                    future.set_result(key in fresh)

    def close(self) -> None:
        """Store what a write-behind cache has not written yet (at shutdown: a restart must not reopen ids)."""
        if self._db is None or not self._pending:
            return
        pending, self._pending = self._pending, []
        try:
            self._remember([(k, e) for k, e, _ in pending])
        except Exception as exc:
            log.error("JWT replay cache: %d ids not stored at shutdown (%s)", len(pending), type(exc).__name__)

    def _remember(self, rows: list[tuple[str, float]]) -> set[str]:
        assert self._db is not None
        with self._db.engine.begin() as connection:
            fresh = remember_jtis(connection, [(k, datetime.fromtimestamp(e, UTC)) for k, e in rows])
        now = time.time()
        if now - self._last_db_prune > 300:  # forget expired ids every few minutes
            self._last_db_prune = now
            with self._db.session() as s:
                prune_jtis(s)
        return fresh


def _log_late_replay(key: str) -> Callable[[asyncio.Future[bool]], None]:
    def check(future: asyncio.Future[bool]) -> None:
        if not future.cancelled() and future.result() is False:
            log.warning("JWT replay detected after the fact (id already stored by another worker): %s", key)

    return check


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# --- the authenticator ------------------------------------------------------------------------------------
class CdsAuthenticator:
    """Verifies CDS client JWTs against ``settings.cds``; see the module docstring for the checks."""

    def __init__(self, settings: CdsSettings, *, jwks: JwksCache | None = None, replay: ReplayCache | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._issuers: dict[str, CdsIssuer] = {i.iss: i for i in settings.issuers}
        self._static: dict[str, dict[str, dict[str, Any]]] = {
            i.iss: _keys_by_kid(i.jwks) for i in settings.issuers if i.jwks is not None}
        allowed = {str(u) for u in settings.allowed_jku} | {str(i.jwks_url) for i in settings.issuers if i.jwks_url}
        self.jwks = jwks or JwksCache(allowed_urls=allowed, ttl_s=settings.jwks_cache_s,
                                      timeout_s=settings.jwks_timeout_s, min_refresh_s=settings.jwks_min_refresh_s)
        self.replay = replay or ReplayCache()
        self._clock = clock
        self._algorithms = tuple(settings.algorithms)
        self._open_warned = -OPEN_MODE_WARN_EVERY_S
        self._keys: dict[tuple[int, str], tuple[dict[str, Any], _Key]] = {}

    @property
    def open_mode(self) -> bool:
        return self.settings.open_mode

    async def authenticate(self, authorization: str | None, audience: str) -> CdsCaller:
        if self.settings.open_mode:
            now = time.monotonic()
            if now - self._open_warned >= OPEN_MODE_WARN_EVERY_S:  # loud, but not a log line per request
                self._open_warned = now
                log.warning("CDS OPEN MODE: accepting unauthenticated calls (e.g. to %s); local demos only", audience)
            return CdsCaller(iss=OPEN_MODE_ISSUER, jti=None, open_mode=True)
        token = _bearer(authorization)
        header, claims, signing_input, signature = _split(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise Unauthorized(f"algorithm {alg!r} not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("no kid in the JWT header")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.upper() != "JWT":
            raise Unauthorized(f"typ {typ!r} is not JWT")
        if "crit" in header:
            raise Unauthorized("crit header parameters are not understood")
        iss = claims.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise Unauthorized(f"issuer {iss!r} not on the allowlist")
        jwk = await self._key_for(issuer, header, kid)
        key = self._key_object(jwk, alg)
        if not key.algorithm.verify(signing_input, key.prepared, signature):
            raise Unauthorized(f"bad signature iss={iss} jti={claims.get('jti')}")
        # claims, after the signature: nothing unverified is trusted above this line except to pick the key
        jti = claims.get("jti")
        for name in ("aud", "exp", "iat", "jti"):
            if name not in claims:
                raise Unauthorized(f"missing claim {name!r} iss={iss} jti={jti}")
        aud = claims["aud"]
        accepted = (audience, *issuer.audiences)
        if isinstance(aud, str):
            aud_ok = aud in accepted
        elif isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud):
            aud_ok = any(a in accepted for a in aud)
        else:
            aud_ok = False
        if not aud_ok:
            raise Unauthorized(f"aud {aud!r} is not this endpoint iss={iss} jti={jti}")
        exp, iat = claims["exp"], claims["iat"]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (exp, iat)):
            raise Unauthorized(f"exp and iat must be numbers iss={iss} jti={jti}")
        skew = self.settings.max_clock_skew_s
        now = self._clock()
        if exp <= now - skew:
            raise Unauthorized(f"expired iss={iss} jti={jti}")
        if iat > now + skew:
            raise Unauthorized(f"issued in the future iss={iss} jti={jti}")
        nbf = claims.get("nbf")
        if nbf is not None and (not isinstance(nbf, int | float) or isinstance(nbf, bool) or nbf > now + skew):
            raise Unauthorized(f"not valid yet (nbf) iss={iss} jti={jti}")
        if exp - iat > self.settings.max_token_lifetime_s:
            raise Unauthorized(f"lifetime {exp - iat}s exceeds the limit iss={iss} jti={jti}")
        if not isinstance(jti, str) or not jti:
            raise Unauthorized(f"no jti iss={iss}")
        tenant = claims.get("tenant")
        if tenant is not None and not isinstance(tenant, str):
            raise Unauthorized(f"tenant is not a string iss={iss} jti={jti}")
        if issuer.tenants and tenant not in issuer.tenants:
            raise Unauthorized(f"tenant {tenant!r} not allowed for iss={iss} jti={jti}")
        if not await self.replay.first_use(issuer.iss, jti, float(exp) + skew):
            raise Unauthorized(f"replayed jti iss={iss} jti={jti}")
        return CdsCaller(iss=issuer.iss, jti=jti, tenant=tenant)

    def _key_object(self, jwk: dict[str, Any], alg: str) -> _Key:
        """The verification key for a JWK (built once per JWK object and algorithm; a re-fetched set is new)."""
        cache_key = (id(jwk), alg)
        entry = self._keys.get(cache_key)
        if entry is not None and entry[0] is jwk:
            return entry[1]
        pyjwk = _pyjwk(jwk, alg)
        key = _Key(algorithm=pyjwk.Algorithm, prepared=pyjwk.Algorithm.prepare_key(pyjwk.key))
        if len(self._keys) > 1000:
            self._keys.clear()
        self._keys[cache_key] = (jwk, key)
        return key

    async def _key_for(self, issuer: CdsIssuer, header: Mapping[str, Any], kid: str) -> dict[str, Any]:
        jku = header.get("jku")
        if jku is not None:
            if not isinstance(jku, str) or not self.jwks.allowed(jku):
                raise Unauthorized(f"jku {jku!r} not on the allowlist (iss={issuer.iss})")
            if issuer.jwks_url is not None and _norm_url(jku) != _norm_url(str(issuer.jwks_url)) \
                    and _norm_url(jku) not in {_norm_url(str(u)) for u in self.settings.allowed_jku}:
                raise Unauthorized(f"jku {jku!r} is not this issuer's (iss={issuer.iss})")
            key = await self.jwks.key(jku, kid)
        elif issuer.iss in self._static:
            key = self._static[issuer.iss].get(kid)
        elif issuer.jwks_url is not None:
            key = await self.jwks.key(str(issuer.jwks_url), kid)
        else:
            key = None
        if key is None:
            raise Unauthorized(f"no key {kid!r} for iss={issuer.iss}")
        return key


@dataclass(frozen=True, slots=True)
class _Key:
    algorithm: Any
    """PyJWT's algorithm object (it converts JWS ECDSA signatures to DER and verifies)."""
    prepared: Any


def _b64url(segment: str, what: str) -> bytes:
    """Strict base64url without padding (RFC 7515 §2): anything else is a malformed JWT."""
    if not segment or "=" in segment or "+" in segment or "/" in segment:
        raise Unauthorized(f"malformed JWT ({what} is not unpadded base64url)")
    try:
        return base64.b64decode(segment + "=" * (-len(segment) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise Unauthorized(f"malformed JWT ({what} is not base64url)") from None


def _split(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Header, claims, signing input and signature of a compact JWS, parsed once (orjson)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise Unauthorized("malformed JWT (not three parts)")
    head, body, sig = parts
    try:
        header = orjson.loads(_b64url(head, "header"))
        claims = orjson.loads(_b64url(body, "payload"))
    except orjson.JSONDecodeError:
        raise Unauthorized("malformed JWT (not JSON)") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise Unauthorized("malformed JWT (header or payload is not an object)")
    signature = _b64url(sig, "signature") if sig else b""
    return header, claims, f"{head}.{body}".encode("ascii"), signature


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("no Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization is not a Bearer token")
    return token.strip()


def _pyjwk(jwk: Mapping[str, Any], alg: str) -> PyJWK:
    kty = jwk.get("kty")
    if kty == "oct":
        raise Unauthorized("symmetric key refused")
    expected_kty = _KEY_TYPES.get(alg[:2])
    if kty != expected_kty:
        raise Unauthorized(f"key type {kty!r} does not match {alg}")
    if alg in _EC_CURVES and jwk.get("crv") != _EC_CURVES[alg]:
        raise Unauthorized(f"curve {jwk.get('crv')!r} does not match {alg}")
    if jwk.get("alg") not in (None, alg):
        raise Unauthorized(f"key is for {jwk.get('alg')!r}, token uses {alg}")
    if jwk.get("use") not in (None, "sig"):
        raise Unauthorized("key is not a signing key")
    if "d" in jwk:
        raise Unauthorized("a private key was published")
    try:
        return PyJWK(dict(jwk), algorithm=alg)
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"unusable key ({type(exc).__name__})") from None
