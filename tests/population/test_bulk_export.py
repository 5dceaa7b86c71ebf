"""The Bulk Data $export client: kick-off, polling (Retry-After, backoff, transient errors), download with the
token, cancellation, and the folder it leaves. Protocol edge cases run against an in-process HTTP double
(httpx.MockTransport, no sockets); the real exchange with the local stack's FHIR server and SMART AS is in
tests/population/test_e2e_stack.py."""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from risk.errors import InvalidInput, UpstreamRejected, UpstreamUnavailable
from risk.population.bulk_export import BulkExportClient, ExportManifest, ExportRequest
from risk.sources.bulk import BulkExport

BASE = "https://ehr.example.org/fhir"
STATUS = f"{BASE}/$export-status/job1"
PATIENT = b'{"resourceType":"Patient","id":"p1"}\n{"resourceType":"Patient","id":"p2"}\n'
OBS = b'{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"}}\n'


def manifest(requires_token: bool = True, file_base: str = BASE) -> dict[str, object]:
    return {"transactionTime": "2026-06-30T00:00:00Z", "request": f"{BASE}/$export", "requiresAccessToken":
            requires_token, "output": [{"type": "Patient", "url": f"{file_base}/files/p.ndjson", "count": 2},
                                       {"type": "Observation", "url": f"{file_base}/files/o.ndjson", "count": 1}],
            "error": [{"type": "OperationOutcome", "url": f"{file_base}/files/e.ndjson"}]}


class Server:
    """Scripted responses for the status URL; records every request."""

    def __init__(self, statuses: list[httpx.Response], *, body: dict[str, object] | None = None) -> None:
        self.statuses = statuses
        self.body = body or manifest()
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = str(request.url)
        if request.method == "DELETE":
            return httpx.Response(202)
        if "/$export?" in url or url.endswith("/$export"):
            return httpx.Response(202, headers={"Content-Location": STATUS})
        if url == STATUS:
            if self.statuses:
                return self.statuses.pop(0)
            return httpx.Response(200, json=self.body)
        if url.endswith("/p.ndjson"):
            return httpx.Response(200, content=PATIENT)
        if url.endswith("/o.ndjson"):
            return httpx.Response(200, content=OBS)
        if url.endswith("/e.ndjson"):
            return httpx.Response(200, content=b'{"resourceType":"OperationOutcome","issue":[{"code":"processing"}]}\n')
        return httpx.Response(404)


class Token:
    def __init__(self) -> None:
        self.minted = 0
        self.invalidated = 0

    def __call__(self) -> str:
        if self.minted == self.invalidated:
            self.minted += 1
        return f"token-{self.minted}"

    def invalidate(self) -> None:
        self.invalidated = self.minted


def client(server: Callable[[httpx.Request], httpx.Response], sleeps: list[float], **kw: object) -> BulkExportClient:
    clock = [0.0]

    def sleep(s: float) -> None:
        sleeps.append(s)
        clock[0] += s

    http = httpx.Client(transport=httpx.MockTransport(server))
    return BulkExportClient(BASE, token=kw.pop("token", Token()), http=http,  # type: ignore[arg-type]
                            sleep=sleep, clock=lambda: clock[0], backoff_s=0.5, **kw)  # type: ignore[arg-type]


def test_kick_off_poll_download_leave_a_readable_folder(tmp_path: Path) -> None:
    server = Server([httpx.Response(202, headers={"X-Progress": "10%", "Retry-After": "3"}),
                     httpx.Response(202, headers={"X-Progress": "60%"})])
    sleeps: list[float] = []
    progress: list[str] = []
    result = client(server, sleeps, progress=progress.append).export(
        ExportRequest(types=("Patient", "Observation")), tmp_path / "out")
    kick = server.requests[0]
    assert kick.method == "GET" and kick.headers["Prefer"] == "respond-async"
    assert kick.headers["Accept"] == "application/fhir+json"
    assert kick.url.params["_type"] == "Patient,Observation"
    assert kick.url.params["_outputFormat"] == "application/fhir+ndjson"
    assert sleeps == [3.0, 1.0], "Retry-After first, then the initial backoff"
    assert progress == ["10%", "60%"]
    assert result.polls == 3 and result.bytes_downloaded > 0
    files = {r.url.path.rsplit("/", 1)[-1]: r for r in server.requests if "/files/" in str(r.url)}
    assert all(r.headers["Authorization"].startswith("Bearer token-") for r in files.values())
    assert [r.method for r in server.requests][-1] == "DELETE", "the finished export is deleted on the server"
    folder = BulkExport(tmp_path / "out")
    assert [p.name for p in folder.files("Patient")] == ["Patient.000.ndjson"]
    assert (tmp_path / "out" / "Patient.000.ndjson").read_bytes() == PATIENT
    assert result.error_outcomes == [{"resourceType": "OperationOutcome", "issue": [{"code": "processing"}]}]
    local = orjson.loads((tmp_path / "out" / "manifest.json").read_bytes())
    assert local["transactionTime"] == "2026-06-30T00:00:00Z" and local["requiresAccessToken"] is False


