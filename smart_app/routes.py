"""The app's HTTP surface, a sub-application mounted at ``/app`` by the composition root.

Routes (all HTML unless noted):

* ``GET /app/launch`` — EHR launch (``iss`` + ``launch``) or standalone launch (no ``launch``: scopes ask for
  ``launch/patient``); discovery, a new server-side session with ``state`` and the PKCE verifier, redirect to
  the authorization endpoint.
* ``GET /app/callback`` — checks ``state`` against the session, exchanges the code with the verifier, stores the
  tokens server-side, rotates the session cookie and goes to the overview (or the nodule a CDS card named).
* ``GET /app/``, ``/app/timeline``, ``/app/explanation``, ``/app/actions`` — the pages.
* ``POST /app/actions/risk-assessment``, ``POST /app/actions/service-request`` — write-back (scope-checked).
* ``POST /app/refresh`` (reload data), ``POST /app/logout``.
* ``GET /app/key-image/{n}.png`` — the key image of nodule *n*, rendered by the PACS and proxied.
* ``GET /app/source/{n}`` — source record *n* of the assessment, read from the EHR with the launch's token.

No URL carries PHI: pages read the patient from the session; images and sources are addressed by their
position on the page. Every POST checks the CSRF token and the ``Origin``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from risk import __version__
from risk.config import Settings
from risk.deadline import Deadline
from risk.domain.assessment import model_label
from risk.errors import NotFound, RiskServiceError, UpstreamRejected, UpstreamUnavailable
from risk.smart.discovery import Discovery
from risk.smart.errors import AppError, ErrorCode
from risk.smart.identity import parse_fhir_user
from risk.smart.launch import (
    OAuthClient,
    TokenResponse,
    authorize_url,
    clean_text,
    parse_app_context,
    verify_id_token,
)
from risk.smart.page_security import CSRF_FIELD, CookiePolicy, csrf_valid, same_origin, security_headers
from risk.smart.pkce import new_pkce, new_state, states_match
from risk.smart.scopes import ScopeSet, ehr_scopes, standalone_scopes
from risk.store.audit import record_audit
from smart_app import views
from smart_app.assessing import AssessedPatient, AssessmentCache, Assessor, AssessRequest, PipelineAssessor
from smart_app.fhir import PatientHeader, PermissionDenied, SmartFhirClient, TokenRejected
from smart_app.imaging import KeyImageMarker, marker_for
from smart_app.store import LaunchMode, SessionPhase, SessionStore, SmartSession, TokenCipher
from smart_app.writeback import ORDERABLE, draft_service_request, risk_assessment_resources

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
MOUNT_PATH = "/app"
KEY_IMAGE_WINDOW = (-600.0, 1500.0)
"""Lung window (centre, width in HU) for the key image."""


class SecurityHeadersMiddleware:
    """Pure ASGI: adds CSP and the other security headers to every response of the app (not the service)."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self.names = {k for k, _ in self.raw}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                existing = [(k, v) for k, v in message.get("headers", []) if k.lower() not in self.names]
                message["headers"] = existing + self.raw
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass(frozen=True, slots=True)
class ActionResult:
    title: str
    detail: str
    reference: str | None = None
    status: str | None = None


