"""The PACS source: the folder implementation, the DICOMweb implementation's failure handling (against a small
fault-injecting HTTP server), and the real Orthanc of the local stack (integration)."""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pydicom
import pytest
from PIL import Image

from risk.config import DicomwebSettings
from risk.deadline import Deadline
from risk.errors import InvalidInput, NotFound, UpstreamRejected, UpstreamUnavailable
from risk.sources.dicomweb import (
    PNG_SIGNATURE,
    DicomFolderSource,
    DicomSource,
    DicomwebSource,
    TruncatedDicomError,
    open_dicom_source,
    read_part10,
)
from tests.support.dicom_factory import NoduleSpec, make_ct_series, make_sr, write

STUDY_DATE = date(2024, 5, 6)


@pytest.fixture(scope="module")
def study() -> tuple[list[pydicom.Dataset], pydicom.Dataset]:
    ct = make_ct_series(patient_id="LC-SRC-1", study_date=STUDY_DATE)
    return ct, make_sr(ct, [NoduleSpec((1.0, 2.0, -5.0))])


@pytest.fixture()
def folder(tmp_path: Path, study: tuple[list[pydicom.Dataset], pydicom.Dataset]) -> Path:
    ct, sr = study
    write(tmp_path, [*ct, sr])
    return tmp_path


# --- Folder source ----------------------------------------------------------------------------------------------
def test_folder_source_is_a_dicom_source(folder: Path) -> None:
    assert isinstance(DicomFolderSource(folder), DicomSource)
    assert isinstance(open_dicom_source(DicomwebSettings(file_dir=folder)), DicomFolderSource)
    assert isinstance(open_dicom_source(DicomwebSettings(url="http://127.0.0.1:1/dicom-web")), DicomwebSource)
    assert open_dicom_source(DicomwebSettings()) is None


def test_folder_qido(folder: Path, study: tuple[list[pydicom.Dataset], pydicom.Dataset]) -> None:
    ct, sr = study
    source = DicomFolderSource(folder)
    (found,) = source.search_studies(patient_id="LC-SRC-1")
    assert found.study_instance_uid == ct[0].StudyInstanceUID
    assert (found.study_date, found.modalities, found.patient_id) == (STUDY_DATE, ("CT", "SR"), "LC-SRC-1")
    assert source.search_studies(study_instance_uid=ct[0].StudyInstanceUID) == [found]
    assert source.search_studies(patient_id="nobody") == []
    (series,) = source.search_series(found.study_instance_uid, modality="SR")
    assert series.series_instance_uid == sr.SeriesInstanceUID
    (instance,) = source.search_instances(found.study_instance_uid, series.series_instance_uid)
    assert (instance.sop_instance_uid, instance.sop_class_uid) == (sr.SOPInstanceUID, sr.SOPClassUID)
    assert len(source.search_instances(found.study_instance_uid, ct[0].SeriesInstanceUID)) == len(ct)


def test_folder_wado(folder: Path, study: tuple[list[pydicom.Dataset], pydicom.Dataset]) -> None:
    ct, sr = study
    source = DicomFolderSource(folder)
    got = source.retrieve_instance(sr.StudyInstanceUID, sr.SeriesInstanceUID, sr.SOPInstanceUID)
    assert got.SOPInstanceUID == sr.SOPInstanceUID and len(got.ContentSequence) == len(sr.ContentSequence)
    meta = source.retrieve_instance_metadata(ct[3].StudyInstanceUID, ct[3].SeriesInstanceUID, ct[3].SOPInstanceUID)
    assert list(meta.ImagePositionPatient) == list(ct[3].ImagePositionPatient) and "PixelData" not in meta
    series = source.retrieve_series_metadata(ct[0].StudyInstanceUID, ct[0].SeriesInstanceUID)
    assert [m.SOPInstanceUID for m in series] == [d.SOPInstanceUID for d in ct]
    with pytest.raises(NotFound):
        source.retrieve_instance(sr.StudyInstanceUID, sr.SeriesInstanceUID, "1.2.3.4.5.6")
    with pytest.raises(InvalidInput) as bad:
        source.retrieve_instance(sr.StudyInstanceUID, sr.SeriesInstanceUID, "not a uid")
    assert bad.value.field == "sop_instance_uid"


