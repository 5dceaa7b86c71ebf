"""Smoking history: status, intensity, duration, pack-years and quit date, each with its source."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from risk.domain._checks import optional_finite, require_date
from risk.domain._value import value_type
from risk.domain.provenance import SourceRef

CIGARETTES_PER_PACK = 20
"""1 pack = 20 cigarettes (CMS NCD 210.14 decision memo, 2022)."""


class SmokingStatus(StrEnum):
    CURRENT = "current"
    FORMER = "former"
    NEVER = "never"
    UNKNOWN = "unknown"

    @property
    def ever_smoker(self) -> bool | None:
        if self is SmokingStatus.UNKNOWN:
            return None
        return self is not SmokingStatus.NEVER


def pack_years_from(cigarettes_per_day: float, smoking_duration_years: float) -> float:
    """Pack-years = packs per day × years smoked, with 20 cigarettes per pack."""
    return cigarettes_per_day / CIGARETTES_PER_PACK * smoking_duration_years


@value_type
class SmokingHistory:
    """A reconciled smoking history.

    ``pack_years`` is the recorded value when one exists, else derived from cigarettes/day × years
    (``pack_years_derived`` says which). ``conflicts`` lists disagreements that reconciliation
    resolved (most recent record wins) so a clinician can see them.
    """

    status: SmokingStatus
    sources: tuple[SourceRef, ...]
    cigarettes_per_day: float | None = None
    smoking_duration_years: float | None = None
    pack_years: float | None = None
    pack_years_derived: bool = False
    quit_date: date | None = None
    conflicts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.status, SmokingStatus):
            raise TypeError('Argument "status" must be a SmokingStatus.')
        if not self.sources:
            raise ValueError('Argument "sources" must name at least one source.')
        optional_finite("cigarettes_per_day", self.cigarettes_per_day, low=0, high=200)
        optional_finite("smoking_duration_years", self.smoking_duration_years, low=0, high=100)
        optional_finite("pack_years", self.pack_years, low=0, high=500)
        require_date("quit_date", self.quit_date, optional=True)
        if self.status is SmokingStatus.NEVER and (self.pack_years or 0) > 0:
            raise ValueError('Argument "pack_years" must be 0 or absent for a never-smoker.')
        if self.status is SmokingStatus.CURRENT and self.quit_date is not None:
            raise ValueError('Argument "quit_date" must be absent for a current smoker.')

    @property
    def effective(self) -> date | None:
        """Date of the most recent record behind this history."""
        dates = [s.effective for s in self.sources if s.effective is not None]
        return max(dates) if dates else None

    def years_since_quit(self, as_of: date) -> float | None:
        """Whole-and-fractional years since quitting (0 for current smokers; None if unknown)."""
        if self.status is SmokingStatus.CURRENT:
            return 0.0
        if self.quit_date is None:
            return None
        return max(0.0, (as_of - self.quit_date).days / 365.25)

    @classmethod
    def build(cls, status: SmokingStatus, sources: tuple[SourceRef, ...], *,
              cigarettes_per_day: float | None = None, smoking_duration_years: float | None = None,
              pack_years: float | None = None, quit_date: date | None = None,
              conflicts: tuple[str, ...] = ()) -> SmokingHistory:
        """Build a history, deriving pack-years from intensity × duration when none was recorded."""
        derived = False
        if pack_years is None and cigarettes_per_day is not None and smoking_duration_years is not None:
            pack_years = pack_years_from(cigarettes_per_day, smoking_duration_years)
            derived = True
        if status is SmokingStatus.NEVER:
            pack_years = 0.0 if pack_years is None else pack_years
        return cls(status=status, sources=sources, cigarettes_per_day=cigarettes_per_day,
                   smoking_duration_years=smoking_duration_years, pack_years=pack_years,
                   pack_years_derived=derived, quit_date=quit_date, conflicts=conflicts)
