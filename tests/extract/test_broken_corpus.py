"""The deliberately broken inputs of tests/data/fhir/broken/: each one is recorded as its expected note.

Every case is a Bundle (Patient p1 + the bad resource) ingested as a prefetch or search would deliver it;
``expected.json`` lists, per case, the exact notes (severity, code, source) the snapshot must carry.
Nothing may raise, and nothing else may be noted.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from pathlib import Path

import orjson
import pytest

from risk.deadline import Deadline
from risk.domain.provenance import NoteCode
from risk.domain.snapshot import SourceState
from risk.extract.snapshot import snapshot_from_resources
from risk.snapshots import build_snapshot
from risk.sources.fhir import bundle_resources
from risk.sources.fhir_file import FileFhirSource

BROKEN = Path(__file__).parents[1] / "data" / "fhir" / "broken"
EXPECTED = json.loads((BROKEN / "expected.json").read_text())
AS_OF = date(2025, 1, 1)


@pytest.mark.parametrize("case", sorted(k for k in EXPECTED if k != "truncated-bundle"))
def test_each_broken_input_is_recorded_as_its_note(case: str) -> None:
    resources = bundle_resources(orjson.loads((BROKEN / f"{case}.json").read_bytes()))
    snapshot = snapshot_from_resources(resources, patient_id="p1", as_of=AS_OF)
    got = Counter((n.severity.value, n.code.value, n.source) for n in snapshot.notes)
    assert got == Counter(tuple(n) for n in EXPECTED[case]["expected_notes"]), snapshot.notes


def test_a_truncated_file_is_reported_by_the_source_and_the_patient_is_not_found() -> None:
    source = FileFhirSource(BROKEN / "truncated-bundle.json")
    snapshot = build_snapshot(source, "p1", as_of=AS_OF, deadline=Deadline(5))
    got = Counter((n.severity.value, n.code.value, n.source) for n in snapshot.notes)
    assert got == Counter(tuple(n) for n in EXPECTED["truncated-bundle"]["expected_notes"])
    assert [n.code for n in source.load_notes] == [NoteCode.MALFORMED]
    assert snapshot.demographics is None and snapshot.state_of("fhir") is SourceState.OK


def test_the_good_parts_of_a_broken_bundle_are_kept() -> None:
    resources = bundle_resources(orjson.loads((BROKEN / "duplicate-observations.json").read_bytes()))
    snapshot = snapshot_from_resources(resources, patient_id="p1", as_of=AS_OF)
    assert snapshot.bmi is not None and snapshot.bmi.value == 27.1
    assert snapshot.demographics is not None and snapshot.age_years == 66
