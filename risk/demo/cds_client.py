"""The demo EHR as a CDS Hooks 2.0 client of the service: discovery, then ``patient-view`` when a chart opens.

What a real CDS client does, over HTTP, against the service's public URL (``settings.public_base_url``):

* every call carries ``Authorization: Bearer <JWT>`` signed by the demo EHR's own key
  (:class:`CdsJwtSigner`: header ``alg``/``kid``/``typ``; claims ``iss`` = ``settings.demo.cds_client_iss``,
  ``aud`` = the URL called, ``iat``, ``exp`` (5 minutes), a fresh ``jti``); with no key configured the calls are
  unsigned, which only ``cds.open_mode`` accepts (the 401 is then shown, with what to fix);
* discovery (``GET /cds-services``) gives the service id for ``patient-view`` and its prefetch templates;
* the hook request carries ``hook``, a fresh ``hookInstance``, ``fhirServer`` and ``fhirAuthorization`` (a SMART
  Backend Services token, when one is configured), ``context`` (``userId`` = ``Practitioner/<demo.practitioner_id>``,
  ``patientId``) and, unless turned off, ``prefetch`` filled from the EHR's FHIR data the way an EHR does
  (a template that cannot be filled is left out, so the service fetches it itself).

Outcomes are :class:`HookExchange` values, failures included: the page shows what was sent (tokens redacted)
and what came back.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import httpx
import jwt
from starlette.concurrency import run_in_threadpool

from risk.deadline import Deadline
from risk.errors import InvalidInput, RiskServiceError
from risk.loading.backend_auth import REFRESH_MARGIN_S, BackendServicesAuth
from risk.sources.fhir import FhirQuery, FhirSource, render_template, run_query

PATIENT_VIEW: Final = "patient-view"
SIGNING_ALGORITHMS: Final = ("ES384", "RS384")
JWT_LIFETIME_S: Final = 300
REDACTED: Final = "…redacted…"
JSON: Final = "application/json"


class CdsJwtSigner:
    """Signs the demo EHR's CDS client JWTs with a private JWK (ES384 or RS384)."""

    def __init__(self, iss: str, jwk: Mapping[str, Any], *, lifetime_s: int = JWT_LIFETIME_S) -> None:
        alg = jwk.get("alg")
        if alg not in SIGNING_ALGORITHMS:
            raise InvalidInput("demo.cds_client_jwks_file", f"the key must be {' or '.join(SIGNING_ALGORITHMS)}")
        if not isinstance(jwk.get("kid"), str) or "d" not in jwk:
            raise InvalidInput("demo.cds_client_jwks_file", "the key needs a kid and its private part")
        try:
            self._key = jwt.PyJWK(dict(jwk)).key
        except (jwt.PyJWKError, ValueError, TypeError) as exc:
            raise InvalidInput("demo.cds_client_jwks_file", f"key {jwk.get('kid')!r} is unusable: {exc}") from exc
        self.iss = iss
        self.algorithm = str(alg)
        self.kid = str(jwk["kid"])
        self.lifetime_s = lifetime_s

    @classmethod
    def from_file(cls, iss: str, path: Path) -> CdsJwtSigner:
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise InvalidInput("demo.cds_client_jwks_file", f"cannot read {path}: {exc.strerror}") from exc
        except ValueError as exc:
            raise InvalidInput("demo.cds_client_jwks_file", f"{path} is not JSON: {exc}") from exc
        keys = data.get("keys") if isinstance(data, dict) else None
        usable = [k for k in keys or () if isinstance(k, dict) and k.get("alg") in SIGNING_ALGORITHMS and "d" in k]
        if not usable:
            raise InvalidInput("demo.cds_client_jwks_file", f"{path} holds no private ES384 or RS384 key")
        return cls(iss, usable[0])

    def token(self, aud: str) -> str:
        now = int(time.time())
        claims = {"iss": self.iss, "aud": aud, "iat": now, "exp": now + self.lifetime_s, "jti": str(uuid.uuid4())}
        return jwt.encode(claims, self._key, algorithm=self.algorithm, headers={"typ": "JWT", "kid": self.kid})


