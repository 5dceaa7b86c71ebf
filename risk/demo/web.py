"""The demo's pages: the service's landing page and a simulated EHR (patient list, chart with CDS cards, SMART app).

Routes (HTML, server-rendered with Jinja, no script; not in the OpenAPI document):

* ``GET /`` — what the service serves, with links, and the synthetic-data notice.
* ``GET /demo/ehr`` — patients from the EHR's FHIR server (``q`` name search, ``all=1`` for untagged patients too,
  ``cursor`` for the server's next/previous page).
* ``GET /demo/ehr/patients/{id}/cds`` — the chart: the demo EHR calls the service's ``patient-view`` hook over HTTP
  as a CDS client (:mod:`risk.demo.cds_client`) and renders the cards (``prefetch=0``: no prefetch, the service
  fetches with ``fhirAuthorization``); raw request and response behind a toggle.
* ``GET /demo/ehr/patients/{id}/app`` — the chart with the SMART app in an iframe, started by an EHR launch:
  ``/app/launch?iss=<fhir base>&launch=<base64url JSON {patient, practitioner, need_patient_banner, appContext}>``
  (``appContext`` from a card's smart link).
* ``GET /demo/ehr/cds-services`` — the discovery document as the demo EHR receives it (with its JWT).

Pages send a CSP without scripts (``default-src 'none'``; frames only from this origin and the authorization
server the FHIR server names), ``Cache-Control: no-store`` and ``Referrer-Policy: same-origin``.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import httpx
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from risk import __version__
from risk.config import Settings
from risk.deadline import Deadline
from risk.demo.cds_client import CdsJwtSigner, DemoCdsClient
from risk.demo.markdown import render as render_markdown
from risk.demo.patients import (
    FhirPatientDirectory,
    FilePatientDirectory,
    PatientDirectory,
    PatientQuery,
    PatientRow,
    check_patient_id,
    cursor_query,
)
from risk.errors import InvalidInput, RiskServiceError, UpstreamRejected, UpstreamUnavailable
from risk.loading.backend_auth import BackendServicesAuth
from risk.sources.fhir import FhirSource, open_fhir_source

log = logging.getLogger(__name__)

HERE: Final = Path(__file__).resolve().parent
EHR_PATH: Final = "/demo/ehr"
STATIC_PATH: Final = "/demo/static"
BANNER: Final = "Demo EHR simulator — synthetic data, not for clinical use"
MAX_APP_CONTEXT: Final = 2000
INDICATORS: Final = ("critical", "warning", "info")


class DemoEhr:
    """The simulated EHR's dependencies (one per process); clients are made on first use and closed at shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.public_base = str(settings.public_base_url).rstrip("/")
        self.fhir_base = str(settings.fhir.base_url).rstrip("/") if settings.fhir.base_url else None
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["markdown"] = render_markdown
        self._backend: BackendServicesAuth | None = None
        self._directory: PatientDirectory | None = None
        self._fhir: FhirSource | None = None
        self._cds: DemoCdsClient | None = None
        self._http: httpx.AsyncClient | None = None
        self._frame_origins: tuple[str, ...] | None = None
        self.signer_error: str | None = None

    # --- clients ---------------------------------------------------------------------------------------------
    def backend(self) -> BackendServicesAuth | None:
        """SMART Backend Services for the EHR's own FHIR reads (and the token it hands the CDS service)."""
        if self._backend is None and BackendServicesAuth.configured(self.settings.smart_backend):
            self._backend = BackendServicesAuth.from_settings(self.settings.smart_backend)
        return self._backend

    def directory(self) -> PatientDirectory | None:
        if self._directory is None:
            fhir = self.settings.fhir
            if fhir.base_url is not None:
                backend = self.backend()
                self._directory = FhirPatientDirectory(
                    str(fhir.base_url), token=backend.token if backend is not None else fhir.bearer_token,
                    timeout_s=fhir.timeout_s)
            elif fhir.bundle_dir is not None:
                from risk.sources.fhir_file import FileFhirSource

                self._directory = FilePatientDirectory(FileFhirSource(fhir.bundle_dir))
        return self._directory

    def fhir_source(self) -> FhirSource | None:
        if self._fhir is None:
            backend = self.backend()
            self._fhir = open_fhir_source(self.settings.fhir, token=backend.token if backend is not None else None)
        return self._fhir

    def use_http(self, http: httpx.AsyncClient) -> None:
        """Replace the HTTP client the CDS calls go through (tests: an in-process ASGI transport)."""
        self._http = http
        self._cds = None

    def cds(self) -> DemoCdsClient:
        if self._cds is None:
            demo = self.settings.demo
            signer = None
            self.signer_error = None
            if demo.cds_client_jwks_file is not None:
                try:
                    signer = CdsJwtSigner.from_file(demo.cds_client_iss, demo.cds_client_jwks_file)
                except InvalidInput as exc:
                    self.signer_error = str(exc)
            if self._http is None:
                self._http = httpx.AsyncClient(timeout=demo.cds_timeout_s, follow_redirects=False)
            self._cds = DemoCdsClient(
                service_base_url=self.public_base, http=self._http, signer=signer,
                practitioner_id=demo.practitioner_id, fhir_base_url=self.fhir_base, fhir=self.fhir_source(),
                backend=self.backend() if self.fhir_base else None, fhir_timeout_s=self.settings.fhir.timeout_s)
        return self._cds

    def frame_origins(self) -> tuple[str, ...]:
        """Origins the SMART app's iframe passes through: this one and the authorization server's."""
        if self._frame_origins is None:
            origins = ["'self'"]
            if self.fhir_base is not None:
                try:
                    from risk.smart.discovery import Discovery

                    discovery = Discovery(timeout_s=self.settings.smart.http_timeout_s, retries=0)
                    try:
                        endpoint = discovery.get(self.fhir_base).authorization_endpoint
                    finally:
                        discovery.close()
                    parts = urlsplit(endpoint)
                    origins.append(f"{parts.scheme}://{parts.netloc}")
                except Exception as exc:  # the page still renders; the app shows its own error in the frame
                    log.warning("SMART discovery for the demo EHR failed: %s", exc)
                    return tuple(origins)
            self._frame_origins = tuple(origins)
        return self._frame_origins

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        if isinstance(self._directory, FhirPatientDirectory):
            self._directory.close()
        closer = getattr(self._fhir, "close", None)
        if callable(closer):
            closer()
        if self._backend is not None:
            self._backend.close()

    # --- rendering -------------------------------------------------------------------------------------------
    def render(self, request: Request, template: str, *, status_code: int = 200, frames: tuple[str, ...] = (),
               **context: Any) -> HTMLResponse:
        context.update(banner=BANNER, ehr=EHR_PATH, static=STATIC_PATH, version=__version__,
                       synthetic=self.settings.synthetic_data, public_base=self.public_base,
                       host_mismatch=_host_mismatch(request, self.public_base))
        response = self.templates.TemplateResponse(request, template, context, status_code=status_code)
        response.headers.update(security_headers(frames))
        return response

    def error(self, request: Request, status: int, title: str, detail: str, **context: Any) -> HTMLResponse:
        return self.render(request, "demo/error.html", status_code=status, title=title, detail=detail, **context)

    def upstream_error(self, request: Request, exc: RiskServiceError, what: str) -> HTMLResponse:
        if isinstance(exc, UpstreamUnavailable):
            return self.error(request, 503, f"{what}: the server did not answer", str(exc))
        if isinstance(exc, UpstreamRejected):
            return self.error(request, 502, f"{what}: the server refused", str(exc))
        if isinstance(exc, InvalidInput):
            return self.error(request, 422, f"Invalid {exc.field}", exc.message, field=exc.field)
        return self.error(request, 500, what, str(exc))

    def auth_mode(self) -> str:
        if self.settings.cds.open_mode:
            return "OPEN MODE (CDS calls are not authenticated; local demos only)"
        demo = self.settings.demo
        if demo.cds_client_jwks_file is None:
            return "JWT required, but the demo EHR has no signing key (demo.cds_client_jwks_file)"
        registered = any(i.iss == demo.cds_client_iss for i in self.settings.cds.issuers)
        return (f"signed JWT (iss {demo.cds_client_iss})" + ("" if registered else
                " — WARNING: this issuer is not in cds.issuers, the service will refuse it"))


