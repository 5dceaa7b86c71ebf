"""The patient list: Patient JSON → row, and paging/search/error handling of the FHIR-server directory (its HTTP
answers given by an httpx MockTransport here; tests/demo/test_stack.py runs it against the real FHIR server)."""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from risk import codes
from risk.deadline import Deadline
from risk.demo.patients import FhirPatientDirectory, PatientQuery, check_patient_id, patient_row
from risk.errors import InvalidInput, UpstreamRejected, UpstreamUnavailable

BASE = "http://fhir.test/fhir/R4"
TAG = {"system": codes.SYNTHETIC_DATA_TAG.system, "code": codes.SYNTHETIC_DATA_TAG.code}
MRN = {"type": {"coding": [{"system": codes.IDENTIFIER_TYPE_MRN.system, "code": "MR"}]}, "value": "B0000001"}


def patient(pid: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, **extra}


def test_row_from_a_full_patient() -> None:
    row = patient_row(patient("p1", meta={"tag": [TAG]}, gender="female", birthDate="1960-03-15",
                              identifier=[{"system": "urn:other", "value": "X"}, MRN],
                              name=[{"use": "maiden", "text": "Old Name"},
                                    {"use": "official", "family": "Doe", "given": ["Jane", "Q"]}]),
                      date(2026, 3, 14))
    assert (row.patient_id, row.name, row.age_years, row.sex, row.mrn, row.synthetic) == (
        "p1", "Jane Q Doe", 65, "female", "B0000001", True)
    assert patient_row(patient("p1", birthDate="1960-03-15"), date(2026, 3, 15)).age_years == 66


def test_row_tolerates_missing_and_malformed_parts() -> None:
    row = patient_row(patient("p2", birthDate="1960", gender=3, name=[{"use": "official"}], identifier=["x"]),
                      date(2026, 1, 1))
    assert (row.name, row.birth_date, row.age_years, row.sex, row.mrn, row.synthetic) == (
        "(no name recorded)", None, None, None, None, False)


def test_patient_ids_are_checked() -> None:
    assert check_patient_id("lca-0000001") == "lca-0000001"
    for bad in ("", "a/b", "a b", "x" * 65, "../x"):
        with pytest.raises(InvalidInput, match="patient_id"):
            check_patient_id(bad)


class Server:
    """Answers Patient searches like a FHIR server with paging links; records what it was asked."""

    def __init__(self, status: int = 200, next_url: str | None = None) -> None:
        self.status = status
        self.next_url = next_url
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.status != 200:
            return httpx.Response(self.status, json={"resourceType": "OperationOutcome"})
        if request.url.path.endswith("/Patient/missing"):
            return httpx.Response(404, json={"resourceType": "OperationOutcome"})
        if "/Patient/" in request.url.path:
            return httpx.Response(200, json=patient(request.url.path.rsplit("/", 1)[1], gender="male"))
        offset = int(request.url.params.get("_offset", "0"))
        links = [{"relation": "self", "url": str(request.url)}]
        default_next = f"{BASE}/Patient?_count=2&_sort=_id&_offset={offset + 2}"
        links.append({"relation": "next", "url": self.next_url or default_next})
        if offset:
            links.append({"relation": "previous", "url": f"{BASE}/Patient?_count=2&_sort=_id&_offset={offset - 2}"})
        entries = [{"resource": patient(f"p{offset + i}")} for i in (1, 2)]
        entries.append({"resource": {"resourceType": "OperationOutcome"}})
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "total": 6,
                                         "link": links, "entry": entries})


def directory(server: Server, token: Any = "tok") -> FhirPatientDirectory:
    return FhirPatientDirectory(BASE, token=token, client=httpx.Client(transport=httpx.MockTransport(server)),
                                today=lambda: date(2026, 1, 1))


def test_first_page_query_and_cursors() -> None:
    server = Server()
    page = directory(server).page(PatientQuery(name="Syn", count=2), deadline=Deadline(5))
    sent = server.requests[0]
    assert sent.headers["authorization"] == "Bearer tok" and sent.headers["accept"] == "application/fhir+json"
    assert parse_qsl(sent.url.query.decode()) == [("_count", "2"), ("_sort", "_id"), ("name", "Syn"),
                                                  ("_tag", f"{TAG['system']}|{TAG['code']}")]
    assert [r.patient_id for r in page.rows] == ["p1", "p2"] and page.total == 6 and page.first_index == 1
    assert page.next_cursor == "_count=2&_sort=_id&_offset=2" and page.previous_cursor is None
    second = directory(server).page(PatientQuery(cursor=page.next_cursor), deadline=Deadline(5))
    assert urlsplit(str(server.requests[1].url)).query == "_count=2&_sort=_id&_offset=2"
    assert [r.patient_id for r in second.rows] == ["p3", "p4"] and second.first_index == 3
    assert second.previous_cursor == "_count=2&_sort=_id&_offset=0"


def test_all_patients_leaves_out_the_tag_and_a_token_provider_is_called() -> None:
    server = Server()
    calls: list[int] = []

    def token() -> str:
        calls.append(1)
        return "fresh"

    directory(server, token=token).page(PatientQuery(synthetic_only=False), deadline=Deadline(5))
    assert "_tag" not in server.requests[0].url.params and server.requests[0].headers["authorization"] == "Bearer fresh"
    assert calls == [1]


@pytest.mark.parametrize("next_url", ["http://evil.test/fhir/R4/Patient?_offset=2",
                                      f"{BASE}/Observation?_offset=2", f"{BASE}/Patient"])
def test_links_elsewhere_are_not_followed(next_url: str) -> None:
    page = directory(Server(next_url=next_url)).page(PatientQuery(), deadline=Deadline(5))
    assert page.next_cursor is None


@pytest.mark.parametrize("cursor", ["", "_include=Patient:general-practitioner", "x" * 2001])
def test_bad_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidInput, match="cursor"):
        directory(Server()).page(PatientQuery(cursor=cursor or "&"), deadline=Deadline(5))


@pytest.mark.parametrize(("status", "error"), [(503, UpstreamUnavailable), (429, UpstreamUnavailable),
                                               (500, UpstreamUnavailable), (403, UpstreamRejected),
                                               (400, UpstreamRejected)])
def test_server_errors_are_reported_never_an_empty_list(status: int, error: type[Exception]) -> None:
    with pytest.raises(error):
        directory(Server(status=status)).page(PatientQuery(), deadline=Deadline(5))


def test_unreachable_server_and_timeouts() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    for handler in (refuse, slow):
        d = FhirPatientDirectory(BASE, client=httpx.Client(transport=httpx.MockTransport(handler)))
        with pytest.raises(UpstreamUnavailable):
            d.page(PatientQuery(), deadline=Deadline(5))


def test_read() -> None:
    d = directory(Server())
    assert d.read("missing", deadline=Deadline(5)) is None
    row = d.read("p9", deadline=Deadline(5))
    assert row is not None and row.sex == "male"
    with pytest.raises(InvalidInput, match="patient_id"):
        d.read("../Observation", deadline=Deadline(5))


def test_query_limits() -> None:
    with pytest.raises(InvalidInput, match="q"):
        PatientQuery(name="x" * 65)
    with pytest.raises(InvalidInput, match="count"):
        PatientQuery(count=0)