def test_exponential_backoff_without_retry_after_capped(tmp_path: Path) -> None:
    server = Server([httpx.Response(202) for _ in range(6)])
    sleeps: list[float] = []
    client(server, sleeps, poll_initial_s=1.0, poll_max_s=10.0).export(ExportRequest(), tmp_path / "o")
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_retry_after_as_an_http_date(tmp_path: Path) -> None:
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    server = Server([httpx.Response(202, headers={"Retry-After": when})])
    sleeps: list[float] = []
    client(server, sleeps).export(ExportRequest(), tmp_path / "o")
    assert 17.0 <= sleeps[0] <= 20.0


def test_transient_errors_are_retried_and_fatal_ones_fail(tmp_path: Path) -> None:
    transient = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "transient"}]}
    server = Server([httpx.Response(500, json=transient), httpx.Response(503)])
    sleeps: list[float] = []
    client(server, sleeps).export(ExportRequest(), tmp_path / "ok")
    assert len(sleeps) == 2
    fatal = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid",
                                                             "diagnostics": "_typeFilter not supported"}]}
    server = Server([httpx.Response(400, json=fatal)])
    with pytest.raises(UpstreamRejected, match="_typeFilter not supported"):
        client(server, []).export(ExportRequest(), tmp_path / "bad")
    assert server.requests[-1].method == "DELETE", "a failed export is cancelled"


def test_busy_server_at_kick_off_is_retried_after_its_retry_after(tmp_path: Path) -> None:
    calls = []

    def busy(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if "/$export?" in str(request.url) and len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "5"})
        return Server([])(request)

    sleeps: list[float] = []
    client(busy, sleeps).export(ExportRequest(), tmp_path / "o")
    assert sleeps[0] == 5.0


def test_waiting_is_bounded_and_cancels(tmp_path: Path) -> None:
    server = Server([httpx.Response(202, headers={"Retry-After": "30"}) for _ in range(100)])
    with pytest.raises(UpstreamUnavailable, match="not ready within 100 s"):
        client(server, [], max_wait_s=100.0).export(ExportRequest(), tmp_path / "o")
    assert server.requests[-1].method == "DELETE"


def test_a_refused_token_is_reminted_once(tmp_path: Path) -> None:
    token = Token()
    seen = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") == "Bearer token-1":
            return httpx.Response(401)
        return Server([])(request)

    client(server, [], token=token).export(ExportRequest(), tmp_path / "o")
    assert seen[:2] == ["Bearer token-1", "Bearer token-2"] and token.invalidated == 1

    def always_401(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401)

    with pytest.raises(UpstreamRejected, match="401"):
        client(always_401, [], token=Token()).export(ExportRequest(), tmp_path / "o2")


def test_the_token_never_goes_to_another_origin(tmp_path: Path) -> None:
    server = Server([], body=manifest(requires_token=True, file_base="https://files.example.net"))
    with pytest.raises(UpstreamRejected, match="token_origins"):
        client(server, []).export(ExportRequest(), tmp_path / "o")
    server = Server([], body=manifest(requires_token=False, file_base="https://files.example.net"))
    client(server, []).export(ExportRequest(), tmp_path / "o2")
    assert all("Authorization" not in r.headers for r in server.requests if "files.example.net" in str(r.url))
    server = Server([], body=manifest(requires_token=True, file_base="https://files.example.net"))
    client(server, [], token_origins=["https://files.example.net"]).export(ExportRequest(), tmp_path / "o3")


def test_outage_is_reported_as_an_outage(tmp_path: Path) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(UpstreamUnavailable, match="kick-off"):
        client(down, [], retries=2).export(ExportRequest(), tmp_path / "o")


def test_request_parameters_and_validation() -> None:
    r = ExportRequest(level="group", group_id="lcs-cohort", types=("Patient",),
                      since=datetime(2026, 6, 1, tzinfo=UTC), type_filters=("Observation?category=laboratory",))
    assert r.path() == "Group/lcs-cohort/$export"
    assert "_since=2026-06-01T00:00:00Z" in r.query() and "_typeFilter=Observation%3Fcategory%3Dlaboratory" in r.query()
    with pytest.raises(InvalidInput, match="group_id"):
        ExportRequest(level="group")
    with pytest.raises(InvalidInput, match="types"):
        ExportRequest(types=("patient; drop",))
    with pytest.raises(InvalidInput, match="since"):
        ExportRequest(since=datetime(2026, 6, 1))
    with pytest.raises(UpstreamRejected, match="requiresAccessToken"):
        ExportManifest.parse({"transactionTime": "x", "request": "y", "output": []})


def test_a_non_empty_destination_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("keep me")
    with pytest.raises(InvalidInput, match="dest"):
        client(Server([]), []).export(ExportRequest(), tmp_path)
