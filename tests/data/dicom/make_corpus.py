"""Writes the broken-input DICOM corpus (tests/data/dicom/corpus/) and its expectations (expected.json).

Each case is one vendor-style TID 1500 SR (highdicom-built, then damaged) of patient LC-BROKEN-1, in its own
study, except ``duplicate_report`` which repeats ``baseline`` in the same study under a new SOP Instance UID.
expected.json lists, per case, the SOP Instance UID and the notes ingestion must record (severity, code, a
phrase of the message) and how many nodule observations survive. Regenerate with

    .venv/bin/python -m tests.data.dicom.make_corpus

(UIDs are derived from the case names, so regeneration gives the same UIDs; highdicom's own random UIDs, e.g.
the observer device UID, differ.)
"""

from __future__ import annotations

import copy
import json
import shutil
from datetime import date
from pathlib import Path
from typing import Any

from pydicom.uid import generate_uid

from risk import codes
from tests.support.dicom_factory import (
    UID_PREFIX,
    NoduleSpec,
    make_ct_series,
    make_sr,
    quirk,
    remove_groups,
    remove_value,
    set_finding,
    set_relationship,
    set_unit,
    strip_template_ids,
    strip_tracking_uids,
    to_srt,
)

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"
PATIENT = "LC-BROKEN-1"


def _uid(*parts: str) -> str:
    return generate_uid(prefix=UID_PREFIX, entropy_srcs=["lungrisk-broken-corpus", *parts])


def _case(name: str, day: date, specs: list[NoduleSpec]) -> Any:
    ct = make_ct_series(patient_id=PATIENT, study_date=day, study_instance_uid=_uid(name, "study"),
                        frame_of_reference_uid=_uid(name, "frame"))
    return make_sr(ct, specs, sop_instance_uid=_uid(name, "sr"), series_instance_uid=_uid(name, "sr-series"))


def _nodule(k: int = 1, **kw: Any) -> NoduleSpec:
    base: dict[str, Any] = {"diameter_mm": 7.0, "volume_mm3": 180.0, "tracking_uid": _uid("nodule", str(k)),
                            "tracking_identifier": f"Nodule {k}"}
    base.update(kw)
    return NoduleSpec((float(5 * k), 2.0, -5.0), **base)


def _retitle(code_item: Any) -> None:
    code_item.CodeValue, code_item.CodingSchemeDesignator = "18748-4", "LN"
    code_item.CodeMeaning = "Diagnostic imaging report"


