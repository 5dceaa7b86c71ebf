"""CORS for the CDS Hooks routes only (browser-based CDS clients), from an explicit origin allowlist.

``settings.cds.cors_origins`` lists the allowed origins (no wildcard unless a site writes ``*`` itself, which is
refused in production). Preflight requests are answered without authentication, as browsers send no credentials
on them; the headers allowed are ``Authorization`` and ``Content-Type``, the methods GET, POST and OPTIONS
(cds-hooks/docs PR #140; OWASP HTML5 cheat sheet: never reflect arbitrary origins).
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

CDS_PREFIX = "/cds-services"


class CdsCorsMiddleware:
    """Applies Starlette's CORSMiddleware to ``/cds-services`` paths and passes everything else through."""

    def __init__(self, app: ASGIApp, *, origins: tuple[str, ...]) -> None:
        self.app = app
        self.cors = CORSMiddleware(app, allow_origins=list(origins), allow_methods=["GET", "POST", "OPTIONS"],
                                   allow_headers=["Authorization", "Content-Type"], allow_credentials=False,
                                   max_age=600)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(CDS_PREFIX):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
