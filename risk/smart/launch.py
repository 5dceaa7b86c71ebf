"""The SMART App Launch 2.2 authorization-code flow, owned here because fhirclient has no PKCE.

* :func:`authorize_url` builds the authorization request: ``response_type=code``, ``client_id``,
  ``redirect_uri``, ``launch`` (EHR launch only), ``scope``, ``state``, ``aud`` (= ``iss``, the FHIR base),
  ``code_challenge`` and ``code_challenge_method=S256``.
* :class:`OAuthClient` exchanges the code (with the ``code_verifier``) and refreshes tokens. Neither call is
  retried: an authorization code is single-use (a replay revokes the grant) and refresh tokens may rotate.
* :class:`TokenResponse` parses the token response: ``access_token``, ``token_type`` Bearer, ``expires_in``
  (a string is tolerated, client-py #181), ``scope``, ``refresh_token``, ``id_token`` and the launch context
  (``patient``, ``encounter``, ``fhirContext``, ``need_patient_banner``, ``appContext``, ...).
* :func:`verify_id_token` validates the OpenID Connect id_token (RS256 via the issuer's ``jwks_uri``).
* :func:`parse_app_context` reads the ``appContext`` a CDS Hooks card put in its ``smart`` link.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

from risk.smart.discovery import SmartConfiguration
from risk.smart.errors import AppError, ErrorCode
from risk.smart.pkce import CODE_CHALLENGE_METHOD

DEFAULT_EXPIRES_IN_S = 300
"""Assumed lifetime when a token response omits ``expires_in`` (RECOMMENDED, not REQUIRED): be conservative."""
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_SAFE_TEXT = re.compile(r"[^\w .,:;()/'\-]")


def clean_text(text: object, limit: int = 200) -> str:
    """Upstream text made safe to show: printable, short (never echoes tokens: callers pass error fields)."""
    return _SAFE_TEXT.sub("", str(text))[:limit]


def authorize_url(config: SmartConfiguration, *, client_id: str, redirect_uri: str, scope: str, state: str,
                  code_challenge: str, aud: str, launch: str | None = None) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "aud": aud,
        "code_challenge": code_challenge,
        "code_challenge_method": CODE_CHALLENGE_METHOD,
    }
    if launch is not None:
        params["launch"] = launch
    sep = "&" if "?" in config.authorization_endpoint else "?"
    return config.authorization_endpoint + sep + urlencode(params)


@dataclass(frozen=True, slots=True)
class TokenResponse:
    access_token: str = field(repr=False)
    token_type: str
    expires_at: datetime
    scope: str
    refresh_token: str | None = field(default=None, repr=False)
    id_token: str | None = field(default=None, repr=False)
    patient: str | None = None
    encounter: str | None = None
    fhir_context: tuple[dict[str, Any], ...] = ()
    need_patient_banner: bool | None = None
    app_context: str | None = None
    intent: str | None = None
    smart_style_url: str | None = None
    tenant: str | None = None
    scope_echoed: bool = True
    """False when the server omitted ``scope`` (REQUIRED) and the requested scope was assumed."""

    @classmethod
    def parse(cls, data: Mapping[str, Any], *, now: datetime, requested_scope: str) -> TokenResponse:
        """Validate a token (or refresh) response; raises AppError(INVALID_TOKEN_RESPONSE) naming the field."""

        def bad(msg: str) -> AppError:
            return AppError(ErrorCode.INVALID_TOKEN_RESPONSE, msg)

        if not isinstance(data, Mapping):
            raise bad("the token response is not a JSON object")
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise bad('"access_token" is missing')
        token_type = data.get("token_type")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise bad(f'"token_type" must be Bearer, got {clean_text(token_type, 20)!r}')
        raw_exp = data.get("expires_in", DEFAULT_EXPIRES_IN_S)
        try:
            expires_in = int(float(raw_exp))  # tolerate "3600" (client-py #181)
        except (TypeError, ValueError):
            raise bad(f'"expires_in" must be a number of seconds, got {clean_text(raw_exp, 20)!r}') from None
        if expires_in <= 0:
            raise bad('"expires_in" must be positive')
        scope = data.get("scope")
        echoed = isinstance(scope, str) and bool(scope.strip())
        patient = data.get("patient")
        if patient is not None and (not isinstance(patient, str) or not _FHIR_ID.match(patient)):
            raise bad('"patient" must be a FHIR id')
        encounter = data.get("encounter")
        if encounter is not None and (not isinstance(encounter, str) or not _FHIR_ID.match(encounter)):
            raise bad('"encounter" must be a FHIR id')
        ctx = data.get("fhirContext") or ()
        if not isinstance(ctx, list | tuple) or not all(isinstance(c, Mapping) for c in ctx):
            raise bad('"fhirContext" must be an array of objects')
        banner = data.get("need_patient_banner")
        if banner is not None and not isinstance(banner, bool):
            raise bad('"need_patient_banner" must be a boolean')
        app_context = data.get("appContext")
        if app_context is not None and not isinstance(app_context, str):
            app_context = json.dumps(app_context)  # some servers send the object rather than a string
        refresh = data.get("refresh_token")
        id_token = data.get("id_token")
        return cls(
            access_token=token,
            token_type="Bearer",
            expires_at=now + timedelta(seconds=expires_in),
            scope=str(scope) if echoed else requested_scope,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            id_token=id_token if isinstance(id_token, str) and id_token else None,
            patient=patient,
            encounter=encounter,
            fhir_context=tuple(dict(c) for c in ctx),
            need_patient_banner=banner,
            app_context=app_context,
            intent=data.get("intent") if isinstance(data.get("intent"), str) else None,
            smart_style_url=data.get("smart_style_url") if isinstance(data.get("smart_style_url"), str) else None,
            tenant=data.get("tenant") if isinstance(data.get("tenant"), str) else None,
            scope_echoed=echoed,
        )


class OAuthError(AppError):
    """The authorization server answered the token request with an OAuth error."""

    def __init__(self, code: ErrorCode, oauth_error: str, description: str = "", status: int | None = None) -> None:
        text = oauth_error + (f" ({description})" if description else "")
        super().__init__(code, f"the authorization server said: {text}")
        self.oauth_error = oauth_error
        self.http_status = status


class OAuthClient:
    """Token endpoint calls with an explicit timeout; never retried (codes are single-use)."""

    def __init__(self, *, timeout_s: float = 10.0, transport: httpx.BaseTransport | None = None) -> None:
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False, transport=transport,
                                    headers={"Accept": "application/json"})

    def close(self) -> None:
        self._client.close()

    def exchange_code(self, token_endpoint: str, *, code: str, code_verifier: str, redirect_uri: str,
                      client_id: str, requested_scope: str) -> TokenResponse:
        if not code_verifier:
            raise AppError(ErrorCode.MISSING_PKCE_VERIFIER, "the session holds no code_verifier for this launch")
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": code_verifier, "client_id": client_id}
        return self._post(token_endpoint, form, ErrorCode.TOKEN_EXCHANGE_FAILED, requested_scope)

    def refresh(self, token_endpoint: str, *, refresh_token: str, client_id: str,
                requested_scope: str) -> TokenResponse:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
        return self._post(token_endpoint, form, ErrorCode.TOKEN_EXPIRED, requested_scope)

    def _post(self, url: str, form: dict[str, str], error_code: ErrorCode, requested_scope: str) -> TokenResponse:
        now = datetime.now(UTC)
        try:
            resp = self._client.post(url, data=form)
        except httpx.TimeoutException:
            raise AppError(error_code, "the authorization server did not answer in time") from None
        except httpx.HTTPError as exc:
            raise AppError(error_code, f"the authorization server could not be reached ({type(exc).__name__})") \
                from None
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code != 200:
            if isinstance(body, Mapping) and isinstance(body.get("error"), str):
                raise OAuthError(error_code, clean_text(body["error"], 60),
                                 clean_text(body.get("error_description", "")), resp.status_code)
            raise AppError(error_code, f"the authorization server answered HTTP {resp.status_code}")
        if body is None:
            raise AppError(ErrorCode.INVALID_TOKEN_RESPONSE, "the token response is not JSON")
        return TokenResponse.parse(body, now=now, requested_scope=requested_scope)


_jwks_clients: dict[str, jwt.PyJWKClient] = {}
_jwks_lock = threading.Lock()


def verify_id_token(id_token: str, *, jwks_uri: str, issuer: str | None, client_id: str,
                    timeout_s: float = 5.0, leeway_s: int = 60) -> dict[str, Any]:
    """Validate an OpenID Connect id_token (signature by the issuer's JWKS, ``iss``, ``aud``, ``exp``).

    SMART: "EHRs SHALL support RS256-signed ID tokens"; RS384/ES256/ES384 are accepted too. Raises
    AppError(INVALID_TOKEN_RESPONSE) on any failure.
    """
    with _jwks_lock:
        client = _jwks_clients.get(jwks_uri)
        if client is None:
            client = jwt.PyJWKClient(jwks_uri, cache_keys=True, lifespan=300, timeout=int(max(1, timeout_s)))
            _jwks_clients[jwks_uri] = client
    try:
        key = client.get_signing_key_from_jwt(id_token)
        options: dict[str, Any] = {"require": ["exp", "iat", "sub"]}
        kwargs: dict[str, Any] = {"audience": client_id, "leeway": leeway_s}
        if issuer:
            kwargs["issuer"] = issuer
        else:
            options["verify_iss"] = False
        claims: dict[str, Any] = jwt.decode(id_token, key.key, algorithms=["RS256", "RS384", "ES256", "ES384"],
                                            options=options, **kwargs)  # type: ignore[arg-type]
    except jwt.PyJWKClientError as exc:
        raise AppError(ErrorCode.INVALID_TOKEN_RESPONSE, f"id_token keys could not be fetched: {clean_text(exc)}") \
            from None
    except jwt.InvalidTokenError as exc:
        raise AppError(ErrorCode.INVALID_TOKEN_RESPONSE, f"id_token is not valid: {clean_text(exc)}") from None
    return claims


@dataclass(frozen=True, slots=True)
class AppContext:
    """What a CDS card's ``smart`` link asked the app to open (``appContext``, an opaque string)."""

    raw: str
    tracking_uid: str | None = None
    assessment_id: str | None = None
    risk_assessment: str | None = None
    """A ``RiskAssessment/<id>`` reference."""
    view: str | None = None
    """``overview``, ``timeline``, ``explanation`` or ``actions``."""


_VIEWS = ("overview", "timeline", "explanation", "actions")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def parse_app_context(raw: str | None) -> AppContext | None:
    """Parse ``appContext``: a JSON object (keys below) or a bare tracking UID / ``RiskAssessment/<id>``.

    Keys read: ``trackingUid`` (or ``tracking_uid``, ``nodule``), ``assessmentId`` (or ``assessment_id``),
    ``riskAssessment`` (a reference), ``view``. Unknown keys are ignored; a value of the wrong shape is
    dropped rather than trusted.
    """
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    data: Any
    try:
        data = json.loads(text)
    except ValueError:
        data = text
    if isinstance(data, str):
        if _UID.match(data) and len(data) <= 64:
            return AppContext(raw=text, tracking_uid=data)
        if data.startswith("RiskAssessment/") and _FHIR_ID.match(data.split("/", 1)[1]):
            return AppContext(raw=text, risk_assessment=data)
        return AppContext(raw=text)
    if not isinstance(data, Mapping):
        return AppContext(raw=text)

    def first(*keys: str) -> str | None:
        for k in keys:
            v = data.get(k)
            if isinstance(v, str) and v.strip():
                return v.strip()
        return None

    uid = first("trackingUid", "tracking_uid", "nodule", "TrackingUID")
    if uid is not None and not (_UID.match(uid) and len(uid) <= 64):
        uid = None
    ra = first("riskAssessment", "risk_assessment")
    if ra is not None and not (ra.startswith("RiskAssessment/") and _FHIR_ID.match(ra.split("/", 1)[1])):
        ra = None
    view = first("view")
    return AppContext(raw=text, tracking_uid=uid, assessment_id=first("assessmentId", "assessment_id"),
                      risk_assessment=ra, view=view if view in _VIEWS else None)