@dataclass(frozen=True, slots=True)
class HookExchange:
    """One CDS call as the page shows it."""

    url: str
    request: Mapping[str, Any] | None
    """The body sent, with ``fhirAuthorization.access_token`` redacted."""
    status_code: int | None = None
    response: Any = None
    """The parsed JSON answer (None when it was not JSON or no answer came)."""
    response_text: str = ""
    elapsed_ms: float = 0.0
    error: str | None = None
    """Why no cards could be shown (the service's answer or our own failure), in words."""
    prefetch_sent: tuple[str, ...] = ()
    prefetch_left_out: tuple[str, ...] = ()
    signed: bool = False

    @property
    def cards(self) -> list[dict[str, Any]]:
        cards = self.response.get("cards") if isinstance(self.response, dict) else None
        return [c for c in cards if isinstance(c, dict)] if isinstance(cards, list) else []

    @property
    def pretty_response(self) -> str:
        if self.response is not None:
            return json.dumps(self.response, indent=2, ensure_ascii=False)
        return self.response_text

    @property
    def pretty_request(self) -> str:
        return json.dumps(self.request, indent=2, ensure_ascii=False) if self.request is not None else ""


@dataclass(slots=True)
class Discovered:
    service_id: str
    prefetch: dict[str, str] = field(default_factory=dict)


