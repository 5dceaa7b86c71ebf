"""The CDS Hooks 2.0 HTTP service: discovery, the ``lung-risk`` service (patient-view, order-select, order-sign)
and its feedback endpoint.

Routes (``{base}`` is ``settings.public_base_url``; each JWT's ``aud`` must be the URL called):

* ``GET /cds-services`` → ``{"services": [...]}`` (the same id for the three hooks).
* ``POST /cds-services/lung-risk`` → ``{"cards": [...]}`` (+ ``systemActions`` when enabled); 412 when required
  data cannot be had; 422 with an OperationOutcome naming the field for a malformed request; 401 (same body for
  every reason) for a bad or missing JWT; 404 for another service id.
* ``POST /cds-services/lung-risk/feedback`` → 200 (empty body) once stored; idempotent.

Hot path (performance.md §1-2): the body is read as bytes and parsed once with orjson; the prefetch is walked as
plain dicts; cards are dicts serialised with orjson into a bytes response (no ``jsonable_encoder``, no
fhir.resources). FHIR fetches and imaging loads run in the threadpool under one Deadline; issued cards and the
audit event go to a background writer (:mod:`risk.cds.ledger`), so no request waits on the database except for the
JWT replay check (a unique insert) and feedback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from risk.assess import DEFAULT_POLICY, AssessmentPolicy, FusionPredictorLike, assess, check_order
from risk.cds.cards import CardSettings, IssuedCard, order_cards, patient_view_cards, system_actions
from risk.cds.data import FhirClientPool, PreconditionFailed, gather_snapshot, prefetch_source
from risk.cds.discovery import ORDER_SELECT, PATIENT_VIEW, SERVICE_ID, discovery_document
from risk.cds.feedback import parse_feedback, store_feedback
from risk.cds.imaging import CachedImaging
from risk.cds.ledger import CardLedger, audit_row
from risk.cds.orders import chest_ct_orders, draft_resource, selected
from risk.cds.request import HookRequest, parse_hook_request
from risk.cds.security import CdsAuthenticator, CdsCaller, ReplayCache, Unauthorized
from risk.config import Environment, Settings
from risk.deadline import Deadline
from risk.errors import InvalidInput
from risk.snapshots import ImagingLoader
from risk.store.db import Database

log = logging.getLogger(__name__)

JSON = "application/json"
MAX_BODY_BYTES = 8 * 1024 * 1024
_UNAUTHORIZED = orjson.dumps({"resourceType": "OperationOutcome", "issue": [
    {"severity": "error", "code": "login", "diagnostics": "Authentication required"}]})


def outcome(status: int, code: str, diagnostics: str, expression: str | None = None,
            headers: dict[str, str] | None = None) -> Response:
    """A non-2xx answer with an OperationOutcome body (CDS Hooks 3.0 ballot asks for one; harmless in 2.0)."""
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return Response(orjson.dumps({"resourceType": "OperationOutcome", "issue": [issue]}), status_code=status,
                    media_type=JSON, headers=headers)


@dataclass(slots=True)
class HookResult:
    body: bytes
    cards: list[IssuedCard]
    outcome: str
    detail: dict[str, Any]


class CdsService:
    """Everything one process needs to answer hooks; created at mount, bound to the database at start-up."""

    def __init__(self, settings: Settings, *, predictor: FusionPredictorLike | None = None,
                 imaging: ImagingLoader | None = None, authenticator: CdsAuthenticator | None = None,
                 policy: AssessmentPolicy = DEFAULT_POLICY, today: Callable[[], date] = date.today) -> None:
        self.settings = settings
        self.base_url = str(settings.public_base_url).rstrip("/")
        self.predictor = predictor
        self.imaging = imaging
        if policy == DEFAULT_POLICY:  # the one CDS setting that is an assessment policy
            policy = replace(policy, stale_smoking_days=settings.cds.stale_after_days)
        self.policy = policy
        self.today = today
        self.budget_s = settings.cds.request_budget_s
        """Total time for one hook call (prefetch completion, imaging, assessment)."""
        self.db: Database | None = None
        self.replay = ReplayCache(strict=settings.cds.replay_check == "strict")
        self.auth = authenticator or CdsAuthenticator(settings.cds, replay=self.replay)
        self.ledger = CardLedger(lambda: self.db, flush_s=settings.cds.card_flush_s)
        self.pool = FhirClientPool(settings.fhir)
        self.discovery = discovery_document(settings)
        self.cards = CardSettings(base_url=self.base_url, synthetic_data=settings.synthetic_data,
                                  system_actions=settings.cds.system_actions)
        self.require_https = settings.environment is Environment.PRODUCTION
        self._fhir_servers = {i.iss: tuple(i.fhir_servers) for i in settings.cds.issuers}
        self._imaging_factory: Callable[[Database], ImagingLoader | None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------------------
    def start(self, db: Database | None) -> None:
        self.db = db
        self.auth.replay.attach(db)
        if self.imaging is None and db is not None:
            self.imaging = default_imaging(self.settings, db)
        if self.predictor is None and self.settings.models.version:
            self.predictor = load_fusion(self.settings)
        if self.settings.cds.open_mode:
            log.warning("CDS OPEN MODE is on: CDS Hooks calls are accepted WITHOUT authentication "
                        "(settings.cds.open_mode). Local demos only.")

    def stop(self) -> None:
        self.auth.replay.close()
        self.ledger.close()
        self.pool.close()

    # --- authentication ------------------------------------------------------------------------------------
    async def caller(self, request: Request, audience: str) -> CdsCaller | Response:
        try:
            return await self.auth.authenticate(request.headers.get("authorization"), audience)
        except Unauthorized as exc:
            log.info("CDS call to %s refused: %s", request.url.path, exc.reason)
            self.ledger.record([], audit_row(actor="unauthenticated", action="cds.auth", entity=request.url.path,
                                             outcome="denied", detail={"reason": exc.reason[:200]}))
            return Response(_UNAUTHORIZED, status_code=401, media_type=JSON,
                            headers={"WWW-Authenticate": 'Bearer realm="cds-services"'})

    def check_fhir_server(self, caller: CdsCaller, request: HookRequest) -> None:
        """``fhirServer`` must be one the calling client is registered with (when its issuer lists any)."""
        allowed = self._fhir_servers.get(caller.iss, ())
        if allowed and request.fhir_server is not None and not any(
                request.fhir_server.rstrip("/") == a.rstrip("/") or request.fhir_server.startswith(a.rstrip("/") + "/")
                for a in allowed):
            raise InvalidInput("fhirServer", "is not a FHIR server registered for this CDS client")

    # --- hooks ----------------------------------------------------------------------------------------------
    async def handle_hook(self, request: HookRequest, caller: CdsCaller) -> HookResult | Response:
        started = time.perf_counter()
        deadline = Deadline(self.budget_s)
        as_of = self.today()
        orders, targets = [], []
        if request.hook != PATIENT_VIEW:
            draft = request.context["draftOrders"]
            orders = chest_ct_orders(draft, as_of)
            targets = selected(orders, request.context["selections"]) if request.hook == ORDER_SELECT else orders
            if not targets:
                return HookResult(b'{"cards":[]}', [], "success", {"orders": "none concerning chest CT"})
        source, fallback = prefetch_source(request, self.pool)
        try:
            snapshot, report = await gather_snapshot(request, source, fallback, as_of=as_of, deadline=deadline,
                                                     imaging=self.imaging)
        except PreconditionFailed as exc:
            return outcome(412, "incomplete", f"Required data cannot be obtained: {exc.reason}")
        assessment = assess(snapshot, fusion=self.predictor, policy=self.policy,
                            generated_at=datetime.now(UTC))
        if request.hook == PATIENT_VIEW:
            cards = patient_view_cards(assessment, snapshot, self.cards)
        else:
            draft = request.context["draftOrders"]
            findings = [f for order in targets
                        for f in check_order(assessment, snapshot, order, session_orders=tuple(orders),
                                             policy=self.policy)]
            drafts = {o.reference: r for o in targets if (r := draft_resource(draft, o.reference)) is not None}
            cards = order_cards(findings, assessment, snapshot, self.cards, drafts)
        body: dict[str, Any] = {"cards": [c.card for c in cards]}
        if request.hook == PATIENT_VIEW and self.cards.system_actions:
            actions = system_actions(assessment)
            if actions:
                body["systemActions"] = actions
        detail = {"hookInstance": request.hook_instance, "hook": request.hook, "cards": len(cards),
                  "assessment": assessment.assessment_id, "prefetch_used": list(report.satisfied),
                  "prefetch_null": list(report.null), "fetched": list(report.fetched),
                  "gaps": len(assessment.data_gaps), "ms": round((time.perf_counter() - started) * 1000, 1)}
        return HookResult(orjson.dumps(body), cards, "success", detail)

    def record(self, request: HookRequest, caller: CdsCaller, result: HookResult | Response, status: int) -> None:
        cards = result.cards if isinstance(result, HookResult) else []
        now = datetime.now(UTC)
        rows = [{"uuid": c.uuid, "service_id": SERVICE_ID, "hook": request.hook,
                 "hook_instance": request.hook_instance, "card_type": c.card_type.code, "indicator": c.indicator,
                 "patient": f"Patient/{request.patient_id}", "issued_at": now,
                 "assessment_id": _assessment_of(result), "suggestions": c.suggestions or None} for c in cards]
        detail = result.detail if isinstance(result, HookResult) else {"hookInstance": request.hook_instance,
                                                                        "hook": request.hook, "status": status}
        if caller.tenant:
            detail = {**detail, "tenant": caller.tenant}
        if caller.jti:
            detail = {**detail, "jti": caller.jti}
        outcome_text = result.outcome if isinstance(result, HookResult) else (
            "precondition" if status == 412 else "error")
        self.ledger.record(rows, audit_row(actor=caller.iss, action=f"cds.{request.hook}",
                                           entity=f"Patient/{request.patient_id}", outcome=outcome_text,
                                           detail=detail))


def _assessment_of(result: HookResult | Response) -> str | None:
    return result.detail.get("assessment") if isinstance(result, HookResult) else None


def default_imaging(settings: Settings, db: Database) -> ImagingLoader | None:
    """The PACS loader with the imaging-feature cache, when a PACS (DICOMweb or folder) is configured."""
    if settings.dicomweb.url is None and settings.dicomweb.file_dir is None:
        return None
    try:
        from risk.imaging.cache import ImagingFeatureCache
        from risk.snapshots import pacs_imaging
        from risk.sources.dicomweb import open_dicom_source

        source = open_dicom_source(settings.dicomweb)
        if source is None:
            return None
        return CachedImaging(pacs_imaging(source, ImagingFeatureCache(db)), ttl_s=settings.cds.imaging_cache_s)
    except Exception as exc:  # a PACS misconfiguration must not stop the CDS service; it shows in every card
        log.error("PACS not available to the CDS service: %s: %s", type(exc).__name__, exc)
        return None


def load_fusion(settings: Settings) -> FusionPredictorLike | None:
    version = settings.models.version
    try:
        from fusion_models.runtime import load_predictor

        predictor: FusionPredictorLike = load_predictor(settings.models.registry_dir, str(version), task="patient")
        log.info("fusion model %s loaded for CDS", version)
        return predictor
    except Exception as exc:
        log.error("fusion model %s could not be loaded (published models only): %s: %s", version,
                  type(exc).__name__, exc)
        return None


# --- routes ----------------------------------------------------------------------------------------------------
def hook_endpoint(service: CdsService) -> Callable[[Request], Awaitable[Response]]:
    """``POST /cds-services/{service_id}``: a plain Starlette endpoint, added to the application's own router
    (risk.cds.mount), not through an included APIRouter: FastAPI matches an included router's routes again for each
    request it dispatches, and this is the hot path. It is not in the OpenAPI document: the CDS Hooks discovery
    endpoint describes it."""
    base = service.base_url

    async def call_service(request: Request) -> Response:
        service_id = str(request.path_params["service_id"])
        caller = await service.caller(request, f"{base}/cds-services/{service_id}")
        if isinstance(caller, Response):
            return caller
        if service_id != SERVICE_ID:
            return outcome(404, "not-found", f"No CDS service {service_id!r}; see GET /cds-services")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return outcome(413, "too-costly", f"request body over {MAX_BODY_BYTES} bytes")
        try:
            hook_request = parse_hook_request(body, require_https=service.require_https)
            service.check_fhir_server(caller, hook_request)
        except InvalidInput as exc:
            return outcome(422, "invalid", f"{exc.field}: {exc.message}", exc.field)
        try:
            result = await service.handle_hook(hook_request, caller)
        except InvalidInput as exc:
            return outcome(422, "invalid", f"{exc.field}: {exc.message}", exc.field)
        if isinstance(result, Response):
            service.record(hook_request, caller, result, result.status_code)
            return result
        service.record(hook_request, caller, result, 200)
        return Response(result.body, media_type=JSON)

    return call_service


def build_router(service: CdsService) -> APIRouter:
    """Discovery and feedback, and the service's lifespan (started once the database is open)."""
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start(getattr(app.state, "db", None))
        try:
            yield
        finally:
            service.stop()

    router = APIRouter(tags=["CDS Hooks"], lifespan=lifespan)
    base = service.base_url

    @router.get("/cds-services", summary="CDS Hooks discovery", response_class=Response)
    async def discovery(request: Request) -> Response:
        if not service.settings.cds.public_discovery:
            caller = await service.caller(request, f"{base}/cds-services")
            if isinstance(caller, Response):
                return caller
        return Response(service.discovery, media_type=JSON)

    @router.post("/cds-services/{service_id}/feedback", summary="CDS Hooks feedback", response_class=Response)
    async def feedback(service_id: str, request: Request) -> Response:
        caller = await service.caller(request, f"{base}/cds-services/{service_id}/feedback")
        if isinstance(caller, Response):
            return caller
        if service_id != SERVICE_ID:
            return outcome(404, "not-found", f"No CDS service {service_id!r}")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return outcome(413, "too-costly", f"request body over {MAX_BODY_BYTES} bytes")
        try:
            items = parse_feedback(body)
        except InvalidInput as exc:
            return outcome(422, "invalid", f"{exc.field}: {exc.message}", exc.field)
        db = service.db
        if db is None:
            return outcome(503, "transient", "feedback store not available")
        await run_in_threadpool(service.ledger.flush)
        try:
            stored = await run_in_threadpool(store_feedback, db, service_id, items)
        except InvalidInput as exc:
            return outcome(422, "invalid", f"{exc.field}: {exc.message}", exc.field)
        service.ledger.record([], audit_row(actor=caller.iss, action="cds.feedback", entity=f"cds-service/{service_id}",
                                            outcome="success", detail={"items": len(items), "new": stored}))
        return Response(status_code=200)

    return router
