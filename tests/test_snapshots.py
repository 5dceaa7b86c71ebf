"""build_snapshot: FHIR + imaging → one snapshot; nothing raises past it; outages are visible."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import orjson
import pytest

from risk import codes
from risk.deadline import Deadline
from risk.domain.imaging import ImagingStudyRef, NoduleObservation, NoduleTrack, TrackLinkage, TrackStatus
from risk.domain.provenance import IngestionNote, NoteCode, NoteSeverity, dicom_ref
from risk.domain.snapshot import SourceState, SourceStatus
from risk.errors import UpstreamUnavailable
from risk.snapshots import PACS_SYSTEM, build_snapshot, pacs_imaging
from risk.sources.fhir_file import FileFhirSource
from tests.extract.builders import PID, endpoint, imaging_study, patient, smoking_status

AS_OF = date(2025, 1, 1)
OK_PACS = SourceStatus(PACS_SYSTEM, SourceState.OK)


@dataclass(frozen=True)
class Imaging:
    studies: tuple[ImagingStudyRef, ...] = ()
    tracks: tuple[NoduleTrack, ...] = ()
    notes: tuple[IngestionNote, ...] = ()
    status: SourceStatus = OK_PACS


class Loader:
    """An ImagingLoader that records its calls and returns a fixed result (or raises)."""

    def __init__(self, result: Imaging | Exception) -> None:
        self.result = result
        self.calls: list[dict] = []

    def __call__(self, *, dicom_patient_ids: Sequence[str], study_uids: Sequence[str], as_of: date,
                 deadline: Deadline) -> Imaging:
        self.calls.append({"ids": list(dicom_patient_ids), "uids": list(study_uids), "as_of": as_of})
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


@pytest.fixture
def source(tmp_path: Path) -> FileFhirSource:
    resources = [patient(), smoking_status(codes.FORMER_SMOKER), endpoint(),
                 imaging_study("1.2.3", started="2023-05-01", sid="ct-1")]
    (tmp_path / "p.json").write_bytes(orjson.dumps({"resourceType": "Bundle", "type": "collection",
                                                    "entry": [{"resource": r} for r in resources]}))
    return FileFhirSource(tmp_path)


def track(uid: str, day: date) -> NoduleTrack:
    obs = NoduleObservation(study_instance_uid=uid, study_date=day, source=dicom_ref("9.9", day), diameter_mm=6.0)
    return NoduleTrack("t1", (obs,), TrackStatus.BASELINE, TrackLinkage.SINGLE)


def test_fhir_and_imaging_are_merged_by_study_uid(source: FileFhirSource) -> None:
    pacs_same = ImagingStudyRef("1.2.3", "CT", date(2023, 5, 1), dicom_ref("1.2.3"), description="LDCT")
    pacs_only = ImagingStudyRef("4.5.6", "CT", date(2024, 6, 1), dicom_ref("4.5.6"))
    loader = Loader(Imaging(studies=(pacs_same, pacs_only), tracks=(track("4.5.6", date(2024, 6, 1)),),
                            notes=(IngestionNote(NoteSeverity.WARNING, NoteCode.MALFORMED, "sr", "bad group"),)))
    snap = build_snapshot(source, PID, as_of=AS_OF, deadline=Deadline(5), imaging=loader)
    assert loader.calls == [{"ids": ["MRN-1"], "uids": ["1.2.3"], "as_of": AS_OF}]
    assert [(s.study_instance_uid, s.source.kind.value) for s in snap.imaging_studies] == [
        ("1.2.3", "fhir"), ("4.5.6", "dicom")]
    merged = snap.imaging_studies[0]
    assert merged.dicomweb_endpoint == "http://pacs.example.org/dicom-web" and merged.description == "LDCT"
    assert snap.last_ct_date == date(2024, 6, 1) and len(snap.nodule_tracks) == 1
    assert snap.state_of("fhir") is SourceState.OK and snap.state_of(PACS_SYSTEM) is SourceState.OK
    assert [n.message for n in snap.notes] == ["bad group"]


def test_a_pacs_outage_is_recorded_not_raised(source: FileFhirSource) -> None:
    loader = Loader(UpstreamUnavailable("pacs", "connection refused"))
    snap = build_snapshot(source, PID, as_of=AS_OF, deadline=Deadline(5), imaging=loader)
    assert snap.state_of(PACS_SYSTEM) is SourceState.UNAVAILABLE and snap.has_errors
    assert snap.smoking is not None  # the FHIR part is intact
    (note,) = [n for n in snap.notes if n.severity is NoteSeverity.ERROR]
    assert note.code is NoteCode.UPSTREAM_UNAVAILABLE and "absence of nodules means nothing" in note.message


def test_imaging_status_from_the_pipeline_is_kept(source: FileFhirSource) -> None:
    partial = SourceStatus(PACS_SYSTEM, SourceState.PARTIAL, "one study timed out")
    snap = build_snapshot(source, PID, as_of=AS_OF, deadline=Deadline(5), imaging=Loader(Imaging(status=partial)))
    assert snap.state_of(PACS_SYSTEM) is SourceState.PARTIAL


def test_no_identifiers_and_fhir_down_means_pacs_not_searched(tmp_path: Path) -> None:
    import socket

    from risk.sources.fhir_rest import RestFhirSource
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    loader = Loader(Imaging())
    with RestFhirSource(f"http://127.0.0.1:{port}/fhir", retries=0) as down:
        snap = build_snapshot(down, PID, as_of=AS_OF, deadline=Deadline(5), imaging=loader)
    assert loader.calls == []
    assert snap.state_of("fhir") is SourceState.UNAVAILABLE and snap.state_of(PACS_SYSTEM) is SourceState.UNAVAILABLE


def test_pacs_imaging_adapter_calls_the_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    seen: dict = {}

    def load_imaging(source: object, cache: object, **kw: object) -> Imaging:
        seen.update(source=source, cache=cache, **kw)
        return Imaging()

    module = types.ModuleType("risk.imaging.pipeline")
    module.load_imaging = load_imaging  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "risk.imaging.pipeline", module)
    loader = pacs_imaging("dicom-source", "cache")
    deadline = Deadline(1)
    assert loader(dicom_patient_ids=["M"], study_uids=["1"], as_of=AS_OF, deadline=deadline) == Imaging()
    assert seen == {"source": "dicom-source", "cache": "cache", "dicom_patient_ids": ["M"], "study_uids": ["1"],
                    "as_of": AS_OF, "deadline": deadline}


@pytest.mark.slow
def test_end_to_end_with_the_real_imaging_pipeline(tmp_path: Path) -> None:
    """A synthetic cohort with DICOM: FHIR from its bundles, imaging from its DICOM folder through
    risk.imaging.pipeline.load_imaging (matched by MRN = DICOM PatientID and by ImagingStudy UIDs)."""
    import json

    import polars as pl

    from risk.sources.dicomweb import DicomFolderSource
    from risk.synth import SynthOptions, generate

    generate(SynthOptions(out=tmp_path, patients=3, seed=11, workers=1))
    as_of = date.fromisoformat(json.loads((tmp_path / "manifest.json").read_text())["as_of"])
    fhir = FileFhirSource(tmp_path / "fhir" / "bundles")
    imaging = pacs_imaging(DicomFolderSource(tmp_path / "dicom"))
    studies = pl.read_parquet(tmp_path / "truth" / "studies.parquet").filter(pl.col("study_date") <= as_of)
    nodules = pl.read_parquet(tmp_path / "truth" / "nodules.parquet")
    for pid in fhir.patient_ids():
        snap = build_snapshot(fhir, pid, as_of=as_of, deadline=Deadline(60), imaging=imaging)
        assert snap.state_of("fhir") is SourceState.OK and snap.state_of(PACS_SYSTEM) is SourceState.OK, snap.notes
        expected = set(studies.filter(pl.col("patient_id") == pid)["study_instance_uid"].to_list())
        assert {s.study_instance_uid for s in snap.imaging_studies} == expected
        assert all(s.dicomweb_endpoint for s in snap.imaging_studies)  # FHIR's Endpoint kept after the merge
        assert snap.last_ct_date == max(studies.filter(pl.col("patient_id") == pid)["study_date"].to_list())
        seen = nodules.filter((pl.col("patient_id") == pid) & pl.col("detected_by_ai")
                              & (pl.col("study_date") <= as_of))
        assert bool(snap.nodule_tracks) == (seen.height > 0), f"{pid}: the SRs' nodules should form tracks"
        observed = {o.study_instance_uid for t in snap.nodule_tracks for o in t.observations}
        assert observed == set(seen["study_instance_uid"].to_list())
