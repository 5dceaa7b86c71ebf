"""Patient demographics as the risk models need them."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from risk.domain._checks import require_date, require_text
from risk.domain._value import value_type
from risk.domain.provenance import SourceRef


class AdministrativeSex(StrEnum):
    """FHIR administrative-gender values."""

    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNKNOWN = "unknown"


class RaceEthnicity(StrEnum):
    """The PLCOm2012 race/ethnicity groups (Tammemägi NEJM 2013), derived from US Core race and ethnicity.

    Hispanic ethnicity takes precedence over race, as in the PLCO questionnaire.
    """

    WHITE = "white"
    BLACK = "black"
    HISPANIC = "hispanic"
    ASIAN = "asian"
    AMERICAN_INDIAN_ALASKA_NATIVE = "american_indian_alaska_native"
    NATIVE_HAWAIIAN_PACIFIC_ISLANDER = "native_hawaiian_pacific_islander"


@value_type
class Identifier:
    """A business identifier (e.g. an MRN) with its system URI."""

    system: str
    value: str

    def __post_init__(self) -> None:
        require_text("system", self.system)
        require_text("value", self.value)


@value_type
class Demographics:
    """Who the patient is, as far as the models care."""

    birth_date: date
    sex: AdministrativeSex
    source: SourceRef
    race_ethnicity: RaceEthnicity | None = None
    identifiers: tuple[Identifier, ...] = ()
    deceased_date: date | None = None

    def __post_init__(self) -> None:
        require_date("birth_date", self.birth_date)
        if not isinstance(self.sex, AdministrativeSex):
            raise TypeError('Argument "sex" must be an AdministrativeSex.')
        if self.race_ethnicity is not None and not isinstance(self.race_ethnicity, RaceEthnicity):
            raise TypeError('Argument "race_ethnicity" must be a RaceEthnicity or None.')
        require_date("deceased_date", self.deceased_date, optional=True)
        if self.deceased_date is not None and self.deceased_date < self.birth_date:
            raise ValueError('Argument "deceased_date" must not precede "birth_date".')

    def age_years(self, as_of: date) -> int:
        """Completed years of age on ``as_of``."""
        if as_of < self.birth_date:
            raise ValueError('Argument "as_of" must not precede the birth date.')
        before_birthday = (as_of.month, as_of.day) < (self.birth_date.month, self.birth_date.day)
        return as_of.year - self.birth_date.year - int(before_birthday)

    def identifier(self, system: str) -> str | None:
        return next((i.value for i in self.identifiers if i.system == system), None)


def require_patient_id(value: str) -> str:
    return require_text("patient_id", value)
