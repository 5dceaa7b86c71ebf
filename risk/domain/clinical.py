"""Clinical facts from the EHR: measured values, labs, conditions and family history."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from risk.codes import Code
from risk.domain._checks import optional_finite, require_date, require_finite, require_text
from risk.domain._value import value_type
from risk.domain.provenance import SourceRef


@value_type
class ObservedValue:
    """A numeric value in a named UCUM unit, with its source (e.g. BMI in kg/m2)."""

    value: float
    unit: str
    source: SourceRef

    def __post_init__(self) -> None:
        require_finite("value", self.value)
        require_text("unit", self.unit)

    @property
    def effective(self) -> date | None:
        return self.source.effective


@value_type
class EducationLevel:
    """PLCOm2012 education level 1-6 (1 < high school … 6 postgraduate), with its source."""

    level: int
    source: SourceRef

    def __post_init__(self) -> None:
        if isinstance(self.level, bool) or not isinstance(self.level, int) or not 1 <= self.level <= 6:
            raise ValueError(f'Argument "level" must be an integer 1-6, got {self.level!r}.')


@value_type
class LabResult:
    """One laboratory or spirometry result, already converted to the panel's canonical UCUM unit."""

    code: Code
    value: float
    unit: str
    effective: date
    source: SourceRef
    reference_low: float | None = None
    reference_high: float | None = None
    original_unit: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.code, Code):
            raise TypeError('Argument "code" must be a risk.codes.Code.')
        require_finite("value", self.value)
        require_text("unit", self.unit)
        require_date("effective", self.effective)
        optional_finite("reference_low", self.reference_low)
        optional_finite("reference_high", self.reference_high)


class ConditionKind(StrEnum):
    """The conditions the models use (codes in risk/codes.py; mapping in risk/extract/)."""

    COPD = "copd"
    EMPHYSEMA = "emphysema"
    PERSONAL_HISTORY_OF_CANCER = "personal_history_of_cancer"
    LUNG_CANCER = "lung_cancer"
    IMMUNOCOMPROMISED = "immunocompromised"


@value_type
class ConditionFact:
    """A condition the patient has or had, with the code it was recognised by."""

    kind: ConditionKind
    code: str
    system: str
    source: SourceRef
    onset: date | None = None
    active: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.kind, ConditionKind):
            raise TypeError('Argument "kind" must be a ConditionKind.')
        require_text("code", self.code)
        require_text("system", self.system)
        require_date("onset", self.onset, optional=True)


@value_type
class FamilyHistoryFact:
    """Lung cancer in a relative (FamilyMemberHistory)."""

    relationship: str
    first_degree: bool
    source: SourceRef
    onset_age_years: float | None = None

    def __post_init__(self) -> None:
        require_text("relationship", self.relationship)
        optional_finite("onset_age_years", self.onset_age_years, low=0, high=130)