def security_headers(frames: tuple[str, ...] = ()) -> dict[str, str]:
    csp = ["default-src 'none'", "style-src 'self'", "img-src 'self' data:", "form-action 'self'",
           "base-uri 'none'", "frame-ancestors 'none'"]
    if frames:
        csp.append("frame-src " + " ".join(frames))
    return {"Content-Security-Policy": "; ".join(csp), "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}


def _host_mismatch(request: Request, public_base: str) -> bool:
    """The page was opened at another address than the one the authorization server redirects to."""
    return request.url.netloc != urlsplit(public_base).netloc


def launch_parameter(patient_id: str, practitioner_id: str, app_context: str | None) -> str:
    """The EHR launch's ``launch`` value for the local authorization server: base64url(JSON), no padding."""
    body: dict[str, Any] = {"patient": patient_id, "practitioner": practitioner_id, "need_patient_banner": False}
    if app_context:
        body["appContext"] = app_context
    return base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).rstrip(b"=").decode()


def card_view(card: dict[str, Any], patient_id: str, app_launch_url: str) -> dict[str, Any]:
    """What the template needs of one card: links split into app launches (routed through the EHR) and others."""
    indicator = card.get("indicator") if card.get("indicator") in INDICATORS else "info"
    app_links, other_links = [], []
    for link in card.get("links") or ():
        if not isinstance(link, dict) or not isinstance(link.get("url"), str):
            continue
        label = str(link.get("label") or link["url"])
        if link.get("type") == "smart":
            if link["url"].rstrip("/") != app_launch_url:
                other_links.append({"label": label, "url": None, "note": f"unknown SMART app {link['url']}"})
                continue
            query = {"appContext": link["appContext"]} if isinstance(link.get("appContext"), str) else {}
            app_links.append({"label": label, "href": f"{EHR_PATH}/patients/{patient_id}/app"
                              + (f"?{urlencode(query)}" if query else ""), "app_context": link.get("appContext")})
        elif urlsplit(link["url"]).scheme in ("http", "https"):
            other_links.append({"label": label, "url": link["url"], "note": None})
    suggestions = []
    for s in card.get("suggestions") or ():
        if isinstance(s, dict):
            actions = [{"type": a.get("type"), "description": a.get("description"),
                        "resource_type": (a.get("resource") or {}).get("resourceType")
                        if isinstance(a.get("resource"), dict) else None}
                       for a in s.get("actions") or () if isinstance(a, dict)]
            suggestions.append({"label": s.get("label"), "recommended": s.get("isRecommended"), "actions": actions})
    source: dict[str, Any] = card["source"] if isinstance(card.get("source"), dict) else {}
    topic: dict[str, Any] = source["topic"] if isinstance(source.get("topic"), dict) else {}
    source_url = source["url"] if isinstance(source.get("url"), str) else None
    return {
        "uuid": card.get("uuid"), "summary": str(card.get("summary") or ""), "indicator": indicator,
        "detail": card.get("detail") if isinstance(card.get("detail"), str) else None,
        "source_label": source.get("label"), "topic": topic.get("display") or topic.get("code"),
        "source_url": source_url if source_url and urlsplit(source_url).scheme in ("http", "https") else None,
        "suggestions": suggestions, "selection": card.get("selectionBehavior"),
        "overrides": [r.get("display") or r.get("code") for r in card.get("overrideReasons") or ()
                      if isinstance(r, dict)],
        "app_links": app_links, "other_links": other_links,
    }