class DemoCdsClient:
    """The demo EHR's CDS client (see the module docstring)."""

    def __init__(self, *, service_base_url: str, http: httpx.AsyncClient, signer: CdsJwtSigner | None,
                 practitioner_id: str, fhir_base_url: str | None = None, fhir: FhirSource | None = None,
                 backend: BackendServicesAuth | None = None, fhir_timeout_s: float = 10.0) -> None:
        self.base_url = service_base_url.rstrip("/")
        self.http = http
        self.signer = signer
        self.user_id = f"Practitioner/{practitioner_id}"
        self.fhir_base_url = fhir_base_url.rstrip("/") if fhir_base_url else None
        self.fhir = fhir
        self.backend = backend
        self.fhir_timeout_s = fhir_timeout_s
        self._discovered: Discovered | None = None

    def _headers(self, url: str) -> dict[str, str]:
        headers = {"Accept": JSON, "Content-Type": JSON}
        if self.signer is not None:
            headers["Authorization"] = f"Bearer {self.signer.token(url)}"
        return headers

    async def discovery(self) -> tuple[Discovered | None, HookExchange]:
        """The ``patient-view`` service (cached once found) and the exchange that found it."""
        url = f"{self.base_url}/cds-services"
        exchange = await self._send("GET", url, None)
        if exchange.error is None:
            services = exchange.response.get("services") if isinstance(exchange.response, dict) else None
            for service in services if isinstance(services, list) else ():
                if isinstance(service, dict) and service.get("hook") == PATIENT_VIEW and service.get("id"):
                    raw = service.get("prefetch")
                    prefetch: dict[str, Any] = raw if isinstance(raw, dict) else {}
                    self._discovered = Discovered(str(service["id"]), {str(k): str(v) for k, v in prefetch.items()})
                    return self._discovered, exchange
            exchange = replace(exchange, error="the discovery document lists no patient-view service")
        return None, exchange

    async def patient_view(self, patient_id: str, *, prefetch: bool = True) -> tuple[HookExchange, HookExchange | None]:
        """Call ``patient-view`` for the patient: (the hook exchange, the discovery exchange when it failed)."""
        discovered = self._discovered
        if discovered is None:
            discovered, found = await self.discovery()
            if discovered is None:
                return found, found
        url = f"{self.base_url}/cds-services/{discovered.service_id}"
        body: dict[str, Any] = {"hookInstance": str(uuid.uuid4()), "hook": PATIENT_VIEW,
                                "context": {"userId": self.user_id, "patientId": patient_id}}
        if self.fhir_base_url is not None:
            body["fhirServer"] = self.fhir_base_url
            if self.backend is not None:
                try:
                    token = await run_in_threadpool(self.backend.token)
                except RiskServiceError as exc:
                    return HookExchange(url=url, request=None, error=f"no FHIR token for the service: {exc}"), None
                body["fhirAuthorization"] = {
                    "access_token": token, "token_type": "Bearer", "expires_in": int(REFRESH_MARGIN_S),
                    "scope": self.backend.granted_scope or self.backend.scope, "subject": self.backend.client_id}
        sent: tuple[str, ...] = ()
        left_out: tuple[str, ...] = ()
        if prefetch and discovered.prefetch and self.fhir is not None:
            values, left_out = await run_in_threadpool(self._prefetch, discovered.prefetch, patient_id)
            if values:
                body["prefetch"] = values
                sent = tuple(values)
        exchange = await self._send("POST", url, body)
        exchange = replace(exchange, prefetch_sent=sent, prefetch_left_out=left_out)
        if exchange.status_code == 401:
            self._discovered = None
        return exchange, None

    def _prefetch(self, templates: Mapping[str, str], patient_id: str) -> tuple[dict[str, Any], tuple[str, ...]]:
        """Fill each template from the EHR's data, the queries in parallel: a read gives the resource (or null), a
        search a searchset Bundle holding every page; a template that cannot be filled is left out."""
        tokens = {"context.patientId": patient_id, "context.userId": self.user_id,
                  "userPractitionerId": self.user_id.split("/", 1)[1]}
        deadline = Deadline(max(self.fhir_timeout_s * 3, 10.0))
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(templates)))) as pool:
            results = dict(zip(templates, pool.map(lambda t: self._fill(t, tokens, deadline), templates.values()),
                               strict=True))
        values = {key: value for key, (ok, value) in results.items() if ok}
        return values, tuple(key for key, (ok, _value) in results.items() if not ok)

    def _fill(self, template: str, tokens: Mapping[str, str], deadline: Deadline) -> tuple[bool, Any]:
        assert self.fhir is not None
        try:
            query = FhirQuery.parse(render_template(template, tokens))
            result = run_query(self.fhir, query, deadline=deadline)
        except (RiskServiceError, ValueError):
            return False, None
        if query.resource_id is not None:
            return True, result.resources[0] if result.resources else None
        matches = sum(1 for r in result.resources if r.get("resourceType") == query.resource_type)
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": matches}
        if result.resources:
            bundle["entry"] = [{"resource": r} for r in result.resources]
        return True, bundle

    async def _send(self, method: str, url: str, body: Mapping[str, Any] | None) -> HookExchange:
        redacted = _redacted(body)
        started = time.perf_counter()
        try:
            headers = self._headers(url)
            response = await self.http.request(method, url, headers=headers,
                                               content=json.dumps(body) if body is not None else None)
        except httpx.TimeoutException:
            return HookExchange(url=url, request=redacted, error="the service did not answer within the timeout",
                                elapsed_ms=_ms(started), signed=self.signer is not None)
        except httpx.HTTPError as exc:
            return HookExchange(url=url, request=redacted, error=f"the service could not be reached: {exc}",
                                elapsed_ms=_ms(started), signed=self.signer is not None)
        elapsed = _ms(started)
        try:
            parsed: Any = response.json() if response.content else None
        except ValueError:
            parsed = None
        error = None if response.status_code == 200 else _explain(response.status_code, parsed, self.signer)
        return HookExchange(url=url, request=redacted, status_code=response.status_code, response=parsed,
                            response_text=response.text, elapsed_ms=elapsed, error=error,
                            signed=self.signer is not None)


def _explain(status: int, body: Any, signer: CdsJwtSigner | None) -> str:
    diagnostics = ""
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        issues: list[Any] = body["issue"] if isinstance(body.get("issue"), list) else []
        diagnostics = "; ".join(str(i.get("diagnostics", "")) for i in issues if isinstance(i, dict))
    if status == 401:
        who = (f"the demo EHR's JWT (iss {signer.iss}, kid {signer.kid})" if signer is not None
               else "an unsigned call (no demo.cds_client_jwks_file)")
        return (f"HTTP 401: the service refused {who}. Register the demo EHR as a CDS issuer (python -m "
                "risk.demo.keys writes RISK_CDS__ISSUERS), or turn on cds.open_mode for a local demo.")
    return f"HTTP {status}" + (f": {diagnostics}" if diagnostics else "")


def _redacted(body: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if body is None:
        return None
    out = dict(body)
    auth = out.get("fhirAuthorization")
    if isinstance(auth, dict):
        out["fhirAuthorization"] = {**auth, "access_token": REDACTED}
    return out


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
