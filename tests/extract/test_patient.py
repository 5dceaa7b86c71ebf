from datetime import date

import pytest

from risk import codes
from risk.domain.patient import AdministrativeSex, RaceEthnicity
from risk.domain.provenance import IngestionNote, NoteCode
from risk.extract.notes import NoteSink
from risk.extract.patient import PatientFacts, extract_patient
from tests.extract.builders import patient

AS_OF = date(2025, 1, 1)


def facts(resource: dict | None) -> tuple[PatientFacts, list[IngestionNote]]:
    notes = NoteSink()
    return extract_patient(resource, AS_OF, notes), notes.notes


def test_demographics_and_identifiers() -> None:
    result, notes = facts(patient(birth="1960-05-20", gender="male", races=(codes.OMB_WHITE,)))
    d = result.demographics
    assert d is not None and notes == []
    assert (d.birth_date, d.sex, d.race_ethnicity, d.age_years(AS_OF)) == (
        date(1960, 5, 20), AdministrativeSex.MALE, RaceEthnicity.WHITE, 64)
    assert d.identifier("urn:oid:1.2.3") == "MRN-1"
    assert result.medical_record_numbers == ("MRN-1",)  # only the MR-typed identifier
    assert d.source.reference == "Patient/pat-1"


def test_all_identifiers_used_for_imaging_when_none_is_typed_mr() -> None:
    p = patient()
    for ident in p["identifier"]:
        ident.pop("type", None)
    assert facts(p)[0].medical_record_numbers == ("MRN-1", "999-99-9999")


@pytest.mark.parametrize(("races", "ethnicity", "expected"), [
    ((codes.OMB_BLACK,), codes.OMB_HISPANIC, RaceEthnicity.HISPANIC),  # Hispanic ethnicity takes precedence
    ((codes.OMB_BLACK,), codes.OMB_NOT_HISPANIC, RaceEthnicity.BLACK),
    ((codes.OMB_ASIAN,), None, RaceEthnicity.ASIAN),
    ((codes.OMB_AIAN,), None, RaceEthnicity.AMERICAN_INDIAN_ALASKA_NATIVE),
    ((codes.OMB_NHPI,), None, RaceEthnicity.NATIVE_HAWAIIAN_PACIFIC_ISLANDER),
    ((), codes.OMB_HISPANIC, RaceEthnicity.HISPANIC),
    ((), None, None),
])
def test_plco_race_ethnicity_group(races: tuple, ethnicity: codes.Code | None, expected: RaceEthnicity | None) -> None:
    d = facts(patient(races=races, ethnicity=ethnicity))[0].demographics
    assert d is not None and d.race_ethnicity is expected


def test_several_races_give_no_group_with_a_note() -> None:
    result, notes = facts(patient(races=(codes.OMB_WHITE, codes.OMB_ASIAN)))
    assert result.demographics is not None and result.demographics.race_ethnicity is None
    assert [n.code for n in notes] == [NoteCode.UNSUPPORTED]


def test_partial_birth_date_and_unknown_gender() -> None:
    d = facts(patient(birth="1958", gender="bogus"))[0].demographics
    assert d is not None and d.birth_date == date(1958, 1, 1) and d.sex is AdministrativeSex.UNKNOWN


@pytest.mark.parametrize(("birth", "code"), [(None, NoteCode.MISSING_VALUE), ("05/20/1960", NoteCode.MISSING_VALUE),
                                             ("2026-01-01", NoteCode.OUT_OF_RANGE)])
def test_unusable_birth_date_gives_no_demographics(birth: str | None, code: NoteCode) -> None:
    result, notes = facts(patient(birth=birth))
    assert result.demographics is None and result.medical_record_numbers == ("MRN-1",)
    assert [n.code for n in notes] == [code]


def test_no_patient_resource() -> None:
    assert facts(None) == (extract_patient(None, AS_OF, NoteSink()), [])