def test_folder_renders_a_windowed_png(folder: Path, study: tuple[list[pydicom.Dataset], pydicom.Dataset]) -> None:
    ct, _ = study
    source = DicomFolderSource(folder)
    png = source.retrieve_rendered_frame(ct[0].StudyInstanceUID, ct[0].SeriesInstanceUID, ct[0].SOPInstanceUID)
    assert png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png))
    assert image.size == (32, 32) and image.mode == "L"
    # lung window (-600/1500): air (-1000 HU) near black, parenchyma (-850 HU) darker grey than mid
    top, body = image.getpixel((5, 2)), image.getpixel((5, 20))
    assert isinstance(top, int) and isinstance(body, int)
    assert top == round((-1000 + 1350) / 1500 * 255) or abs(top - 59) <= 1
    assert body > top
    narrow = Image.open(io.BytesIO(source.retrieve_rendered_frame(
        ct[0].StudyInstanceUID, ct[0].SeriesInstanceUID, ct[0].SOPInstanceUID, window=(-850.0, 10.0))))
    assert narrow.getpixel((5, 20)) in (127, 128) and narrow.getpixel((5, 2)) == 0


def test_folder_store_is_refused_unless_writable(tmp_path: Path,
                                                 study: tuple[list[pydicom.Dataset], pydicom.Dataset]) -> None:
    _, sr = study
    with pytest.raises(UpstreamRejected):
        DicomFolderSource(tmp_path).store_instances([sr])
    source = DicomFolderSource(tmp_path, writable=True)
    result = source.store_instances([sr])
    assert result.ok and result.stored == (sr.SOPInstanceUID,)
    assert source.search_studies(study_instance_uid=sr.StudyInstanceUID)[0].modalities == ("SR",)
    assert DicomFolderSource(tmp_path).retrieve_instance(sr.StudyInstanceUID, sr.SeriesInstanceUID,
                                                         sr.SOPInstanceUID).SOPInstanceUID == sr.SOPInstanceUID


