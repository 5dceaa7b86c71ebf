"""The broken-input corpus (tests/data/dicom): each damaged SR leaves its expected note, nothing raises, the rest
is used. The corpus and expected.json are written by tests/data/dicom/make_corpus.py."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from risk.deadline import Deadline
from risk.domain import NoteSeverity, SourceState
from risk.imaging.pipeline import ImagingResult, load_imaging
from risk.sources.dicomweb import DicomFolderSource

DATA = Path(__file__).resolve().parents[1] / "data" / "dicom"
EXPECTED: dict[str, Any] = json.loads((DATA / "expected.json").read_text())


@pytest.fixture(scope="module")
def result() -> ImagingResult:
    return load_imaging(DicomFolderSource(DATA / "corpus"), None, dicom_patient_ids=[EXPECTED["patient_id"]],
                        study_uids=[], as_of=date(2026, 6, 30), deadline=Deadline(60))


def test_the_corpus_is_read_without_an_outage(result: ImagingResult) -> None:
    assert result.status.state is SourceState.OK
    assert not [n for n in result.notes if n.severity is NoteSeverity.ERROR]
    assert len(result.studies) == len(EXPECTED["cases"]) - 1  # duplicate_report shares baseline's study


def test_unreadable_files_are_listed() -> None:
    source = DicomFolderSource(DATA / "corpus")
    assert sorted(p.name for p, _ in source.index_problems) == EXPECTED["index_problems"]


def _sources(case: dict[str, Any]) -> list[str]:
    return [f"urn:dicom:uid:{uid}" for uid in case.get("sources", [case["sop_instance_uid"]])]


@pytest.mark.parametrize("name", sorted(EXPECTED["cases"]))
def test_case_leaves_its_expected_notes(result: ImagingResult, name: str) -> None:
    case = EXPECTED["cases"][name]
    sources = _sources(case)
    mine = [n for n in result.notes if any(n.source.startswith(s) for s in sources)]
    for expected in case["notes"]:
        assert any(n.severity.value == expected["severity"] and n.code.value == expected["code"]
                   and expected["contains"] in n.message for n in mine), (
            f"{name}: no {expected} among {[(n.severity.value, n.code.value, n.message) for n in mine]}")
    if not case["notes"]:
        assert not [n for n in mine if n.severity is not NoteSeverity.INFO], mine


@pytest.mark.parametrize("name", sorted(n for n, c in EXPECTED["cases"].items() if c["observations"] is not None))
def test_case_keeps_what_is_usable(result: ImagingResult, name: str) -> None:
    case = EXPECTED["cases"][name]
    together = [case, *(EXPECTED["cases"][other] for other in case.get("counted_with", []))]
    refs = {f"urn:dicom:uid:{c['sop_instance_uid']}" for c in together}
    kept = [o for t in result.tracks for o in t.observations if o.source.reference in refs]
    assert len(kept) == case["observations"]
