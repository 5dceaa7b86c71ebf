"""Every code constant is well formed and, where a mechanical check exists, passes it."""

from __future__ import annotations

import pytest
from pydicom.sr.codedict import codes as dicom_codes

from risk import codes
from risk.codes import Code, loinc_check_digit_ok, snomed_check_digit_ok

ALL = codes.all_codes()


def test_there_are_codes() -> None:
    assert len(ALL) > 80


@pytest.mark.parametrize(("name", "code"), [(n, c) for n, c in ALL if c.system == codes.LOINC])
def test_loinc_check_digits(name: str, code: Code) -> None:
    assert loinc_check_digit_ok(code.code), f"{name} = {code.code} fails the LOINC mod-10 check digit"


@pytest.mark.parametrize(("name", "code"), [(n, c) for n, c in ALL if c.system == codes.SNOMED])
def test_snomed_check_digits(name: str, code: Code) -> None:
    assert snomed_check_digit_ok(code.code), f"{name} = {code.code} fails the SNOMED CT Verhoeff check"


@pytest.mark.parametrize("bad", ["8664-7", "63640-6", "72166-3", "72166", "abc-1", ""])
def test_loinc_check_digit_rejects_commonly_quoted_wrong_codes(bad: str) -> None:
    # 8664-7 and 63640-6 are quoted for smoking in briefs but fail the check digit (interop.md §3.2).
    assert not loinc_check_digit_ok(bad)


@pytest.mark.parametrize("good", ["72166-2", "8664-5", "39156-5", "11367-0"])
def test_loinc_check_digit_accepts_real_codes(good: str) -> None:
    assert loinc_check_digit_ok(good)


@pytest.mark.parametrize("bad", ["13645006", "401201004", "012345", "12a45", "1"])
def test_snomed_check_rejects_corrupted_ids(bad: str) -> None:
    assert not snomed_check_digit_ok(bad)


def _pydicom_lookup(scheme: str, value: str) -> str | None:
    scheme_dict = getattr(dicom_codes, scheme)
    for keyword in dir(scheme_dict):
        try:
            concept = getattr(scheme_dict, keyword)
        except Exception:
            continue
        if getattr(concept, "value", None) == value:
            return str(concept.meaning)
    return None


@pytest.mark.parametrize(
    ("name", "code"),
    [(n, c) for n, c in ALL if (c.verified.startswith("pydicom.sr.codedict") and c.system != codes.DCM)
     or (c.system == codes.DCM and c.code.isdigit())],
)
def test_dicom_codes_exist_in_pydicom_dictionary(name: str, code: Code) -> None:
    scheme = codes.DICOM_SCHEME_BY_SYSTEM[code.system]
    meaning = _pydicom_lookup(scheme, code.code)
    assert meaning is not None, f"{name}: {scheme} {code.code} not in pydicom.sr.codedict"


def test_code_converts_to_fhir_and_dicom() -> None:
    assert codes.SMOKING_STATUS.coding() == {"system": "http://loinc.org", "code": "72166-2",
                                             "display": "Tobacco smoking status"}
    concept = codes.NODULE.dicom()
    assert (concept.value, concept.scheme_designator) == ("27925004", "SCT")


@pytest.mark.parametrize(("field", "kwargs"), [
    ("system", {"system": "", "code": "1", "display": "x"}),
    ("code", {"system": "s", "code": " 1", "display": "x"}),
    ("display", {"system": "s", "code": "1", "display": ""}),
])
def test_code_validation_names_the_argument(field: str, kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=field):
        Code(**kwargs)


def test_codes_are_unique_per_system() -> None:
    seen: dict[tuple[str, str], str] = {}
    for name, code in ALL:
        key = (code.system, code.code)
        if key in seen and not name.startswith("LUNG_RADS_CATEGORY_CODES"):
            assert seen[key] == name or name.startswith("LOBES["), f"{name} duplicates {seen[key]}"
        seen.setdefault(key, name)
