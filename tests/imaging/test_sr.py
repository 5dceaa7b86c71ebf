"""TID 1500 parsing: every field of a vendor-style SR, both readers agree, and each quirk leaves its note."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from risk import codes
from risk.domain import Lobe, Margin, NoduleComposition, NoteCode, NoteSeverity
from risk.imaging.geometry import StaticGeometry
from risk.imaging.sr import SrParseResult, parse_measurement_report
from tests.support.dicom_factory import (
    NoduleSpec,
    groups,
    make_ct_series,
    make_sr,
    quirk,
    remove_groups,
    remove_value,
    roundtrip,
    set_finding,
    set_relationship,
    set_unit,
    strip_template_ids,
    strip_tracking_uids,
    to_srt,
)

CT = make_ct_series(study_date=date(2024, 3, 5))
GEOMETRY = StaticGeometry.from_datasets(CT)
UID_A = "1.2.826.0.1.3680043.8.498.1001"

FULL = NoduleSpec((1.0, 2.0, -5.0), diameter_mm=9.1, long_axis_mm=9.5, short_axis_mm=7.0, volume_mm3=402.0,
                  solid_component_mm=4.0, solidness=codes.PART_SOLID, margin=codes.MARGIN_SPICULATED, lobe="RUL",
                  probability=0.31, tracking_uid=UID_A, tracking_identifier="Nodule A")
CIRCLE = NoduleSpec((-5.0, 3.0, 0.0), diameter_mm=6.0, roi="circle2d", lobe="LLL", lobe_style="cid6170",
                    solidness=codes.SOLID, tracking_identifier="Nodule B")
VOLUMETRIC = NoduleSpec((4.0, -3.0, 5.0), diameter_mm=5.0, volume_mm3=60.0, roi="volumetric2d", lobe="RML",
                        solidness=codes.NON_SOLID, margin=codes.MARGIN_SMOOTH, tracking_identifier="Nodule C")


def parse(sr: Dataset, **kwargs: object) -> SrParseResult:
    return parse_measurement_report(roundtrip(sr), **{"geometry": GEOMETRY, **kwargs})  # type: ignore[arg-type]


def codes_of(result: SrParseResult, severity: NoteSeverity | None = None) -> set[NoteCode]:
    return {n.code for n in result.notes if severity is None or n.severity is severity}


def messages(result: SrParseResult) -> str:
    return "\n".join(n.message for n in result.notes)


@pytest.fixture(scope="module")
def sr() -> Dataset:
    return make_sr(CT, [FULL, CIRCLE, VOLUMETRIC])


@pytest.fixture(scope="module")
def parsed(sr: Dataset) -> SrParseResult:
    return parse(sr)


def test_every_field_of_a_planar_scoord3d_group(parsed: SrParseResult, sr: Dataset) -> None:
    a = parsed.observations[0]
    assert parsed.is_measurement_report
    assert (a.diameter_mm, a.long_axis_mm, a.short_axis_mm, a.volume_mm3) == (9.1, 9.5, 7.0, 402.0)
    assert a.solid_component_mm == 4.0
    assert a.composition is NoduleComposition.PART_SOLID
    assert a.margin is Margin.SPICULATED and a.spiculated
    assert a.lobe is Lobe.RUL
    assert a.ai_malignancy_probability == pytest.approx(0.31)
    assert (a.tracking_uid, a.tracking_identifier) == (UID_A, "Nodule A")
    assert (a.algorithm_name, a.algorithm_version) == ("LungNoduleAI", "2.3.1")
    assert a.position is not None
    assert (a.position.x_mm, a.position.y_mm, a.position.z_mm) == (1.0, 2.0, -5.0)
    assert a.position.frame_of_reference_uid == CT[0].FrameOfReferenceUID
    assert a.study_instance_uid == CT[0].StudyInstanceUID and a.study_date == date(2024, 3, 5)
    assert a.source.reference == f"urn:dicom:uid:{sr.SOPInstanceUID}"
    # key slice: the CT slice through z = -5 (origin -15, 2.5 mm slices → instance 5)
    assert a.slice_sop_instance_uid == CT[4].SOPInstanceUID
    assert a.series_instance_uid == CT[0].SeriesInstanceUID


def test_scoord_circle_is_placed_in_patient_coordinates(parsed: SrParseResult) -> None:
    b = parsed.observations[1]
    assert b.position is not None
    assert (b.position.x_mm, b.position.y_mm, b.position.z_mm) == pytest.approx((-5.0, 3.0, 0.0))
    assert b.slice_sop_instance_uid == CT[6].SOPInstanceUID  # the referenced image
    assert b.lobe is Lobe.LLL  # CID 6170 "Lower lobe of lung" + Laterality Left
    assert b.composition is NoduleComposition.SOLID and b.tracking_identifier == "Nodule B"


def test_volumetric_group_centre_is_the_mean_of_its_regions(parsed: SrParseResult) -> None:
    c = parsed.observations[2]
    assert c.position is not None
    assert (c.position.x_mm, c.position.y_mm, c.position.z_mm) == pytest.approx((4.0, -3.0, 5.0))
    assert (c.volume_mm3, c.composition, c.margin, c.lobe) == (60.0, NoduleComposition.NONSOLID, Margin.SMOOTH,
                                                              Lobe.RML)


def test_well_formed_sr_has_no_warnings(parsed: SrParseResult) -> None:
    assert not codes_of(parsed, NoteSeverity.WARNING) and not codes_of(parsed, NoteSeverity.ERROR)
    assert "rejected" not in messages(parsed)  # highdicom's parser was used


def test_content_tree_walk_reads_what_highdicom_reads(sr: Dataset, parsed: SrParseResult) -> None:
    # Without the root Template Identifier highdicom does not recognise TID 1500: the walk reads the tree.
    walked = parse(quirk(sr, lambda d: d.__delattr__("ContentTemplateSequence")))
    assert "rejected" in messages(walked) and "content tree was read directly" in messages(walked)
    assert walked.observations == parsed.observations
    fast = parse(sr, reader="walk")
    assert fast.observations == parsed.observations and "rejected" not in messages(fast)


def test_missing_template_identifiers(sr: Dataset, parsed: SrParseResult) -> None:
    result = parse(quirk(sr, strip_template_ids))
    assert result.observations == parsed.observations
    assert "no Template Identifier 1500" in messages(result)
    assert "measurement groups without Template Identifier" in messages(result)
    assert codes_of(result) == {NoteCode.MALFORMED}


def test_legacy_srt_codes_are_normalised(sr: Dataset, parsed: SrParseResult) -> None:
    legacy = quirk(sr, to_srt)
    assert any(i.ConceptNameCodeSequence[0].CodingSchemeDesignator == "SRT" for i in groups(legacy)[0].ContentSequence)
    result = parse(legacy)
    assert result.observations == parsed.observations
    note = next(n for n in result.notes if n.code is NoteCode.CODE_NORMALISED)
    assert "G-D705→118565006" in note.message and note.severity is NoteSeverity.INFO


def test_missing_tracking_uids_keep_the_observations(sr: Dataset, parsed: SrParseResult) -> None:
    result = parse(quirk(sr, strip_tracking_uids))
    assert [o.tracking_uid for o in result.observations] == [None, None, None]
    assert [replace(o, tracking_uid=None) for o in parsed.observations] == list(result.observations)
    assert "without a Tracking Unique Identifier" in messages(result)


def test_scoord_without_image_geometry_has_no_position(sr: Dataset) -> None:
    result = parse(sr, geometry=None)
    b = result.observations[1]
    assert b.position is None and b.diameter_mm == 6.0
    assert "could not be placed in patient coordinates" in messages(result)
    # SCOORD3D needs no geometry
    assert result.observations[0].position is not None


def test_wrong_relationship_types_are_noted_and_values_used(sr: Dataset, parsed: SrParseResult) -> None:
    def mutate(d: Dataset) -> None:
        set_relationship(d, codes.FINDING_SITE.code, "CONTAINS", 0)
        set_relationship(d, codes.DIAMETER.code, "HAS PROPERTIES", 0)
    result = parse(quirk(sr, mutate))
    assert result.observations == parsed.observations
    note = next(n for n in result.notes if "relationship type" in n.message)
    assert note.code is NoteCode.MALFORMED
    assert "Finding Site: CONTAINS, expected HAS CONCEPT MOD" in note.message
    assert "Diameter: HAS PROPERTIES, expected CONTAINS" in note.message


def test_num_without_value(sr: Dataset, parsed: SrParseResult) -> None:
    result = parse(quirk(sr, lambda d: remove_value(d, codes.VOLUME.code, 0)))
    a = result.observations[0]
    assert a.volume_mm3 is None and a.diameter_mm == 9.1
    assert result.observations[1:] == parsed.observations[1:]
    missing = [n for n in result.notes if n.code is NoteCode.MISSING_VALUE and n.severity is NoteSeverity.WARNING]
    assert len(missing) == 1 and "Volume has no numeric value" in missing[0].message
    assert missing[0].source.endswith("#group-1")
    assert "highdicom's TID 1500 parser rejected" in messages(result)


def test_unit_conversion_and_mismatch(sr: Dataset) -> None:
    def mutate(d: Dataset) -> None:
        set_unit(d, codes.DIAMETER.code, "cm", 0.91, 0)
        set_unit(d, codes.VOLUME.code, "kg", None, 0)
        set_unit(d, codes.PROBABILITY_OF_CANCER.code, "%", 31.0, 0)
    result = parse(quirk(sr, mutate))
    a = result.observations[0]
    assert a.diameter_mm == pytest.approx(9.1)
    assert a.volume_mm3 is None
    assert a.ai_malignancy_probability == pytest.approx(0.31)
    assert NoteCode.UNIT_MISMATCH in codes_of(result, NoteSeverity.WARNING)
    assert NoteCode.UNIT_CONVERTED in codes_of(result, NoteSeverity.INFO)


def test_out_of_range_and_conflicting_values(sr: Dataset) -> None:
    def mutate(d: Dataset) -> None:
        set_unit(d, codes.DIAMETER.code, "mm", 950.0, 0)
        set_unit(d, codes.SHORT_AXIS.code, "mm", 12.0, 0)
        set_unit(d, codes.PROBABILITY_OF_CANCER.code, "1", 1.7, 0)
    result = parse(quirk(sr, mutate))
    a = result.observations[0]
    assert a.diameter_mm is None and a.short_axis_mm is None and a.long_axis_mm == 9.5
    assert a.ai_malignancy_probability is None
    assert {NoteCode.OUT_OF_RANGE, NoteCode.CONFLICT} <= codes_of(result, NoteSeverity.WARNING)


def test_unknown_and_non_nodule_findings(sr: Dataset) -> None:
    def mutate(d: Dataset) -> None:
        set_finding(d, "LN-NOD", "99VENDOR", "Lung nodule (vendor code)", 0)
        set_finding(d, "87433001", "SCT", "Pulmonary emphysema", 1)
    result = parse(quirk(sr, mutate))
    assert [o.tracking_identifier for o in result.observations] == ["Nodule A", "Nodule C"]
    text = messages(result)
    assert "is in an unknown scheme; read as a nodule" in text
    assert "Pulmonary emphysema" in text and "not a lung nodule; group skipped" in text
    assert "private or unknown coding schemes" in text


def test_laterality_decides_the_upper_lobe() -> None:
    left = NoduleSpec((1.0, 2.0, -5.0), lobe="LUL", lobe_style="cid6170")
    right = NoduleSpec((3.0, 2.0, -5.0), lobe="RUL", lobe_style="cid6170", tracking_identifier="Nodule 2")
    result = parse(make_sr(CT, [left, right]))
    assert [o.lobe for o in result.observations] == [Lobe.LUL, Lobe.RUL]


def test_sr_without_study_date_uses_the_given_date(sr: Dataset) -> None:
    undated = quirk(sr, lambda d: d.__delattr__("StudyDate"))
    assert parse(undated, study_date=date(2024, 3, 6)).observations[0].study_date == date(2024, 3, 6)
    result = parse(undated)
    assert result.observations == () and NoteCode.MISSING_VALUE in codes_of(result, NoteSeverity.WARNING)


def test_not_a_measurement_report() -> None:
    text_sr = Dataset()
    text_sr.SOPClassUID, text_sr.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.88.11", "1.2.3.4"
    result = parse_measurement_report(text_sr)
    assert not result.is_measurement_report and result.observations == ()
    assert codes_of(result) == {NoteCode.UNSUPPORTED}
    # another title: its measurement groups are still read (with a note); without groups it is not a report
    other = quirk(make_sr(CT, [FULL]), lambda d: setattr(d.ConceptNameCodeSequence[0], "CodeValue", "18748-4"))
    result = parse(other)
    assert len(result.observations) == 1 and "is not Imaging Measurement Report" in messages(result)
    result = parse(quirk(other, remove_groups))
    assert not result.is_measurement_report and NoteCode.UNSUPPORTED in codes_of(result)


def test_report_with_no_nodules_is_still_an_evaluation() -> None:
    result = parse(quirk(make_sr(CT, [FULL]), remove_groups))
    assert result.is_measurement_report and result.observations == ()


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")
def test_never_raises_on_a_corrupt_tree(sr: Dataset) -> None:
    def corrupt(d: Dataset) -> None:
        group = groups(d)[0]
        group.ContentSequence[0].ValueType = "NOT-A-TYPE"
        group.ContentSequence[1].ConceptNameCodeSequence = DicomSequence([])
        del groups(d)[1].ContentSequence[3].ConceptCodeSequence
    result = parse(quirk(sr, corrupt))
    assert result.is_measurement_report
    assert len(result.observations) == 3
    assert NoteCode.MALFORMED in codes_of(result)
    nothing = parse_measurement_report(Dataset())
    assert nothing.observations == () and nothing.notes


def test_geometry_array_graphic_types() -> None:
    from risk.imaging.sr import _centre

    polygon = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0], [0.0, 0.0]])
    assert _centre(polygon, "POLYLINE").tolist() == [1.0, 1.0]
    assert _centre(np.array([[5.0, 5.0], [8.0, 5.0]]), "CIRCLE").tolist() == [5.0, 5.0]
    assert _centre(np.array([[1.0, 1.0, 1.0]]), "POINT").tolist() == [1.0, 1.0, 1.0]
