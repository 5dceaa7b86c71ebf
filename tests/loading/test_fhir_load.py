"""FHIR side of the cohort loader without a server: transaction splitting, NDJSON units, retries and error
mapping (against httpx's in-process transport), and the per-file / outage reporting of FhirLoader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from risk.errors import UpstreamRejected, UpstreamUnavailable
from risk.loading.fhir_load import (
    MAX_STRICT_TRANSACTION_ENTRIES,
    MAX_TRANSACTION_ENTRIES,
    FhirLoader,
    FhirTransactionClient,
    Unit,
    bundle_file_unit,
    ndjson_units,
    transaction_chunks,
)
from risk.loading.report import ChannelReport, FileFailure

BASE = "http://fhir.test/fhir/R4"


def put(rt: str, rid: str, **extra: Any) -> dict[str, Any]:
    return {"resource": {"resourceType": rt, "id": rid, **extra}, "request": {"method": "PUT", "url": f"{rt}/{rid}"}}


def bundle(entries: list[dict[str, Any]], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def ok_response(request: httpx.Request) -> httpx.Response:
    entries = json.loads(request.content)["entry"]
    return httpx.Response(200, json={"resourceType": "Bundle", "type": "transaction-response",
                                     "entry": [{"response": {"status": "200 OK"}} for _ in entries]})


def client(handler: Any, **kw: Any) -> FhirTransactionClient:
    return FhirTransactionClient(BASE, http=httpx.Client(transport=httpx.MockTransport(handler)), backoff_s=0, **kw)


# --- transaction_chunks ----------------------------------------------------------------------------------------
def test_small_transaction_is_posted_whole() -> None:
    b = bundle([put("Patient", "p1"), put("Observation", "o1")])
    assert transaction_chunks(b) == [b]


def test_large_put_transaction_is_split_within_the_server_limit() -> None:
    b = bundle([put("Observation", f"o{i}") for i in range(2 * MAX_TRANSACTION_ENTRIES + 7)])
    chunks = transaction_chunks(b)
    assert [len(c["entry"]) for c in chunks] == [MAX_TRANSACTION_ENTRIES, MAX_TRANSACTION_ENTRIES, 7]
    assert all(c["type"] == "transaction" for c in chunks)
    assert [e for c in chunks for e in c["entry"]] == b["entry"]  # nothing lost, order kept


def test_conditional_entries_use_the_strict_limit() -> None:
    entries = [put("Observation", f"o{i}") for i in range(20)]
    entries[3]["request"]["ifNoneExist"] = "identifier=x|1"
    chunks = transaction_chunks(bundle(entries))
    assert max(len(c["entry"]) for c in chunks) == MAX_STRICT_TRANSACTION_ENTRIES


def test_transaction_with_urn_uuid_references_is_never_split() -> None:
    patient = {"fullUrl": "urn:uuid:5a1b0d3c-1111-4a4a-8b8b-000000000001",
               "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}
    obs = [{"resource": {"resourceType": "Observation", "subject": {"reference": patient["fullUrl"]}},
            "request": {"method": "POST", "url": "Observation"}} for _ in range(60)]
    b = bundle([patient, *obs])
    assert transaction_chunks(b) == [b]


def test_batch_is_posted_as_is() -> None:
    b = bundle([put("Observation", f"o{i}") for i in range(80)], kind="batch")
    assert transaction_chunks(b) == [b]


@pytest.mark.parametrize(("value", "message"), [
    ({"resourceType": "Patient"}, "not a FHIR Bundle"),
    (bundle([], kind="searchset"), "only transaction or batch"),
    (bundle([{"resource": {"resourceType": "Patient"}}]), r"entry\[0\].request.method"),
])
def test_bad_bundles_are_refused_with_the_reason(value: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        transaction_chunks(value)


# --- NDJSON ----------------------------------------------------------------------------------------------------
def test_ndjson_becomes_put_transactions_and_bad_lines_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "Observation.000.ndjson"
    lines = [json.dumps({"resourceType": "Observation", "id": f"o{i}", "status": "final"}) for i in range(120)]
    lines[10] = "{not json"
    lines[20] = json.dumps({"resourceType": "Observation", "status": "final"})  # no id: cannot be loaded twice
    path.write_text("\n".join(lines) + "\n\n")
    failures: list[FileFailure] = []
    units = list(ndjson_units([path], failures=failures))
    entries = [e for u in units for b in u.load() for e in b["entry"]]
    assert len(entries) == 118
    assert {e["request"]["method"] for e in entries} == {"PUT"}
    assert entries[0]["request"]["url"] == "Observation/o0"
    assert [len(b["entry"]) for u in units for b in u.load()] == [50, 50, 18]
    assert [f.path for f in failures] == [f"{path}:11", f"{path}:21"]
    assert units[0].name.startswith(f"{path}:1-")


# --- FhirTransactionClient -------------------------------------------------------------------------------------
def test_retries_a_busy_server_then_counts_applied_entries() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(503, headers={"retry-after": "0"})
        return ok_response(request)

    assert client(handler).post_transaction(bundle([put("Patient", "p1"), put("Patient", "p2")])) == 2
    assert len(calls) == 2


def test_refused_token_is_re_minted_once() -> None:
    class Tokens:
        def __init__(self) -> None:
            self.issued = 0

        def __call__(self) -> str:
            return f"t{self.issued}"

        def invalidate(self) -> None:
            self.issued += 1

    tokens = Tokens()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] == "Bearer t0":
            return httpx.Response(401, json={"resourceType": "OperationOutcome", "issue": [{"diagnostics": "expired"}]})
        return ok_response(request)

    assert client(handler, token=tokens).post_transaction(bundle([put("Patient", "p1")])) == 1
    assert tokens.issued == 1


def test_client_errors_are_rejections_with_the_servers_words() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        issue = {"severity": "error", "code": "invalid", "details": {"text": "bad"}}
        return httpx.Response(400, json={"resourceType": "OperationOutcome", "issue": [issue]})

    with pytest.raises(UpstreamRejected, match="HTTP 400: bad"):
        client(handler).post_transaction(bundle([put("Patient", "p1")]))


def test_missing_token_hint_names_the_settings() -> None:
    with pytest.raises(UpstreamRejected, match="RISK_SMART_BACKEND"):
        client(lambda r: httpx.Response(401, json={})).post_transaction(bundle([put("Patient", "p1")]))


def test_unreachable_server_is_an_outage_not_a_rejection() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(UpstreamUnavailable, match="cannot reach"):
        client(handler, retries=1).post_transaction(bundle([put("Patient", "p1")]))


def test_failed_batch_entries_are_reported() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "batch-response", "entry": [
            {"response": {"status": "200 OK"}}, {"response": {"status": "400 Bad Request"}}]})

    with pytest.raises(UpstreamRejected, match="1 of 2 entries failed"):
        client(handler).post_transaction(bundle([put("Patient", "p1"), put("Patient", "p2")], kind="batch"))


# --- FhirLoader ------------------------------------------------------------------------------------------------
def test_one_bad_file_is_reported_and_the_rest_load(tmp_path: Path) -> None:
    good = [tmp_path / f"p{i}.json" for i in range(3)]
    for i, p in enumerate(good):
        p.write_text(json.dumps(bundle([put("Patient", f"p{i}"), put("Observation", f"o{i}")])))
    bad = tmp_path / "broken.json"
    bad.write_text("{")
    report = FhirLoader(client(ok_response), workers=2).load(
        [bundle_file_unit(p) for p in [*good, bad]], ChannelReport("FHIR", BASE))
    assert (report.files_total, report.files_loaded, report.items_loaded) == (4, 3, 6)
    assert [f.path for f in report.failures] == [str(bad)]
    assert "not JSON" in report.failures[0].reason
    assert report.outage is None and not report.ok


def test_outage_stops_the_channel_and_says_so() -> None:
    attempted: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempted.append("x")
        raise httpx.ConnectError("connection refused", request=request)

    def unit(i: int) -> Unit:
        return Unit(f"u{i}", lambda: [bundle([put("Patient", f"p{i}")])])

    units = [unit(i) for i in range(50)]
    report = FhirLoader(client(handler, retries=0), workers=1).load(units, ChannelReport("FHIR", BASE))
    assert report.outage is not None and "unavailable" in report.outage
    assert report.failures == [] and report.files_loaded == 0
    assert len(attempted) < 10  # stopped early, not 50 failures
