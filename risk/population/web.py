"""The coordinator pages under ``/worklist``: sign-in, dashboard, queues (filters, paging, CSV), items, registry.

Server-rendered (Jinja), no script. Every page needs a coordinator session (risk.population.access) and shows only
the session's sites; every view, export and action is written to the audit trail (risk.store.audit) with the user.
Forms are POSTed with the session's CSRF token and an Origin check. Bad query values give a 422 page naming the
field; an unknown or out-of-scope item a 404.

Sign-in is a SMART standalone launch as a practitioner, reusing smart_app's launch helpers (discovery, PKCE, the
authorization request, the code exchange and id_token verification). Redirect URI: ``{public_base_url}/worklist/
callback`` (register it with the authorization server). ``login_hint`` is passed through (the local stack's AS uses
it to pick the practitioner).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from risk.config import Settings
from risk.errors import InvalidInput, NotFound
from risk.population import dashboard
from risk.population.access import Coordinator, SessionStore, program_of
from risk.population.actions import item_events, record_action
from risk.population.closed_loop import Action
from risk.population.explain import eligibility_reasons, plco_reason
from risk.population.registry import RegistryRange, csv_text, registry_rows
from risk.population.worklist import PROGRAMS, Queue, WorklistFilter, csv_lines, page
from risk.store.audit import record_audit
from risk.store.db import Database
from risk.store.population import PopulationNodule, PopulationPatient, PopulationRun, WorklistItem

log = logging.getLogger(__name__)

MOUNT_PATH: Final = "/worklist"
HERE = Path(__file__).resolve().parent
COOKIE_SECURE: Final = "__Host-lungrisk_worklist"
COOKIE_PLAIN: Final = "lungrisk_worklist"
SCOPE: Final = "openid fhirUser user/Patient.rs"
CSP: Final = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
              "frame-ancestors 'none'")


class _Unauthorised(Exception):
    pass


class Pages:
    def __init__(self, settings: Settings, parent: FastAPI) -> None:
        self.settings = settings
        self.parent = parent
        self.public_base = str(settings.public_base_url).rstrip("/")
        self.redirect_uri = f"{self.public_base}{MOUNT_PATH}/callback"
        self.secure = settings.smart.secure_cookies
        self.cookie = COOKIE_SECURE if self.secure else COOKIE_PLAIN
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self._discovery: Any = None
        self._oauth: Any = None

    @property
    def db(self) -> Database:
        db = getattr(self.parent.state, "db", None)
        if db is None:
            raise RuntimeError("the store is not open (the application's lifespan has not started)")
        assert isinstance(db, Database)
        return db

    @property
    def sessions(self) -> SessionStore:
        return SessionStore(self.db, self.settings.population.session_ttl_s)

    def today(self) -> date:
        return datetime.now(UTC).date()

    def coordinator(self, request: Request) -> Coordinator:
        who = self.sessions.active(request.cookies.get(self.cookie))
        if who is None:
            raise _Unauthorised()
        return who

    def audit(self, who: Coordinator | str, action: str, entity: str, detail: dict[str, Any] | None = None,
              outcome: str = "success") -> None:
        actor = who.user if isinstance(who, Coordinator) else who
        with self.db.session() as s:
            record_audit(s, actor=actor, action=action, entity=entity, outcome=outcome, detail=detail)

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("who", None)
        context.update(base=MOUNT_PATH, synthetic=self.settings.synthetic_data, queues=list(Queue))
        resp = self.templates.TemplateResponse(request, template, context, status_code=status_code)
        return resp

    def error(self, request: Request, status: int, title: str, detail: str, who: Coordinator | None = None
              ) -> HTMLResponse:
        return self.render(request, "worklist/error.html", status_code=status, title=title, detail=detail, who=who)

    def check_post(self, request: Request, who: Coordinator, token: str | None) -> None:
        from risk.smart.page_security import csrf_valid, same_origin

        if not same_origin(request.headers.get("origin"), self.public_base) or not csrf_valid(who.csrf_token, token):
            raise InvalidInput("csrf_token", "the form is stale or came from another site; reload the page")

    # --- SMART sign-in (smart_app's helpers) ----------------------------------------------------------------
    def discovery(self) -> Any:
        if self._discovery is None:
            from risk.smart.discovery import Discovery

            self._discovery = Discovery(timeout_s=self.settings.smart.http_timeout_s)
        return self._discovery

    def oauth(self) -> Any:
        if self._oauth is None:
            from risk.smart.launch import OAuthClient

            self._oauth = OAuthClient(timeout_s=self.settings.smart.http_timeout_s)
        return self._oauth


def _filter(who: Coordinator, q: Mapping[str, str | None]) -> WorklistFilter:
    def d(name: str) -> date | None:
        value = q.get(name)
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise InvalidInput(name, f"must be a date YYYY-MM-DD, got {value!r}") from None

    return WorklistFilter(sites=who.sites, site=q.get("site") or None, category=q.get("category") or None,
                          program=q.get("program") or None, due_from=d("due_from"), due_to=d("due_to"))


def _int(name: str, value: str | None, default: int) -> int:
    if value in (None, ""):
        return default
    try:
        return int(value or default)
    except ValueError:
        raise InvalidInput(name, f"must be a whole number, got {value!r}") from None


def _queue(name: str) -> Queue:
    try:
        return Queue(name)
    except ValueError:
        raise NotFound(f"queue {name}") from None


def create_pages(settings: Settings, parent: FastAPI) -> FastAPI:
    pages = Pages(settings, parent)
    app = FastAPI(title="Coordinator worklist", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(_Unauthorised)
    async def _login_first(request: Request, _exc: _Unauthorised) -> Response:
        return pages.render(request, "worklist/login.html", status_code=401, title="Sign in")

    @app.exception_handler(InvalidInput)
    async def _invalid(request: Request, exc: InvalidInput) -> Response:
        return pages.error(request, 422, "Invalid input", f"{exc.field}: {exc.message}")

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> Response:
        return pages.error(request, 404, "Not found", f"{exc}")

    # --- sign-in ------------------------------------------------------------------------------------------------
    @app.get("/login", name="worklist_login")
    def login(request: Request, login_hint: str | None = None) -> Response:
        from risk.smart.launch import authorize_url
        from risk.smart.pkce import new_pkce, new_state

        iss = settings.smart.standalone_iss or (str(settings.fhir.base_url) if settings.fhir.base_url else None)
        if not iss:
            return pages.error(request, 503, "Sign-in unavailable", "no FHIR server / authorization server is "
                               "configured (fhir.base_url or smart.standalone_iss)")
        iss = iss.rstrip("/")
        try:
            config = pages.discovery().get(iss)
        except Exception as exc:  # discovery failures are an upstream outage, shown as such
            return pages.error(request, 502, "Sign-in unavailable", f"the EHR's SMART configuration could not be "
                               f"read ({type(exc).__name__})")
        pkce, state = new_pkce(), new_state()
        cookie = pages.sessions.create_pending(state=state, code_verifier=pkce.code_verifier,
                                               token_endpoint=config.token_endpoint, jwks_uri=config.jwks_uri,
                                               auth_issuer=config.issuer, iss=iss)
        url = authorize_url(config, client_id=settings.smart.client_id, redirect_uri=pages.redirect_uri, scope=SCOPE,
                            state=state, code_challenge=pkce.code_challenge, aud=iss)
        if login_hint:
            url += "&" + urlencode({"login_hint": login_hint[:128]})
        resp = RedirectResponse(url, status_code=302)
        resp.set_cookie(pages.cookie, cookie, max_age=600, path="/", secure=pages.secure, httponly=True,
                        samesite="lax")
        return resp

    @app.get("/callback", name="worklist_callback")
    def callback(request: Request, code: str | None = None, state: str | None = None, error: str | None = None
                 ) -> Response:
        from risk.smart.launch import clean_text, verify_id_token
        from risk.smart.pkce import states_match

        cookie = request.cookies.get(pages.cookie)
        pending = pages.sessions.pending(cookie)
        if pending is None or cookie is None:
            return pages.error(request, 400, "Sign-in failed", "no sign-in was started from this browser")
        if not states_match(pending.state, state):
            pages.sessions.delete(cookie)
            pages.audit("worklist", "population.login", "worklist", {"error": "state_mismatch"}, outcome="failure")
            return pages.error(request, 400, "Sign-in failed", "the state parameter does not match this browser")
        if error or not code:
            pages.sessions.delete(cookie)
            return pages.error(request, 403, "Sign-in refused", f"the authorization server said: "
                               f"{clean_text(error or 'no code', 60)}")
        try:
            tokens = pages.oauth().exchange_code(pending.token_endpoint or "", code=code,
                                                 code_verifier=pending.code_verifier or "",
                                                 redirect_uri=pages.redirect_uri, client_id=settings.smart.client_id,
                                                 requested_scope=SCOPE)
            user = None
            if tokens.id_token and pending.jwks_uri:
                claims = verify_id_token(tokens.id_token, jwks_uri=pending.jwks_uri, issuer=pending.auth_issuer,
                                         client_id=settings.smart.client_id, timeout_s=settings.smart.http_timeout_s)
                from risk.smart.identity import parse_fhir_user

                raw = claims.get("fhirUser")
                user = parse_fhir_user(raw).reference if isinstance(raw, str) else None
        except Exception as exc:
            pages.sessions.delete(cookie)
            pages.audit("worklist", "population.login", "worklist", {"error": type(exc).__name__},
                        outcome="failure")
            return pages.error(request, 502, "Sign-in failed", f"{clean_text(exc)}")
        program = program_of(settings.population, user)
        if user is None or program is None:
            pages.sessions.delete(cookie)
            pages.audit(user or "unknown", "population.login", "worklist", {"error": "not_a_coordinator"},
                        outcome="failure")
            return pages.error(request, 403, "No access", f"{user or 'this user'} is not a coordinator of any "
                               "screening program")
        new_cookie = pages.sessions.activate(cookie, user=user, program=program)
        pages.audit(user, "population.login", "worklist", {"program": program.name, "sites": list(program.sites)})
        resp = RedirectResponse(f"{MOUNT_PATH}/", status_code=303)
        resp.set_cookie(pages.cookie, new_cookie, max_age=settings.population.session_ttl_s, path="/",
                        secure=pages.secure, httponly=True, samesite="lax")
        return resp

    @app.post("/logout", name="worklist_logout")
    def logout(request: Request, csrf_token: str | None = Form(default=None)) -> Response:
        who = pages.coordinator(request)
        pages.check_post(request, who, csrf_token)
        pages.sessions.delete(request.cookies.get(pages.cookie))
        pages.audit(who, "population.logout", "worklist")
        resp = RedirectResponse(f"{MOUNT_PATH}/", status_code=303)
        resp.delete_cookie(pages.cookie, path="/", secure=pages.secure, httponly=True, samesite="lax")
        return resp

    # --- pages --------------------------------------------------------------------------------------------------
    @app.get("/", name="worklist_dashboard")
    def home(request: Request) -> Response:
        who = pages.coordinator(request)
        today = pages.today()
        with pages.db.session() as s:
            stats = dashboard.site_stats(s, who.sites, today=today,
                                         lost_after_days=settings.population.lost_after_days)
            points = dashboard.trends(s, who.sites)
            last = s.scalar(select(PopulationRun).where(PopulationRun.status == "complete")
                            .order_by(PopulationRun.started_at.desc()).limit(1))
        pages.audit(who, "population.dashboard_view", "worklist/dashboard", {"sites": list(who.sites)})
        return pages.render(request, "worklist/dashboard.html", title="Screening program", who=who, stats=stats,
                            charts=dashboard.trend_charts(points), points=points, last=last, today=today)

    @app.get("/queue/{name}.csv", name="worklist_queue_csv")
    def queue_csv(request: Request, name: str) -> Response:
        who = pages.coordinator(request)
        queue = _queue(name)
        filt = _filter(who, dict(request.query_params))
        today = pages.today()
        pages.audit(who, "population.worklist_export", f"worklist/{queue.value}", {"filters": filt.describe()})
        session_cm = pages.db.session()
        session = session_cm.__enter__()

        def body() -> Any:
            try:
                yield from csv_lines(session, queue, filt, today=today)
            finally:
                session_cm.__exit__(None, None, None)

        filename = f"worklist-{queue.value}-{today.isoformat()}.csv"
        return StreamingResponse(body(), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    @app.get("/queue/{name}", name="worklist_queue")
    def queue(request: Request, name: str) -> Response:
        who = pages.coordinator(request)
        q = dict(request.query_params)
        queue = _queue(name)
        filt = _filter(who, q)
        number = _int("page", q.get("page"), 1)
        today = pages.today()
        with pages.db.session() as s:
            pg = page(s, queue, filt, today=today, page_number=number, page_size=settings.population.page_size)
        pages.audit(who, "population.worklist_view", f"worklist/{queue.value}",
                    {"filters": filt.describe(), "page": number, "rows": len(pg.rows),
                     "patients": [r["patient_id"] for r in pg.rows]})
        query = {k: v for k, v in filt.describe().items()}
        return pages.render(request, "worklist/queue.html", title=queue.label, who=who, queue=queue, pg=pg,
                            filt=filt, query=query, qs=urlencode(query), programs=PROGRAMS, today=today)

    @app.get("/item/{item_id}", name="worklist_item")
    def item(request: Request, item_id: int) -> Response:
        who = pages.coordinator(request)
        today = pages.today()
        with pages.db.session() as s:
            it = s.get(WorklistItem, item_id)
            if it is None or it.site not in who.sites:
                raise NotFound(f"worklist item {item_id}")
            patient = s.get(PopulationPatient, it.patient_id)
            row = {c.name: getattr(patient, c.name) for c in PopulationPatient.__table__.columns} if patient else {}
            nodules = list(s.scalars(select(PopulationNodule).where(PopulationNodule.patient_id == it.patient_id)))
            events = item_events(s, item_id)
            run_as_of = s.scalar(select(PopulationRun.as_of).where(PopulationRun.id == it.last_run)) or today
        reasons = eligibility_reasons(row, run_as_of) if row else []
        plco = plco_reason(row, run_as_of) if row else None
        pages.audit(who, "population.item_view", f"worklist_item/{item_id}", {"patient_id": it.patient_id})
        return pages.render(request, "worklist/item.html", title=f"Item {item_id}", who=who, it=it, patient=patient,
                            reasons=reasons, plco=plco, nodules=nodules, events=events, today=today,
                            actions=[a.value for a in Action])

    @app.post("/item/{item_id}/action", name="worklist_action")
    def action(request: Request, item_id: int, action: str = Form(...), reason: str | None = Form(default=None),
               until: str | None = Form(default=None), csrf_token: str | None = Form(default=None)) -> Response:
        who = pages.coordinator(request)
        pages.check_post(request, who, csrf_token)
        when = None
        if until:
            try:
                when = date.fromisoformat(until)
            except ValueError:
                raise InvalidInput("until", f"must be a date YYYY-MM-DD, got {until!r}") from None
        with pages.db.session() as s:
            record_action(s, item_id, action, actor=who.user, sites=who.sites, today=pages.today(), reason=reason,
                          until=when)
        return RedirectResponse(f"{MOUNT_PATH}/item/{item_id}?done={action}", status_code=303)

    @app.get("/registry.csv", name="worklist_registry")
    def registry(request: Request) -> Response:
        who = pages.coordinator(request)
        q = dict(request.query_params)
        try:
            start = date.fromisoformat(q.get("from") or "")
        except ValueError:
            raise InvalidInput("from", "must be a date YYYY-MM-DD") from None
        try:
            end = date.fromisoformat(q.get("to") or "")
        except ValueError:
            raise InvalidInput("to", "must be a date YYYY-MM-DD") from None
        period = RegistryRange(start, end)
        with pages.db.session() as s:
            rows = list(registry_rows(s, period, who.sites))
        pages.audit(who, "population.registry_export", "registry",
                    {"from": start.isoformat(), "to": end.isoformat(), "rows": len(rows),
                     "invalid_rows": sum(1 for r in rows if not r["valid"])})
        return Response("".join(csv_text(iter(rows))), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="lcsr-{start}-{end}.csv"'})

    @app.get("/runs", name="worklist_runs")
    def runs(request: Request) -> Response:
        who = pages.coordinator(request)
        with pages.db.session() as s:
            rows = list(s.scalars(select(PopulationRun).order_by(PopulationRun.started_at.desc()).limit(50)))
        pages.audit(who, "population.runs_view", "population_run")
        return pages.render(request, "worklist/runs.html", title="Runs", who=who, runs=rows)

    return app


def mount(app: FastAPI, settings: Settings) -> None:
    """Mount the coordinator pages at ``/worklist`` (called from ``risk.app._mount_features``)."""
    app.mount(MOUNT_PATH, create_pages(settings, app), name="worklist")