# --- routes --------------------------------------------------------------------------------------------------------
def build_router(ehr: DemoEhr) -> APIRouter:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await ehr.close()

    router = APIRouter(include_in_schema=False, lifespan=lifespan)
    settings = ehr.settings

    @router.get("/", response_class=HTMLResponse)
    def landing(request: Request) -> Response:
        return ehr.render(request, "demo/landing.html", title="Lung cancer risk service", settings=settings,
                          fhir=ehr.fhir_base or (str(settings.fhir.bundle_dir) if settings.fhir.bundle_dir else None),
                          pacs=str(settings.dicomweb.url or settings.dicomweb.file_dir or "") or None,
                          auth_mode=ehr.auth_mode())

    @router.get(EHR_PATH, response_class=HTMLResponse)
    @router.get(EHR_PATH + "/", response_class=HTMLResponse)
    def patient_list(request: Request, q: str | None = None,
                     include_all: str | None = Query(default=None, alias="all"),
                     cursor: str | None = None) -> Response:
        directory = ehr.directory()
        if directory is None:
            return ehr.error(request, 503, "No EHR data configured",
                             "Set fhir.base_url (a FHIR server) or fhir.bundle_dir (a folder of FHIR JSON).")
        try:
            query = PatientQuery(name=(q or "").strip() or None, synthetic_only=include_all != "1",
                                 count=settings.demo.patients_per_page, cursor=cursor or None)
            page = directory.page(query, deadline=Deadline(max(settings.fhir.timeout_s * 2, 5.0)))
        except RiskServiceError as exc:
            return ehr.upstream_error(request, exc, "Patient list")
        return ehr.render(request, "demo/patients.html", title="Patients", page=page, query=query,
                          next_href=f"{EHR_PATH}?{cursor_query(query, page.next_cursor)}" if page.next_cursor else None,
                          previous_href=f"{EHR_PATH}?{cursor_query(query, page.previous_cursor)}"
                          if page.previous_cursor else None,
                          can_launch=ehr.fhir_base is not None)

    async def read_patient(request: Request, patient_id: str) -> PatientRow | Response:
        directory = ehr.directory()
        if directory is None:
            return ehr.error(request, 503, "No EHR data configured", "Set fhir.base_url or fhir.bundle_dir.")
        try:
            check_patient_id(patient_id)
            row = await run_in_threadpool(directory.read, patient_id,
                                          deadline=Deadline(max(settings.fhir.timeout_s * 2, 5.0)))
        except RiskServiceError as exc:
            return ehr.upstream_error(request, exc, "Patient")
        if row is None:
            return ehr.error(request, 404, "No such patient", f"The EHR has no Patient/{patient_id}.")
        return row

    @router.get(EHR_PATH + "/patients/{patient_id}")
    def chart(patient_id: str) -> Response:
        return RedirectResponse(f"{EHR_PATH}/patients/{patient_id}/cds", status_code=303)

    @router.get(EHR_PATH + "/patients/{patient_id}/cds", response_class=HTMLResponse)
    async def chart_cds(request: Request, patient_id: str, prefetch: str = "1") -> Response:
        if prefetch not in ("0", "1"):
            return ehr.error(request, 422, "Invalid prefetch", "must be 0 or 1", field="prefetch")
        row = await read_patient(request, patient_id)
        if isinstance(row, Response):
            return row
        client = ehr.cds()
        exchange, discovery = await client.patient_view(patient_id, prefetch=prefetch == "1")
        launch_url = f"{ehr.public_base}/app/launch"
        cards = [card_view(c, patient_id, launch_url) for c in exchange.cards]
        return ehr.render(request, "demo/chart_cds.html", title=f"{row.name} · CDS Hooks", patient=row,
                          tab="cds", exchange=exchange, discovery_failed=discovery, cards=cards,
                          prefetch=prefetch == "1", signer=client.signer, signer_error=ehr.signer_error,
                          auth_mode=ehr.auth_mode(), can_launch=ehr.fhir_base is not None)

    @router.get(EHR_PATH + "/patients/{patient_id}/app", response_class=HTMLResponse)
    async def chart_app(request: Request, patient_id: str,
                        app_context: str | None = Query(default=None, alias="appContext")) -> Response:
        if app_context is not None and (len(app_context) > MAX_APP_CONTEXT or not app_context.isprintable()):
            return ehr.error(request, 422, "Invalid appContext",
                             f"must be printable text of at most {MAX_APP_CONTEXT} characters", field="appContext")
        row = await read_patient(request, patient_id)
        if isinstance(row, Response):
            return row
        if ehr.fhir_base is None:
            return ehr.error(request, 503, "No FHIR server",
                             "The SMART app needs a FHIR server and its authorization server (make demo starts "
                             "both); this service reads a folder of FHIR JSON.", patient=row)
        launch = launch_parameter(patient_id, settings.demo.practitioner_id, app_context)
        src = "/app/launch?" + urlencode({"iss": ehr.fhir_base, "launch": launch})
        frames = await run_in_threadpool(ehr.frame_origins)
        launch_json = json.dumps(json.loads(base64.urlsafe_b64decode(launch + "=" * (-len(launch) % 4))), indent=2)
        return ehr.render(request, "demo/chart_app.html", title=f"{row.name} · SMART app", patient=row, tab="app",
                          src=src, launch_json=launch_json, app_context=app_context, iss=ehr.fhir_base,
                          frames=frames, can_launch=True)

    @router.get(EHR_PATH + "/cds-services", response_class=HTMLResponse)
    async def discovery(request: Request) -> Response:
        found, exchange = await ehr.cds().discovery()
        return ehr.render(request, "demo/discovery.html", title="CDS Hooks discovery", exchange=exchange,
                          found=found, auth_mode=ehr.auth_mode())

    return router