class SmartApp:
    """The app's dependencies, shared by the routes (one per service process)."""

    def __init__(self, settings: Settings, *, parent: FastAPI, assessor: Assessor | None = None,
                 dicom_source: Any = None) -> None:
        self.settings = settings
        self.smart = settings.smart
        self.parent = parent
        self.public_base = str(settings.public_base_url).rstrip("/")
        self.redirect_uri = self.public_base + self.smart.redirect_path
        self.cookies = CookiePolicy(secure=self.smart.secure_cookies, same_site=self.smart.cookie_samesite,
                                    max_age_s=self.smart.session_ttl_s)
        self.discovery = Discovery(timeout_s=self.smart.http_timeout_s)
        self.oauth = OAuthClient(timeout_s=self.smart.http_timeout_s)
        self.cipher = TokenCipher(self.smart.token_key)
        self.assessor: Assessor = assessor or PipelineAssessor(
            settings, database=lambda: getattr(parent.state, "db", None))
        self._dicom_source = dicom_source
        self.cache = AssessmentCache(ttl_s=300.0)
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["model_label"] = model_label
        self.templates.env.globals.update(fmt_mm=views.format_mm, fmt_mm3=views.format_mm3, fmt_pct=views.format_pct)
        self._markers: dict[tuple[str, int], KeyImageMarker | None] = {}
        self._store: SessionStore | None = None
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        if not self.cipher.encrypting:
            level = logging.WARNING if settings.environment.value == "production" else logging.INFO
            log.log(level, "smart.token_key is not set: SMART access and refresh tokens are stored unencrypted in "
                    "the service database (server-side only; never sent to the browser).")

    # --- plumbing ----------------------------------------------------------------------------------
    @property
    def store(self) -> SessionStore:
        if self._store is None:
            db = getattr(self.parent.state, "db", None)
            if db is None:
                raise RuntimeError("the service database is not open (the application lifespan has not run)")
            self._store = SessionStore(db, ttl_s=self.smart.session_ttl_s, cipher=self.cipher)
        return self._store

    def dicom_source(self) -> Any:
        if self._dicom_source is not None:
            return self._dicom_source
        getter = getattr(self.assessor, "dicom_source", None)
        return getter() if callable(getter) else None

    def allowed_issuers(self) -> set[str]:
        allowed = {i.rstrip("/") for i in self.smart.allowed_issuers}
        if not allowed and self.settings.fhir.base_url is not None:
            allowed.add(str(self.settings.fhir.base_url).rstrip("/"))
        return allowed

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
            return lock

    def forget(self, id_hash: str) -> None:
        """Drop the per-session locks and markers of an ended session."""
        with self._locks_guard:
            self._locks.pop(id_hash, None)
            self._locks.pop("data:" + id_hash, None)
        for key in [k for k in self._markers if k[0].startswith(id_hash)]:
            self._markers.pop(key, None)

    def audit(self, *, actor: str, action: str, entity: str, outcome: str = "success",
              detail: dict[str, Any] | None = None) -> None:
        try:
            db = self.parent.state.db
            with db.session() as s:
                record_audit(s, actor=actor, action=action, entity=entity, outcome=outcome, detail=detail)
        except Exception:  # auditing must not break the page; the failure is logged
            log.exception("could not record audit event %s", action)

    # --- sessions and tokens -------------------------------------------------------------------------
    def cookie_value(self, request: Request) -> str | None:
        return request.cookies.get(self.cookies.name)

    def require_session(self, request: Request) -> SmartSession:
        sess = self.store.get(self.cookie_value(request))
        if sess is None or sess.phase is not SessionPhase.ACTIVE:
            raise AppError(ErrorCode.NO_SESSION, "this browser has no signed-in session of the app")
        if not sess.patient_id:
            raise AppError(ErrorCode.NO_PATIENT_CONTEXT, "the EHR did not say which patient the launch is for")
        return sess

    def fresh(self, sess: SmartSession) -> SmartSession:
        """The session with an access token valid for at least ``refresh_margin_s``, refreshing if needed."""
        margin = self.smart.refresh_margin_s
        if not sess.token_expires_within(margin):
            return sess
        with self._lock(sess.id_hash):
            cur = self.store.reload(sess.id_hash)
            if cur is None:
                raise AppError(ErrorCode.NO_SESSION, "the session ended")
            if not cur.token_expires_within(margin):
                return cur  # another request refreshed it meanwhile
            still_valid = not cur.token_expires_within(0)
            if cur.refresh_token is None:
                if still_valid:
                    return cur
                raise AppError(ErrorCode.TOKEN_EXPIRED,
                               "the access token expired and the EHR issued no refresh token for this launch")
            try:
                tr = self.oauth.refresh(cur.token_endpoint, refresh_token=cur.refresh_token,
                                        client_id=cur.client_id, requested_scope=cur.granted_scope or "")
            except AppError as exc:
                again = self.store.reload(sess.id_hash)
                if again is not None and not again.token_expires_within(0):
                    return again
                raise AppError(ErrorCode.TOKEN_EXPIRED, f"the token could not be refreshed: {exc.detail}") from None
            updated = self.store.update_tokens(
                cur.id_hash, access_token=tr.access_token, refresh_token=tr.refresh_token,
                token_expires_at=tr.expires_at,
                granted_scope=tr.scope if tr.scope_echoed else (cur.granted_scope or tr.scope))
            if updated is None:
                raise AppError(ErrorCode.NO_SESSION, "the session ended")
            return updated

    def token_provider(self, sess: SmartSession) -> Callable[[], str]:
        def provide() -> str:
            cur = self.store.reload(sess.id_hash)
            if cur is None:
                raise AppError(ErrorCode.NO_SESSION, "the session ended")
            cur = self.fresh(cur)
            if not cur.access_token:
                raise AppError(ErrorCode.TOKEN_EXPIRED, "no access token")
            return cur.access_token
        return provide

    def fhir_client(self, sess: SmartSession) -> SmartFhirClient:
        return SmartFhirClient(sess.iss, self.token_provider(sess), timeout_s=self.settings.fhir.timeout_s,
                               retries=self.settings.fhir.retries, backoff_s=self.settings.fhir.backoff_s)

    # --- data --------------------------------------------------------------------------------------
    def data(self, sess: SmartSession) -> AssessedPatient:
        hit = self.cache.get(sess.id_hash)
        if hit is not None:
            return hit
        with self._lock("data:" + sess.id_hash):
            hit = self.cache.get(sess.id_hash)
            if hit is not None:
                return hit
            assert sess.patient_id is not None
            req = AssessRequest(fhir_base=sess.iss, patient_id=sess.patient_id,
                                token_provider=self.token_provider(sess), as_of=datetime.now(UTC).date(),
                                deadline=Deadline(self.smart.page_budget_s))
            header: PatientHeader | None = None
            header_error: str | None = None
            try:
                header = self.assessor.header(req)
            except TokenRejected:
                raise AppError(ErrorCode.TOKEN_EXPIRED, "the EHR's FHIR server rejected the access token") from None
            except PermissionDenied:
                header_error = "The EHR did not allow reading the patient's demographics."
            except NotFound:
                raise AppError(ErrorCode.NO_PATIENT_CONTEXT,
                               "the patient named by the launch does not exist on the FHIR server") from None
            except UpstreamUnavailable:
                raise AppError(ErrorCode.FHIR_UNAVAILABLE, "the patient's record could not be read") from None
            except UpstreamRejected as exc:
                raise AppError(ErrorCode.FHIR_REJECTED, str(exc)) from None
            try:
                snapshot, assessment = self.assessor.assess(req)
            except TokenRejected:
                raise AppError(ErrorCode.TOKEN_EXPIRED, "the EHR's FHIR server rejected the access token") from None
            result = AssessedPatient(snapshot=snapshot, assessment=assessment, computed_at=datetime.now(UTC),
                                     header=header, header_error=header_error)
            self.cache.put(sess.id_hash, result)
            return result

    def markers(self, sess: SmartSession, data: AssessedPatient) -> dict[int, KeyImageMarker]:
        """Where each nodule sits on its key image (from the slice's WADO-RS metadata; cached per session)."""
        source = self.dicom_source()
        out: dict[int, KeyImageMarker] = {}
        for number, track in enumerate(data.snapshot.nodule_tracks, start=1):
            key = (sess.id_hash + data.assessment.assessment_id, number)
            if key not in self._markers:
                obs = views.key_image_observation(track)
                marker = None
                if source is not None and obs is not None and obs.position is not None:
                    try:
                        meta = source.retrieve_instance_metadata(
                            obs.study_instance_uid, obs.series_instance_uid, obs.slice_sop_instance_uid,
                            deadline=Deadline(self.settings.dicomweb.timeout_s))
                        marker = marker_for(obs, meta)
                    except (UpstreamUnavailable, UpstreamRejected, NotFound) as exc:
                        log.info("no key-image marker for nodule %d: %s", number, exc)
                self._markers[key] = marker
                if len(self._markers) > 4096:
                    self._markers.clear()
            found = self._markers[key]
            if found is not None:
                out[number] = found
        return out

    # --- rendering ---------------------------------------------------------------------------------
    def base_path(self, request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/") or MOUNT_PATH

    def render(self, request: Request, template: str, *, status_code: int = 200, sess: SmartSession | None = None,
               data: AssessedPatient | None = None, **ctx: Any) -> HTMLResponse:
        show_banner = sess is not None and sess.need_patient_banner is not False
        context = {
            "request": request, "base": self.base_path(request), "version": __version__,
            "synthetic": self.settings.synthetic_data, "nav": sess is not None,
            "csrf_token": sess.csrf_token if sess else "",
            "patient": data.header if (data is not None and show_banner) else None,
            "patient_error": data.header_error if (data is not None and show_banner) else None,
            "title": ctx.pop("title", "Lung cancer risk"),
        }
        context.update(ctx)
        return self.templates.TemplateResponse(request, template, context, status_code=status_code)

    def error_page(self, request: Request, exc: AppError) -> HTMLResponse:
        spec = exc.code.spec
        detail = exc.detail[:1].upper() + exc.detail[1:] if exc.detail else ""
        if detail and not detail.endswith("."):
            detail += "."
        return self.render(request, "error.html", status_code=spec.status, title=spec.title, heading=spec.title,
                           detail=detail, hint=spec.hint, code=exc.code.value, status=spec.status)

    def check_post(self, request: Request, sess: SmartSession, csrf_token: str | None) -> None:
        if not same_origin(request.headers.get("origin"), self.public_base):
            raise AppError(ErrorCode.CSRF_FAILED, "the form was posted from another site")
        if not csrf_valid(sess.csrf_token, csrf_token):
            raise AppError(ErrorCode.CSRF_FAILED, "the form's CSRF token is missing or wrong")


def _app_error_from(exc: Exception) -> AppError:
    if isinstance(exc, AppError):
        return exc
    if isinstance(exc, TokenRejected):
        return AppError(ErrorCode.TOKEN_EXPIRED, "the EHR's FHIR server rejected the access token")
    if isinstance(exc, PermissionDenied):
        return AppError(ErrorCode.SCOPE_DENIED, str(exc))
    if isinstance(exc, UpstreamUnavailable):
        return AppError(ErrorCode.FHIR_UNAVAILABLE, str(exc))
    if isinstance(exc, UpstreamRejected):
        return AppError(ErrorCode.FHIR_REJECTED, str(exc))
    if isinstance(exc, NotFound):
        return AppError(ErrorCode.NOT_FOUND, str(exc))
    raise exc


def create_smart_app(settings: Settings, *, parent: FastAPI, assessor: Assessor | None = None,
                     dicom_source: Any = None) -> FastAPI:
    """The SMART app as an ASGI sub-application (mount it at ``/app``)."""
    sa = SmartApp(settings, parent=parent, assessor=assessor, dicom_source=dicom_source)
    app = FastAPI(title="Lung cancer risk SMART app", docs_url=None, redoc_url=None, openapi_url=None,
                  default_response_class=HTMLResponse)
    app.state.smart = sa
    app.add_middleware(SecurityHeadersMiddleware, headers=security_headers(settings.smart.frame_ancestors))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> HTMLResponse:
        log.info("SMART app error %s: %s", exc.code.value, exc.detail)
        return sa.error_page(request, exc)

    @app.exception_handler(RiskServiceError)
    async def _service_error(request: Request, exc: RiskServiceError) -> HTMLResponse:
        try:
            mapped = _app_error_from(exc)
        except RiskServiceError:
            log.exception("unexpected service error in the SMART app")
            mapped = AppError(ErrorCode.INTERNAL)
        return sa.error_page(request, mapped)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> HTMLResponse:
        log.exception("unexpected error in the SMART app")  # the page shows no traceback, the log has it
        return sa.error_page(request, AppError(ErrorCode.INTERNAL))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        if exc.status_code == 404:
            return sa.error_page(request, AppError(ErrorCode.NOT_FOUND, "there is no such page"))
        return sa.render(request, "error.html", status_code=exc.status_code, title="Error", heading="Error",
                         detail=str(exc.detail), hint="Go back to the overview.", code=f"http-{exc.status_code}",
                         status=exc.status_code)

    # --- launch ----------------------------------------------------------------------------------
    @app.get("/launch", name="launch")
    def launch(request: Request, iss: str | None = None, launch: str | None = None) -> Response:
        if launch is not None and not launch.strip():
            raise AppError(ErrorCode.MISSING_LAUNCH_PARAMETER, 'the "launch" parameter is empty')
        if launch is not None and not iss:
            raise AppError(ErrorCode.MISSING_LAUNCH_PARAMETER, 'an EHR launch needs the "iss" parameter')
        mode = LaunchMode.EHR if launch else LaunchMode.STANDALONE
        if iss is None:
            default = settings.smart.standalone_iss or (str(settings.fhir.base_url) if settings.fhir.base_url
                                                        else None)
            if default is None:
                raise AppError(ErrorCode.MISSING_LAUNCH_PARAMETER,
                               'no "iss" was given and no default FHIR server is configured')
            iss = default
        iss = iss.rstrip("/")
        if iss not in sa.allowed_issuers():
            raise AppError(ErrorCode.ISSUER_NOT_ALLOWED, f"{iss} is not an allowed issuer")
        config = sa.discovery.get(iss)
        scope = ehr_scopes(settings.smart.scopes) if mode is LaunchMode.EHR else standalone_scopes(
            settings.smart.scopes)
        pkce = new_pkce()
        state = new_state()
        sa.store.purge_expired()  # one indexed DELETE: abandoned launches and ended sessions go
        cookie, _ = sa.store.create_pending(
            launch_mode=mode, iss=iss, client_id=settings.smart.client_id, redirect_uri=sa.redirect_uri,
            token_endpoint=config.token_endpoint, jwks_uri=config.jwks_uri, auth_issuer=config.issuer,
            requested_scope=scope, state=state, code_verifier=pkce.code_verifier)
        url = authorize_url(config, client_id=settings.smart.client_id, redirect_uri=sa.redirect_uri, scope=scope,
                            state=state, code_challenge=pkce.code_challenge, aud=iss, launch=launch)
        resp = RedirectResponse(url, status_code=302)
        resp.set_cookie(value=cookie, **sa.cookies.set_cookie_kwargs())  # type: ignore[arg-type]
        return resp

    @app.get("/callback", name="callback")
    def callback(request: Request, code: str | None = None, state: str | None = None, error: str | None = None,
                 error_description: str | None = None) -> Response:
        cookie = sa.cookie_value(request)
        pending = sa.store.get(cookie)
        if pending is None or pending.phase is not SessionPhase.AUTHORIZING or cookie is None:
            raise AppError(ErrorCode.STATE_MISMATCH,
                           "no sign-in was started from this browser (the session cookie is missing or expired)")
        if not states_match(pending.state, state):
            sa.store.delete(pending.id_hash)
            sa.audit(actor="smart-app", action="smart.launch", entity=pending.iss, outcome="failure",
                     detail={"error": ErrorCode.STATE_MISMATCH.value})
            raise AppError(ErrorCode.STATE_MISMATCH, "the state parameter does not match this browser's session")
        if error is not None:
            sa.store.delete(pending.id_hash)
            text = clean_text(error, 60) + (f": {clean_text(error_description)}" if error_description else "")
            sa.audit(actor="smart-app", action="smart.launch", entity=pending.iss, outcome="failure",
                     detail={"error": clean_text(error, 60)})
            if error in ("access_denied", "invalid_scope", "unauthorized_client", "consent_required"):
                raise AppError(ErrorCode.AUTHORIZATION_DENIED, f"the authorization server said: {text}")
            raise AppError(ErrorCode.AUTHORIZATION_FAILED, f"the authorization server said: {text}")
        if not code:
            raise AppError(ErrorCode.AUTHORIZATION_FAILED, "the authorization server returned no code")
        if not pending.code_verifier:
            sa.store.delete(pending.id_hash)
            raise AppError(ErrorCode.MISSING_PKCE_VERIFIER,
                           "the session holds no PKCE code_verifier for this sign-in, so the code is not exchanged")
        try:
            tokens = sa.oauth.exchange_code(pending.token_endpoint, code=code, code_verifier=pending.code_verifier,
                                            redirect_uri=pending.redirect_uri, client_id=pending.client_id,
                                            requested_scope=pending.requested_scope)
        except AppError as exc:
            sa.store.delete(pending.id_hash)
            sa.audit(actor="smart-app", action="smart.launch", entity=pending.iss, outcome="failure",
                     detail={"error": exc.code.value})
            raise
        fhir_user = _fhir_user(sa, pending, tokens)
        if not tokens.patient:
            sa.store.delete(pending.id_hash)
            raise AppError(ErrorCode.NO_PATIENT_CONTEXT, "the token response names no patient")
        ctx: dict[str, Any] = {"fhirContext": list(tokens.fhir_context)}
        for key in ("intent", "smart_style_url", "tenant"):
            if getattr(tokens, key):
                ctx[key] = getattr(tokens, key)
        new_cookie, sess = sa.store.activate(
            cookie, access_token=tokens.access_token, refresh_token=tokens.refresh_token,
            token_expires_at=tokens.expires_at, granted_scope=tokens.scope, patient_id=tokens.patient,
            encounter_id=tokens.encounter, fhir_user=fhir_user, need_patient_banner=tokens.need_patient_banner,
            app_context=tokens.app_context, launch_context=ctx)
        sa.audit(actor=fhir_user or "smart-app", action="smart.launch", entity=f"Patient/{tokens.patient}",
                 detail={"mode": sess.launch_mode.value, "scope": tokens.scope})
        target = sa.base_path(request) + "/"
        app_ctx = parse_app_context(tokens.app_context)
        if app_ctx is not None and (app_ctx.tracking_uid or app_ctx.view == "timeline"):
            target = sa.base_path(request) + "/timeline"
        elif app_ctx is not None and app_ctx.view in ("explanation", "actions"):
            target = sa.base_path(request) + "/" + app_ctx.view
        resp = RedirectResponse(target, status_code=303)
        resp.set_cookie(value=new_cookie, **sa.cookies.set_cookie_kwargs())  # type: ignore[arg-type]
        return resp

    # --- pages -------------------------------------------------------------------------------------
    @app.get("/", name="overview")
    def overview(request: Request) -> Response:
        sess = sa.store.get(sa.cookie_value(request))
        if sess is None or sess.phase is not SessionPhase.ACTIVE:
            return sa.render(request, "landing.html", title="Lung cancer risk",
                             standalone_available=bool(sa.allowed_issuers()))
        sess = sa.fresh(sa.require_session(request))
        data = sa.data(sess)
        ov = views.overview_view(data.snapshot, data.assessment)
        note = None
        app_ctx = parse_app_context(sess.app_context)
        if app_ctx is not None and (app_ctx.assessment_id or app_ctx.risk_assessment):
            named = app_ctx.risk_assessment or app_ctx.assessment_id
            note = f"Opened from a CDS card about {named}."
            if app_ctx.assessment_id and app_ctx.assessment_id != data.assessment.assessment_id:
                note += " The record may have changed since the card was shown; this page shows the current data."
        return sa.render(request, "overview.html", sess=sess, data=data, title="Overview", active="overview",
                         ov=ov, context_note=note)

    @app.get("/timeline", name="timeline")
    def timeline(request: Request) -> Response:
        sess = sa.fresh(sa.require_session(request))
        data = sa.data(sess)
        app_ctx = parse_app_context(sess.app_context)
        tracks = views.timeline_view(data.snapshot, data.assessment, app_ctx.tracking_uid if app_ctx else None)
        outage = any(s.state.value in ("unavailable", "partial") for s in data.snapshot.source_status
                     if "dicom" in s.system.lower() or "pacs" in s.system.lower())
        return sa.render(request, "timeline.html", sess=sess, data=data, title="Nodule timeline", active="timeline",
                         tracks=tracks, imaging_outage=outage, markers=sa.markers(sess, data))

    @app.get("/explanation", name="explanation")
    def explanation(request: Request) -> Response:
        sess = sa.fresh(sa.require_session(request))
        data = sa.data(sess)
        ex = views.explanation_view(data.snapshot, data.assessment)
        return sa.render(request, "explanation.html", sess=sess, data=data, title="Explanation",
                         active="explanation", ex=ex)

    def _actions_page(request: Request, sess: SmartSession, data: AssessedPatient,
                      result: ActionResult | None = None, status_code: int = 200,
                      reason_refs: tuple[str, ...] = ()) -> HTMLResponse:
        scopes = ScopeSet.parse(sess.granted_scope)
        draft = draft_service_request(data.snapshot, data.assessment, requester=sess.fhir_user,
                                      encounter_id=sess.encounter_id, reason_references=reason_refs)
        risks = data.assessment.risks
        ra_summary = ", ".join(f"{r.model} {views.format_pct(r.probability)}" for r in risks) if risks else None
        return sa.render(request, "actions.html", status_code=status_code, sess=sess, data=data, title="Actions",
                         active="actions", result=result, can_write_ra=scopes.can_create("RiskAssessment"),
                         can_write_sr=scopes.can_create("ServiceRequest"), ra_summary=ra_summary,
                         assessment_id=data.assessment.assessment_id,
                         sr_preview=json.dumps(draft.resource, indent=2) if draft else None,
                         sr_summary=draft.summary if draft else None,
                         not_orderable=[r for r in data.assessment.recommendations if r.kind not in ORDERABLE])

    @app.get("/actions", name="actions")
    def actions(request: Request) -> Response:
        sess = sa.fresh(sa.require_session(request))
        return _actions_page(request, sess, sa.data(sess))

    def _current_for_post(request: Request, csrf_token: str | None, assessment_id: str | None
                          ) -> tuple[SmartSession, AssessedPatient]:
        sess = sa.require_session(request)
        sa.check_post(request, sess, csrf_token)
        sess = sa.fresh(sess)
        data = sa.data(sess)
        if assessment_id is not None and assessment_id != data.assessment.assessment_id:
            raise AppError(ErrorCode.NOT_FOUND, "the assessment on the page is no longer current: review the "
                           "overview again before saving")
        return sess, data

    @app.post("/actions/risk-assessment", name="save_risk_assessment")
    def save_risk_assessment(request: Request, csrf_token: str | None = Form(default=None, alias=CSRF_FIELD),
                             assessment_id: str | None = Form(default=None)) -> Response:
        sess, data = _current_for_post(request, csrf_token, assessment_id)
        if not ScopeSet.parse(sess.granted_scope).can_create("RiskAssessment"):
            sa.audit(actor=sess.fhir_user or "smart-app", action="smart.save_risk_assessment",
                     entity=f"Patient/{sess.patient_id}", outcome="denied")
            raise AppError(ErrorCode.SCOPE_DENIED, "the launch was not granted patient/RiskAssessment.c")
        resources = risk_assessment_resources(data.assessment)
        if not resources:
            return _actions_page(request, sess, data, ActionResult("Nothing to save.", "No model produced an "
                                                                   "estimate for this patient."))
        client = sa.fhir_client(sess)
        created: list[str] = []
        statuses: set[str] = set()
        can_read = ScopeSet.parse(sess.granted_scope).can_read("RiskAssessment")
        try:
            for res in resources:
                made = client.create(res)
                created.append(made.reference)
                # read it back when the grant allows it; otherwise trust the server's create response
                stored = client.read(*made.reference.split("/", 1)) if can_read else (made.resource or {})
                statuses.add(str(stored.get("status", "?")))
        except Exception as exc:
            sa.audit(actor=sess.fhir_user or "smart-app", action="smart.save_risk_assessment",
                     entity=f"Patient/{sess.patient_id}", outcome="failure", detail={"created": created})
            raise _app_error_from(exc) from None
        finally:
            client.close()
        sa.audit(actor=sess.fhir_user or "smart-app", action="smart.save_risk_assessment",
                 entity=f"Patient/{sess.patient_id}", detail={"created": created})
        verb = "created and read back from" if can_read else "created on"
        result = ActionResult("Saved to the EHR.", f"{len(created)} RiskAssessment resource(s) {verb} the FHIR server.",
                              reference=", ".join(created), status="/".join(sorted(statuses)))
        return _actions_page(request, sess, data, result, reason_refs=tuple(created))

    @app.post("/actions/service-request", name="save_service_request")
    def save_service_request(request: Request, csrf_token: str | None = Form(default=None, alias=CSRF_FIELD),
                             assessment_id: str | None = Form(default=None)) -> Response:
        sess, data = _current_for_post(request, csrf_token, assessment_id)
        if not ScopeSet.parse(sess.granted_scope).can_create("ServiceRequest"):
            raise AppError(ErrorCode.SCOPE_DENIED, "the launch was not granted patient/ServiceRequest.c")
        draft = draft_service_request(data.snapshot, data.assessment, requester=sess.fhir_user,
                                      encounter_id=sess.encounter_id)
        if draft is None:
            return _actions_page(request, sess, data, ActionResult("Nothing to order.", "No follow-up imaging is "
                                                                   "recommended."))
        client = sa.fhir_client(sess)
        try:
            created = client.create(draft.resource)
            if ScopeSet.parse(sess.granted_scope).can_read("ServiceRequest"):
                status = client.read(*created.reference.split("/", 1)).get("status")
            else:  # the default grant creates ServiceRequests without reading them: use the create response
                status = (created.resource or {}).get("status")
        except Exception as exc:
            raise _app_error_from(exc) from None
        finally:
            client.close()
        sa.audit(actor=sess.fhir_user or "smart-app", action="smart.draft_service_request",
                 entity=f"Patient/{sess.patient_id}", detail={"created": created.reference})
        return _actions_page(request, sess, data, ActionResult(
            "Draft order saved.", "Review and sign it in the EHR's ordering screen.", reference=created.reference,
            status=status))

    @app.post("/refresh", name="refresh")
    def refresh(request: Request, csrf_token: str | None = Form(default=None, alias=CSRF_FIELD)) -> Response:
        sess = sa.require_session(request)
        sa.check_post(request, sess, csrf_token)
        sa.cache.drop(sess.id_hash)
        return RedirectResponse(sa.base_path(request) + "/", status_code=303)

    @app.post("/logout", name="logout")
    def logout(request: Request, csrf_token: str | None = Form(default=None, alias=CSRF_FIELD)) -> Response:
        sess = sa.store.get(sa.cookie_value(request))
        if sess is not None:
            sa.check_post(request, sess, csrf_token)
            sa.store.delete(sess.id_hash)
            sa.cache.drop(sess.id_hash)
            sa.forget(sess.id_hash)
            sa.audit(actor=sess.fhir_user or "smart-app", action="smart.logout",
                     entity=f"Patient/{sess.patient_id}" if sess.patient_id else sess.iss)
        resp = sa.render(request, "landing.html", title="Signed out", message="You are signed out of the app. "
                         "The tokens it held were discarded.", standalone_available=bool(sa.allowed_issuers()))
        resp.delete_cookie(**sa.cookies.delete_cookie_kwargs())  # type: ignore[arg-type]
        return resp

    # --- proxied content ---------------------------------------------------------------------------
    @app.get("/key-image/{number}.png", name="key_image")
    def key_image(request: Request, number: int) -> Response:
        sess = sa.fresh(sa.require_session(request))
        data = sa.data(sess)
        track = views.track_by_number(data.snapshot, number)
        obs = views.key_image_observation(track) if track is not None else None
        if obs is None or obs.slice_sop_instance_uid is None or obs.series_instance_uid is None:
            raise AppError(ErrorCode.NOT_FOUND, "this nodule has no key image")
        source = sa.dicom_source()
        if source is None:
            return _image_unavailable("No PACS is configured.", 503)
        deadline = Deadline(settings.dicomweb.timeout_s)
        try:
            try:
                png = source.retrieve_rendered_frame(obs.study_instance_uid, obs.series_instance_uid,
                                                     obs.slice_sop_instance_uid, window=KEY_IMAGE_WINDOW,
                                                     deadline=deadline)
            except UpstreamRejected as exc:
                # Some PACS refuse the window parameter (Orthanc 1.10 reads an encoded "," as one argument):
                # fall back to the image's own window rather than showing nothing.
                log.info("PACS refused the windowed rendering (%s); retrying with the image's own window", exc)
                png = source.retrieve_rendered_frame(obs.study_instance_uid, obs.series_instance_uid,
                                                     obs.slice_sop_instance_uid, deadline=deadline)
        except (UpstreamUnavailable, UpstreamRejected, NotFound) as exc:
            log.warning("key image of nodule %d could not be retrieved: %s", number, exc)
            sa.audit(actor=sess.fhir_user or "smart-app", action="smart.key_image",
                     entity=f"urn:dicom:uid:{obs.slice_sop_instance_uid}", outcome="failure",
                     detail={"error": type(exc).__name__})
            return _image_unavailable("The PACS did not return the image.", 502)
        sa.audit(actor=sess.fhir_user or "smart-app", action="smart.key_image",
                 entity=f"urn:dicom:uid:{obs.slice_sop_instance_uid}")
        return Response(png, media_type="image/png")

    @app.get("/source/{number}", name="source")
    def source(request: Request, number: int) -> Response:
        sess = sa.fresh(sa.require_session(request))
        data = sa.data(sess)
        ref = views.source_by_number(data.assessment, number)
        if ref is None or ref.kind.value != "fhir" or "/" not in ref.reference or "://" in ref.reference:
            raise AppError(ErrorCode.NOT_FOUND, "no such source record")
        client = sa.fhir_client(sess)
        try:
            body = client.read(*ref.reference.split("/", 1))
        except Exception as exc:
            raise _app_error_from(exc) from None
        finally:
            client.close()
        return sa.render(request, "source.html", sess=sess, data=data, title=ref.reference,
                         reference=ref.reference, body=json.dumps(body, indent=2))

    return app


def _image_unavailable(message: str, status: int) -> Response:
    from html import escape

    svg = ('<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256" viewBox="0 0 256 256">'
           '<rect width="256" height="256" fill="#f6f7f9"/><text x="128" y="128" text-anchor="middle" '
           f'font-family="sans-serif" font-size="13" fill="#4a4a4a">{escape(message)}</text></svg>')
    return Response(svg, status_code=status, media_type="image/svg+xml")


def _fhir_user(sa: SmartApp, pending: SmartSession, tokens: TokenResponse) -> str | None:
    """The user's FHIR reference from a verified id_token (relative or absolute ``fhirUser``), if any."""
    if tokens.id_token is None:
        return None
    claims: dict[str, Any]
    if sa.smart.verify_id_token and pending.jwks_uri:
        claims = verify_id_token(tokens.id_token, jwks_uri=pending.jwks_uri, issuer=pending.auth_issuer,
                                 client_id=pending.client_id, timeout_s=sa.smart.http_timeout_s)
    else:
        import jwt

        claims = jwt.decode(tokens.id_token, options={"verify_signature": False})
    raw = claims.get("fhirUser")
    if not isinstance(raw, str):
        return None
    try:
        user = parse_fhir_user(raw)
    except ValueError as exc:
        log.warning("ignoring fhirUser claim: %s", exc)
        return None
    if not user.same_server(pending.iss):
        log.info("fhirUser %s lives on another FHIR server than %s", user.reference, pending.iss)
    return user.reference


def mount(app: FastAPI, settings: Settings, **kwargs: Any) -> None:
    """Mount the SMART app at ``/app`` on the service (called from ``risk.app._mount_features``)."""
    app.mount(MOUNT_PATH, create_smart_app(settings, parent=app, **kwargs), name="smart_app")


__all__ = ["MOUNT_PATH", "SmartApp", "create_smart_app", "mount"]
