"""The app's own FHIR access on the launch's token, through fhirclient (the project's SMART client).

fhirclient's ``FHIRServer`` does the HTTP; this module gives it our bearer token (fhirclient's own auth has
no PKCE, so :mod:`risk.smart.launch` owns the OAuth flow), an explicit per-call timeout and retries on
transient statuses for reads, and maps every failure to the project's own exceptions: an expired or
rejected token → :class:`TokenRejected`, a permission error → :class:`PermissionDenied`, an outage →
:class:`risk.errors.UpstreamUnavailable`, any other refusal → :class:`risk.errors.UpstreamRejected`.
Writes (POST) are never retried: a retried create could duplicate a RiskAssessment.

The patient's clinical data for the assessment is read by the project's snapshot pipeline
(:mod:`smart_app.assessing`), with the same token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import requests
from fhirclient.models.patient import Patient
from fhirclient.server import FHIRAuth, FHIRServer
from requests.adapters import HTTPAdapter

from risk.errors import NotFound, RiskServiceError, UpstreamRejected, UpstreamUnavailable

SYSTEM = "FHIR server"
RETRIABLE_STATUS = (408, 429, 502, 503, 504)


class TokenRejected(RiskServiceError):
    """The FHIR server answered 401: the access token is expired or revoked."""


class PermissionDenied(RiskServiceError):
    """The FHIR server answered 403: the granted scopes do not allow this."""


class _BearerAuth(FHIRAuth):
    """Signs fhirclient's requests with the launch's current access token (refreshed by the provider)."""

    auth_type = "lungrisk-smart-bearer"

    def __init__(self, token_provider: Callable[[], str]) -> None:
        super().__init__(state=None)
        self._token_provider = token_provider

    @property
    def ready(self) -> bool:
        return True

    def can_sign_headers(self) -> bool:
        return True

    def signed_headers(self, headers: dict[str, str]) -> dict[str, str]:
        out = dict(headers or {})
        out["Authorization"] = f"Bearer {self._token_provider()}"
        return out


class _TimeoutAdapter(HTTPAdapter):
    def __init__(self, timeout_s: float) -> None:
        super().__init__(max_retries=0)
        self._timeout_s = timeout_s

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout_s
        return super().send(request, **kwargs)


@dataclass(frozen=True, slots=True)
class PatientHeader:
    """What the patient banner shows."""

    patient_id: str
    name: str
    birth_date: date | None
    gender: str | None
    mrn: str | None


@dataclass(frozen=True, slots=True)
class Created:
    reference: str
    """``Type/id`` of the created resource."""
    version_id: str | None
    resource: dict[str, Any] | None = None
    """The resource as the server stored it, when it returned it (``Prefer: return=representation``)."""


class SmartFhirClient:
    """FHIR reads and writes for one launch (``fhir_base`` = the launch's ``iss``)."""

    def __init__(self, fhir_base: str, token_provider: Callable[[], str], *, timeout_s: float = 10.0,
                 retries: int = 2, backoff_s: float = 0.2) -> None:
        self.fhir_base = fhir_base.rstrip("/")
        self._server = FHIRServer(None, base_uri=self.fhir_base)
        self._server.auth = _BearerAuth(token_provider)
        adapter = _TimeoutAdapter(timeout_s)
        self._server.session.mount("http://", adapter)
        self._server.session.mount("https://", adapter)
        self._retries = retries
        self._backoff_s = backoff_s

    def close(self) -> None:
        self._server.session.close()

    # --- reads -----------------------------------------------------------------------------------------
    def read_patient(self, patient_id: str) -> PatientHeader:
        patient = self._call(lambda: Patient.read(patient_id, self._server), f"Patient/{patient_id}", retry=True)
        return _header(patient_id, patient)

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        path = f"{resource_type}/{resource_id}"
        data = self._call(lambda: self._server.request_json(path), path, retry=True)
        if not isinstance(data, dict):
            raise UpstreamRejected(SYSTEM, f"{path} did not return a JSON object")
        return data

    # --- writes (never retried) ------------------------------------------------------------------------
    def create(self, resource: Mapping[str, Any]) -> Created:
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str):
            raise ValueError('Argument "resource" must have a resourceType.')
        resp = self._call(lambda: self._server.post_json(rtype, dict(resource)), rtype, retry=False)
        body: Any = None
        try:
            body = resp.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("id"), str):
            return Created(f"{rtype}/{body['id']}", (body.get("meta") or {}).get("versionId"), body)
        location = resp.headers.get("Location") or resp.headers.get("Content-Location") or ""
        parts = [p for p in location.split("/") if p]
        if rtype in parts and parts.index(rtype) + 1 < len(parts):
            rid = parts[parts.index(rtype) + 1]
            return Created(f"{rtype}/{rid}", None)
        raise UpstreamRejected(SYSTEM, f"the server created a {rtype} but did not say its id")

    # --- error mapping ---------------------------------------------------------------------------------
    def _call(self, fn: Callable[[], Any], what: str, *, retry: bool) -> Any:
        attempts = self._retries + 1 if retry else 1
        last: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(self._backoff_s * 2 ** (attempt - 1))
            try:
                return fn()
            except requests.HTTPError as exc:
                resp = exc.response
                status = resp.status_code if resp is not None else None
                if status == 401:
                    raise TokenRejected(f"{what}: the FHIR server rejected the access token") from None
                if status == 403:
                    raise PermissionDenied(f"{what}: not permitted by the granted scopes") from None
                if status == 404:
                    raise NotFound(what) from None
                if status in RETRIABLE_STATUS or (status is not None and status >= 500):
                    last = UpstreamUnavailable(SYSTEM, f"{what}: HTTP {status}", status_code=status)
                    continue
                raise UpstreamRejected(SYSTEM, f"{what}: HTTP {status}", status_code=status) from None
            except requests.Timeout:
                last = UpstreamUnavailable(SYSTEM, f"{what}: timed out")
            except requests.ConnectionError:
                last = UpstreamUnavailable(SYSTEM, f"{what}: could not connect")
            except requests.RequestException as exc:
                last = UpstreamUnavailable(SYSTEM, f"{what}: {type(exc).__name__}")
            except Exception as exc:  # fhirclient raises bare exceptions for its 401/403/404 wrappers
                name = type(exc).__name__
                resp = getattr(exc, "response", None)
                status = getattr(resp, "status_code", None)
                if name == "FHIRUnauthorizedException" or status == 401:
                    raise TokenRejected(f"{what}: the FHIR server rejected the access token") from None
                if name == "FHIRPermissionDeniedException" or status == 403:
                    raise PermissionDenied(f"{what}: not permitted by the granted scopes") from None
                if name == "FHIRNotFoundException" or status == 404:
                    raise NotFound(what) from None
                if isinstance(exc, RiskServiceError):
                    raise
                raise UpstreamRejected(SYSTEM, f"{what}: unusable response ({name})") from None
        assert last is not None
        raise last


def _header(patient_id: str, p: Patient) -> PatientHeader:
    name = ""
    for hn in p.name or []:
        if hn.use in (None, "official", "usual"):
            given = " ".join(hn.given or [])
            name = " ".join(x for x in (given, hn.family or "") if x) or (hn.text or "")
            if name:
                break
    mrn = None
    for ident in p.identifier or []:
        codings = (ident.type.coding or []) if ident.type else []
        if any(c.code == "MR" for c in codings):
            mrn = ident.value
            break
    birth: date | None = None
    if p.birthDate is not None:
        birth = p.birthDate.date if isinstance(p.birthDate.date, date) else None
    return PatientHeader(patient_id=patient_id, name=name or "(name not recorded)", birth_date=birth,
                         gender=p.gender, mrn=mrn)