def main() -> None:
    shutil.rmtree(CORPUS, ignore_errors=True)
    CORPUS.mkdir(parents=True)
    cases: dict[str, dict[str, Any]] = {}

    def save(name: str, ds: Any, observations: int | None, notes: list[tuple[str, str, str]], data: bytes | None = None,
             ) -> None:
        path = CORPUS / f"{name}.dcm"
        if data is None:
            ds.save_as(path, enforce_file_format=True)
        else:
            path.write_bytes(data)
        cases[name] = {"file": path.name, "sop_instance_uid": str(ds.SOPInstanceUID), "observations": observations,
                       "notes": [{"severity": s, "code": c, "contains": m} for s, c, m in notes]}

    baseline = _case("baseline", date(2021, 3, 1), [_nodule(1), _nodule(2, lobe="LLL")])
    save("baseline", baseline, 2, [])

    duplicate = copy.deepcopy(baseline)
    duplicate.SOPInstanceUID = duplicate.file_meta.MediaStorageSOPInstanceUID = _uid("duplicate_report", "sr")
    save("duplicate_report", duplicate, 0, [("info", "duplicate", "nodule reported twice")])
    # Which copy survives is not specified: the notes may name either SR, and the two count together.
    cases["duplicate_report"]["observations"] = None
    cases["duplicate_report"]["sources"] = [cases["duplicate_report"]["sop_instance_uid"],
                                            cases["baseline"]["sop_instance_uid"]]
    cases["baseline"]["counted_with"] = ["duplicate_report"]

    truncated = _case("truncated", date(2021, 9, 1), [_nodule(1), _nodule(2, lobe="LLL")])
    buffer = CORPUS / "tmp.dcm"
    truncated.save_as(buffer, enforce_file_format=True)
    raw = buffer.read_bytes()
    buffer.unlink()
    save("truncated", truncated, 0, [("warning", "malformed", "truncated")], data=raw[: len(raw) * 3 // 5])

    wrong = quirk(_case("wrong_relationships", date(2022, 3, 1), [_nodule(1)]),
                  lambda d: set_relationship(d, codes.FINDING_SITE.code, "CONTAINS"),
                  lambda d: set_relationship(d, codes.TRACKING_UNIQUE_IDENTIFIER.code, "CONTAINS"))
    save("wrong_relationships", wrong, 1, [("info", "malformed", "relationship type other than TID 1500 requires")])

    no_value = quirk(_case("num_without_value", date(2022, 9, 1), [_nodule(1)]),
                     lambda d: remove_value(d, codes.VOLUME.code))
    save("num_without_value", no_value, 1, [("warning", "missing-value", "Volume has no numeric value"),
                                            ("info", "malformed", "highdicom's TID 1500 parser rejected")])

    empty = quirk(_case("num_without_value_only", date(2022, 10, 1), [_nodule(1, diameter_mm=None)]),
                  lambda d: remove_value(d, codes.VOLUME.code))
    save("num_without_value_only", empty, 0, [("warning", "missing-value", "Volume has no numeric value"),
                                              ("warning", "missing-value", "nodule group not usable")])

    unknown = quirk(_case("unknown_codes", date(2023, 3, 1), [_nodule(1), _nodule(2)]),
                    lambda d: set_finding(d, "LN-NOD", "99VENDOR", "Lung nodule (vendor)", 0),
                    lambda d: set_finding(d, "87433001", "SCT", "Pulmonary emphysema", 1))
    save("unknown_codes", unknown, 1, [("info", "unknown-code", "unknown scheme; read as a nodule"),
                                       ("info", "unknown-code", "private or unknown coding schemes"),
                                       ("info", "unsupported", "not a lung nodule")])

    legacy = quirk(_case("legacy_srt", date(2023, 9, 1), [_nodule(1)]), to_srt)
    save("legacy_srt", legacy, 1, [("info", "code-normalised", "G-D705→118565006")])

    untracked = quirk(_case("missing_tracking_uid", date(2024, 3, 1), [_nodule(1)]), strip_tracking_uids)
    save("missing_tracking_uid", untracked, 1, [("info", "missing-value", "without a Tracking Unique Identifier")])

    templates = quirk(_case("no_template_ids", date(2024, 9, 1), [_nodule(1)]), strip_template_ids)
    save("no_template_ids", templates, 1, [("info", "malformed", "no Template Identifier 1500"),
                                           ("info", "malformed", "measurement groups without Template Identifier")])

    units = quirk(_case("unit_mismatch", date(2025, 3, 1), [_nodule(1)]),
                  lambda d: set_unit(d, codes.VOLUME.code, "kg"), lambda d: set_unit(d, codes.DIAMETER.code, "cm", 0.7))
    save("unit_mismatch", units, 1, [("warning", "unit-mismatch", "cannot be converted"),
                                     ("info", "unit-converted", "Diameter cm→mm")])

    scoord = _case("scoord_without_image", date(2025, 9, 1), [_nodule(1, roi="circle2d")])
    save("scoord_without_image", scoord, 1, [("info", "missing-value", "could not be placed in patient coordinates")])

    other = quirk(_case("not_a_measurement_report", date(2026, 1, 5), [_nodule(1)]),
                  remove_groups, lambda d: _retitle(d.ConceptNameCodeSequence[0]))
    save("not_a_measurement_report", other, 0, [("info", "unsupported", "not an Imaging Measurement Report")])

    (CORPUS / "not_dicom.dcm").write_bytes(b"This is not a DICOM file.\n" * 8)
    expected = {"patient_id": PATIENT, "cases": cases, "index_problems": ["not_dicom.dcm"]}
    (HERE / "expected.json").write_text(json.dumps(expected, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {len(cases)} cases to {CORPUS}")


if __name__ == "__main__":
    main()
