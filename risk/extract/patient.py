"""Patient → Demographics: birth date, administrative sex, PLCOm2012 race/ethnicity group, identifiers.

Race and ethnicity come from the US Core extensions (``us-core-race``, ``us-core-ethnicity``; their
``ombCategory`` sub-extensions carry CDC Race & Ethnicity codes, risk/codes.py). The PLCOm2012 group
follows the PLCO questionnaire: Hispanic or Latino ethnicity (2135-2) takes precedence over race; else
the one OMB race category recorded. Several different OMB races (or none) give no group (None), noted
for several, because PLCOm2012 has no multiracial group; the model then uses its documented fallback.

Identifiers: all identifiers with a system and a value are kept. The ones typed MR (v2-0203) are the
medical record numbers: the PACS uses the MRN as the DICOM PatientID, so imaging is matched by them (by
every identifier when none is typed MR).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType
from typing import Any, Final

from risk import codes
from risk.domain.patient import AdministrativeSex, Demographics, Identifier, RaceEthnicity
from risk.domain.provenance import NoteCode
from risk.extract.fhirjson import clinical_date, codings, items, resource_key, source_ref
from risk.extract.notes import NoteSink

OMB_RACE: Final = MappingProxyType({
    codes.OMB_WHITE.code: RaceEthnicity.WHITE,
    codes.OMB_BLACK.code: RaceEthnicity.BLACK,
    codes.OMB_ASIAN.code: RaceEthnicity.ASIAN,
    codes.OMB_AIAN.code: RaceEthnicity.AMERICAN_INDIAN_ALASKA_NATIVE,
    codes.OMB_NHPI.code: RaceEthnicity.NATIVE_HAWAIIAN_PACIFIC_ISLANDER,
})
SEX: Final = MappingProxyType({s.value: s for s in AdministrativeSex})
MRN_TYPE_CODE: Final = "MR"


@dataclass(frozen=True, slots=True)
class PatientFacts:
    demographics: Demographics | None
    medical_record_numbers: tuple[str, ...]


def omb_categories(patient: Mapping[str, Any], url: str) -> list[str]:
    """The ``ombCategory`` codes of the US Core extension ``url`` (in the CDC race & ethnicity system)."""
    out: list[str] = []
    for ext in items(patient, "extension"):
        if not isinstance(ext, dict) or ext.get("url") != url:
            continue
        for sub in items(ext, "extension"):
            if isinstance(sub, dict) and sub.get("url") == "ombCategory":
                coding = sub.get("valueCoding")
                if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                    out.append(coding["code"])
    return out


def race_ethnicity(patient: Mapping[str, Any]) -> tuple[RaceEthnicity | None, list[str]]:
    """The PLCOm2012 group and the distinct OMB races seen (for the note when there are several)."""
    if codes.OMB_HISPANIC.code in omb_categories(patient, codes.US_CORE_ETHNICITY_URL):
        return RaceEthnicity.HISPANIC, []
    races = sorted({OMB_RACE[c] for c in omb_categories(patient, codes.US_CORE_RACE_URL) if c in OMB_RACE})
    if len(races) == 1:
        return races[0], []
    return None, [r.value for r in races]


def extract_patient(patient: Mapping[str, Any] | None, as_of: date, notes: NoteSink) -> PatientFacts:
    if patient is None:
        return PatientFacts(None, ())
    ref = resource_key(patient, "#patient")
    identifiers: list[Identifier] = []
    mrns: list[str] = []
    for ident in items(patient, "identifier"):
        if not isinstance(ident, dict):
            continue
        system, value = ident.get("system"), ident.get("value")
        if not (isinstance(system, str) and system and isinstance(value, str) and value.strip()):
            continue
        identifiers.append(Identifier(system, value))
        if any(code == MRN_TYPE_CODE for _s, code in codings(ident.get("type"))):
            mrns.append(value)
    if not mrns:
        mrns = [i.value for i in identifiers]

    raw_birth = patient.get("birthDate")
    birth = clinical_date(raw_birth)
    if birth is None:
        what = "no birthDate" if raw_birth is None else f"unreadable birthDate {raw_birth!r}"
        notes.warning(NoteCode.MISSING_VALUE, ref, f"Patient has {what}: age unknown.")
        return PatientFacts(None, tuple(mrns))
    if birth > as_of:
        notes.warning(NoteCode.OUT_OF_RANGE, ref, f"birthDate {birth.isoformat()} is after {as_of.isoformat()}.")
        return PatientFacts(None, tuple(mrns))
    gender = patient.get("gender")
    sex = SEX.get(gender, AdministrativeSex.UNKNOWN) if isinstance(gender, str) else AdministrativeSex.UNKNOWN
    group, several = race_ethnicity(patient)
    if several:
        notes.info(NoteCode.UNSUPPORTED, ref,
                   f"several OMB races recorded ({', '.join(several)}): no single PLCOm2012 race group.")
    deceased = clinical_date(patient.get("deceasedDateTime"))
    if deceased is not None and deceased < birth:
        notes.warning(NoteCode.MALFORMED, ref, "deceasedDateTime precedes birthDate; ignored.")
        deceased = None
    demographics = Demographics(birth_date=birth, sex=sex, source=source_ref(ref), race_ethnicity=group,
                                identifiers=tuple(identifiers), deceased_date=deceased)
    return PatientFacts(demographics, tuple(dict.fromkeys(mrns)))