def test_truncated_file_is_refused_not_read_short(folder: Path,
                                                  study: tuple[list[pydicom.Dataset], pydicom.Dataset]) -> None:
    _, sr = study
    path = next(folder.rglob(f"{sr.SOPInstanceUID}.dcm"))
    raw = path.read_bytes()
    # pydicom alone reads the cut file without complaint, with fewer content items
    assert pydicom.dcmread(io.BytesIO(raw[: len(raw) * 2 // 3])).SOPInstanceUID == sr.SOPInstanceUID
    with pytest.raises(TruncatedDicomError):
        read_part10(raw[: len(raw) * 2 // 3])
    assert read_part10(raw).SOPInstanceUID == sr.SOPInstanceUID
    path.write_bytes(raw[: len(raw) * 2 // 3])
    with pytest.raises(UpstreamRejected, match="truncated"):
        DicomFolderSource(folder).retrieve_instance(sr.StudyInstanceUID, sr.SeriesInstanceUID, sr.SOPInstanceUID)


def test_unreadable_files_are_listed_not_fatal(folder: Path) -> None:
    (folder / "garbage.dcm").write_bytes(b"not dicom at all" * 10)
    (folder / "manifest.json").write_text("{}")
    source = DicomFolderSource(folder)
    assert len(source.search_studies()) == 1
    assert [p.name for p, _ in source.index_problems] == ["garbage.dcm"]


def test_missing_folder_is_an_outage(tmp_path: Path) -> None:
    with pytest.raises(UpstreamUnavailable):
        DicomFolderSource(tmp_path / "absent").search_studies(patient_id="x")


# --- DICOMweb failure handling, against a fault-injecting server --------------------------------------------------
@dataclass
class Script:
    """Responses the fake server plays, in order, for GETs (the last one repeats)."""

    responses: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    delay_s: float = 0.0


class _Handler(BaseHTTPRequestHandler):
    script: Script

    def do_GET(self) -> None:
        self.script.requests.append((self.path, dict(self.headers)))
        if self.script.delay_s:
            time.sleep(self.script.delay_s)
        index = min(len(self.script.requests), len(self.script.responses)) - 1
        status, headers, body = self.script.responses[index]
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def fake_pacs() -> Iterator[tuple[str, Script]]:
    script = Script()
    handler = type("Handler", (_Handler,), {"script": script})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web", script
    finally:
        server.shutdown()
        server.server_close()


def _json(items: list[dict[str, Any]]) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/dicom+json"}, json.dumps(items).encode()


STUDY_JSON = {"0020000D": {"vr": "UI", "Value": ["1.2.3.4"]}, "00080020": {"vr": "DA", "Value": ["20240506"]},
              "00100020": {"vr": "LO", "Value": ["LC-1"]}, "00080061": {"vr": "CS", "Value": ["CT", "SR"]}}


def test_zero_matches_as_204_or_empty_200(fake_pacs: tuple[str, Script]) -> None:
    url, script = fake_pacs
    source = DicomwebSource(url, retries=0)
    script.responses = [(204, {}, b"")]
    assert source.search_studies(patient_id="LC-1") == []
    script.responses, script.requests[:] = [(200, {"Content-Type": "application/dicom+json"}, b"")], []
    assert source.search_studies(patient_id="LC-1") == []
    script.responses, script.requests[:] = [_json([])], []
    assert source.search_studies(patient_id="LC-1") == []


def test_study_record_and_query(fake_pacs: tuple[str, Script]) -> None:
    url, script = fake_pacs
    script.responses = [_json([STUDY_JSON])]
    (record,) = DicomwebSource(url, bearer_token="tok-123").search_studies(patient_id="LC-1")
    assert (record.study_instance_uid, record.study_date, record.modalities) == ("1.2.3.4", STUDY_DATE, ("CT", "SR"))
    path, headers = script.requests[0]
    assert path.startswith("/dicom-web/studies?") and "PatientID=LC-1" in path and "limit=200" in path
    assert headers["Authorization"] == "Bearer tok-123"


def test_retries_429_honouring_retry_after(fake_pacs: tuple[str, Script]) -> None:
    url, script = fake_pacs
    script.responses = [(429, {"Retry-After": "0.2"}, b""), (503, {}, b""), _json([STUDY_JSON])]
    started = time.monotonic()
    assert len(DicomwebSource(url, retries=3, backoff_s=0.01).search_studies(patient_id="LC-1")) == 1
    assert len(script.requests) == 3
    assert time.monotonic() - started >= 0.2


def test_retries_are_bounded_and_owned(fake_pacs: tuple[str, Script]) -> None:
    url, script = fake_pacs
    script.responses = [(503, {}, b"busy")]
    with pytest.raises(UpstreamUnavailable) as err:
        DicomwebSource(url, retries=2, backoff_s=0.01).search_studies(patient_id="LC-1")
    assert err.value.status_code == 503 and len(script.requests) == 3
    assert not isinstance(err.value.__cause__, UpstreamUnavailable)  # the cause is kept for logs, the type is ours


def test_backoff_never_outlives_the_deadline(fake_pacs: tuple[str, Script]) -> None:
    url, script = fake_pacs
    script.responses = [(503, {"Retry-After": "30"}, b"")]
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable):
        DicomwebSource(url, retries=5).search_studies(patient_id="LC-1", deadline=Deadline(1.0))
    assert time.monotonic() - started < 1.0 and len(script.requests) == 1


def test_client_errors_are_not_retried(fake_pacs: tuple[str, Script]) -> None:
    url, script = fake_pacs
    source = DicomwebSource(url, retries=3, backoff_s=0.01)
    script.responses = [(401, {}, b"")]
    with pytest.raises(UpstreamRejected, match="credentials") as err:
        source.search_studies(patient_id="LC-1")
    assert err.value.status_code == 401 and len(script.requests) == 1
    script.responses, script.requests[:] = [(404, {}, b"")], []
    with pytest.raises(NotFound):
        source.retrieve_instance("1.2.3", "1.2.3.1", "1.2.3.1.1")


def test_slow_pacs_times_out_within_the_deadline(fake_pacs: tuple[str, Script]) -> None:
    url, script = fake_pacs
    script.responses, script.delay_s = [_json([STUDY_JSON])], 2.0
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable, match="no answer"):
        DicomwebSource(url, timeout_s=20.0).search_studies(patient_id="LC-1", deadline=Deadline(0.5))
    assert time.monotonic() - started < 1.5


def test_paging_stops_when_the_server_ignores_offset(fake_pacs: tuple[str, Script]) -> None:
    url, script = fake_pacs
    page = [dict(STUDY_JSON, **{"0020000D": {"vr": "UI", "Value": [f"1.2.3.{i}"]}}) for i in range(3)]
    script.responses = [_json(page)]  # the same full page whatever the offset
    found = DicomwebSource(url, page_size=3).search_studies(patient_id="LC-1")
    assert [r.study_instance_uid for r in found] == ["1.2.3.0", "1.2.3.1", "1.2.3.2"]
    assert len(script.requests) == 2 and "offset=3" in script.requests[1][0]


def test_closed_port_is_unavailable_fast() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable, match="cannot connect"):
        DicomwebSource(f"http://127.0.0.1:{port}/dicom-web").search_studies(patient_id="LC-1")
    assert time.monotonic() - started < 2.0


def test_malformed_uid_is_refused_before_any_request(fake_pacs: tuple[str, Script]) -> None:
    url, script = fake_pacs
    with pytest.raises(InvalidInput) as err:
        DicomwebSource(url).search_series("1.2.abc")
    assert err.value.field == "study_instance_uid" and script.requests == []


def test_constructor_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        DicomwebSource("http://127.0.0.1:1", timeout_s=0)
    with pytest.raises(ValueError, match="password"):
        DicomwebSource("http://127.0.0.1:1", username="u")
    with pytest.raises(ValueError, match="one of"):
        DicomwebSource("http://127.0.0.1:1", username="u", password="p", bearer_token="t")


# --- The real Orthanc of the local stack ------------------------------------------------------------------------
STACK_ENV = Path(__file__).resolve().parents[2] / "deploy" / "local" / "state" / "stack.env"


def _stack_settings() -> DicomwebSettings:
    values = {k: v for k, v in os.environ.items() if k.startswith("RISK_DICOMWEB__")}
    if "RISK_DICOMWEB__URL" not in values and STACK_ENV.exists():
        for line in STACK_ENV.read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            if key.startswith("RISK_DICOMWEB__"):
                values[key] = value.strip().strip("'\"")
    if "RISK_DICOMWEB__URL" not in values:
        pytest.fail("local stack not running: run deploy/local/stack.sh up (no RISK_DICOMWEB__URL, no stack.env)")
    return DicomwebSettings(url=values["RISK_DICOMWEB__URL"], username=values.get("RISK_DICOMWEB__USERNAME"),
                            password=values.get("RISK_DICOMWEB__PASSWORD"), timeout_s=10, retries=1)


def orthanc_delete_patients(patient_id_pattern: str) -> int:
    """Delete test patients from the stack's Orthanc (its REST API; DICOMweb has no DELETE there). Best effort."""
    import requests

    settings = _stack_settings()
    root = str(settings.url).rstrip("/").removesuffix("/dicom-web")
    session = requests.Session()
    if settings.username and settings.password:
        session.auth = (settings.username, settings.password)
    found = session.post(f"{root}/tools/find", json={"Level": "Patient", "Query": {"PatientID": patient_id_pattern}},
                         timeout=30)
    ids = found.json() if found.ok else []
    for orthanc_id in ids:
        session.delete(f"{root}/patients/{orthanc_id}", timeout=30)
    return len(ids)


@pytest.fixture(scope="module")
def orthanc() -> DicomwebSource:
    source = DicomwebSource.from_settings(_stack_settings())
    try:
        source.search_studies(patient_id="no-such-patient", deadline=Deadline(5))
    except (UpstreamUnavailable, UpstreamRejected) as exc:
        pytest.fail(f"local stack not running: run deploy/local/stack.sh up ({exc})")
    return source


@pytest.mark.integration
def test_orthanc_stow_qido_wado_rendered(orthanc: DicomwebSource) -> None:
    patient = f"LC-IT-DICOMWEB-{uuid.uuid4().hex[:8]}"  # each run has its own patient, deleted at the end
    try:
        _stow_qido_wado_rendered(orthanc, patient)
    finally:
        orthanc_delete_patients(patient)


def _stow_qido_wado_rendered(orthanc: DicomwebSource, patient: str) -> None:
    ct = make_ct_series(patient_id=patient, study_date=STUDY_DATE)
    sr = make_sr(ct, [NoduleSpec((1.0, 2.0, -5.0), volume_mm3=150.0)])
    stored = orthanc.store_instances([*ct, sr])
    assert stored.ok and set(stored.stored) == {d.SOPInstanceUID for d in [*ct, sr]}
    (found,) = orthanc.search_studies(patient_id=patient)
    assert found.study_instance_uid == ct[0].StudyInstanceUID and found.study_date == STUDY_DATE
    assert set(found.modalities) == {"CT", "SR"}
    assert orthanc.search_studies(study_instance_uid=ct[0].StudyInstanceUID) == [found]
    (sr_series,) = orthanc.search_series(found.study_instance_uid, modality="SR")
    (instance,) = orthanc.search_instances(found.study_instance_uid, sr_series.series_instance_uid)
    assert instance.sop_class_uid == sr.SOPClassUID
    got = orthanc.retrieve_instance(found.study_instance_uid, sr_series.series_instance_uid, sr.SOPInstanceUID)
    assert got.SOPInstanceUID == sr.SOPInstanceUID and got.ContentSequence[0].ValueType
    meta = orthanc.retrieve_instance_metadata(ct[2].StudyInstanceUID, ct[2].SeriesInstanceUID, ct[2].SOPInstanceUID)
    assert [float(v) for v in meta.ImagePositionPatient] == [float(v) for v in ct[2].ImagePositionPatient]
    assert len(orthanc.retrieve_series_metadata(ct[0].StudyInstanceUID, ct[0].SeriesInstanceUID)) == len(ct)
    png = orthanc.retrieve_rendered_frame(ct[0].StudyInstanceUID, ct[0].SeriesInstanceUID, ct[0].SOPInstanceUID)
    assert png.startswith(PNG_SIGNATURE) and Image.open(io.BytesIO(png)).size == (32, 32)
    # a lung window is honoured (Orthanc 1.10 rejects a %2C-encoded window with 400)
    windowed = orthanc.retrieve_rendered_frame(ct[0].StudyInstanceUID, ct[0].SeriesInstanceUID,
                                               ct[0].SOPInstanceUID, window=(-600.0, 1500.0))
    assert windowed.startswith(PNG_SIGNATURE) and windowed != png
    assert orthanc.search_studies(patient_id="LC-IT-nobody") == []
    with pytest.raises(NotFound):
        orthanc.retrieve_instance(found.study_instance_uid, sr_series.series_instance_uid, "1.2.3.4.5.6.7")


@pytest.mark.integration
def test_orthanc_wrong_credentials_are_rejected(orthanc: DicomwebSource) -> None:
    settings = _stack_settings()
    if settings.username is None:
        pytest.fail("the stack's Orthanc is expected to require authentication (pacs/pacs-secret)")
    wrong = DicomwebSource(str(settings.url), username=settings.username, password="wrong")
    with pytest.raises(UpstreamRejected) as err:
        wrong.search_studies(patient_id="LC-1")
    assert err.value.status_code == 401
