"""A small real FHIR-like HTTP server (Starlette + uvicorn in a thread) with switchable faults.

It is a real server on 127.0.0.1, not a mock: the client under test goes through httpx, sockets,
timeouts and status codes. It serves reads and ``patient``/``_count``/``_offset`` searches from an
in-memory store, and can: emit or omit ``next`` links, ignore ``_offset``, demand a bearer token,
answer the next requests with queued faults (status + headers), sleep before answering, or send
invalid JSON. Every request is recorded.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass
class Behaviour:
    next_links: bool = True
    ignore_offset: bool = False
    token: str | None = None
    delay_s: float = 0.0
    invalid_json: bool = False
    faults: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    next_link_base: str | None = None
    reject_include: bool = False


@dataclass
class Recorded:
    path: str
    query: str
    authorization: str | None


class FhirTestServer:
    def __init__(self) -> None:
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        self.behaviour = Behaviour()
        self.requests: list[Recorded] = []
        self.base_url = ""
        self._app = Starlette(routes=[Route("/fhir/{rtype}", self._search), Route("/fhir/{rtype}/{rid}", self._read)])

    def add(self, *resources: dict[str, Any]) -> None:
        for r in resources:
            self.resources[(r["resourceType"], r["id"])] = r

    def reset(self) -> None:
        self.behaviour = Behaviour()
        self.requests.clear()

    async def _gate(self, request: Request) -> Response | None:
        b = self.behaviour
        self.requests.append(Recorded(request.url.path, request.url.query, request.headers.get("authorization")))
        if b.delay_s:
            await asyncio.sleep(b.delay_s)
        if b.token is not None and request.headers.get("authorization") != f"Bearer {b.token}":
            return _json({"resourceType": "OperationOutcome",
                          "issue": [{"severity": "error", "code": "login", "diagnostics": "token required"}]}, 401)
        if b.faults:
            status, headers = b.faults.pop(0)
            return Response(b"upstream busy", status, headers=headers)
        if b.invalid_json:
            return Response(b'{"resourceType": "Bundle", "entry": [', 200, media_type="application/fhir+json")
        return None

    async def _read(self, request: Request) -> Response:
        refused = await self._gate(request)
        if refused is not None:
            return refused
        resource = self.resources.get((request.path_params["rtype"], request.path_params["rid"]))
        if resource is None:
            return _json({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]},
                         404)
        return _json(resource)

    async def _search(self, request: Request) -> Response:
        refused = await self._gate(request)
        if refused is not None:
            return refused
        rtype = request.path_params["rtype"]
        q = request.query_params
        if self.behaviour.reject_include and "_include" in q:
            return _json({"resourceType": "OperationOutcome",
                          "issue": [{"severity": "error", "code": "not-supported", "diagnostics": "no _include"}]},
                         400)
        pid = q.get("patient", "").rsplit("/", 1)[-1]
        matches = [r for (t, _i), r in sorted(self.resources.items()) if t == rtype
                   and (not pid or (r.get("subject") or r.get("patient") or {}).get("reference") == f"Patient/{pid}")]
        count = int(q.get("_count", "1000"))
        offset = 0 if self.behaviour.ignore_offset else int(q.get("_offset", "0"))
        page = matches[offset:offset + count]
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset",
                                  "entry": [{"resource": r, "search": {"mode": "match"}} for r in page]}
        if self.behaviour.next_links and offset + count < len(matches):
            base = self.behaviour.next_link_base or self.base_url
            rest = "&".join(f"{k}={v}" for k, v in q.multi_items() if k != "_offset")
            bundle["link"] = [{"relation": "next", "url": f"{base}/{rtype}?{rest}&_offset={offset + count}"}]
        return _json(bundle)

    @contextmanager
    def running(self) -> Iterator[FhirTestServer]:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(self._app, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("test FHIR server did not start")
            time.sleep(0.01)
        self.base_url = f"http://127.0.0.1:{port}/fhir"
        try:
            yield self
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/fhir+json")
