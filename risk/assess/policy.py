"""The documented policy choices of the assessment (the numbers a site may want to change, in one place).

**Which nodule guideline applies** (:func:`risk.assess.nodules.guideline_context`):

1. Known lung cancer → neither (abstain: the nodule is managed by the treating team).
2. The study the nodule was last measured on is a *screening* LDCT — its description names screening
   (``screening``, ``LDCT``, ``low dose``, ``low-dose``, ``LCS``) → **Lung-RADS v2022**.
3. The study is described as something else (any non-empty description without those words) → **Fleischner 2017**
   (an incidental nodule), unless Fleischner's exclusions apply: age < 35, immunocompromise, known cancer
   (→ abstain, naming the exclusion).
4. The study has no description: a patient who met a screening program's criteria on the study date is taken to
   be in screening (**Lung-RADS**), anyone else **Fleischner**.

**Due dates** (:func:`due_window`): intervals count from the date of the study the category is based on.

* A guideline interval of *m* months (Lung-RADS: 1, 3, 6, 12): due at study + *m* months; the order window opens
  *m*/12 earlier (an annual screen from 11 months, as Medicare's "11 full months" frequency rule; a 6-month
  follow-up from 5.5 months; a 3-month one about a week early); **overdue** after due + max(30 days, *m*/4).
* A guideline range of *m₁*–*m₂* months (Fleischner "CT at 6–12 months"): window opens and is due at study +
  *m₁*; overdue after study + *m₂*.
* "Referral / work-up now" (Lung-RADS 4B/4X): due at the study date, overdue after 30 days.

**Annual screening** is due for a screening-eligible patient (any program) when the last chest CT is ≥ 11 months
old (or none is known), with the same annual window. A *chest* CT is a CT study whose description names the chest
(``chest``, ``thorax``, ``thoracic``, ``lung``, ``pulmonary`` or a screening word), that carries nodule
measurements, or that has no description at all (counted as chest: in this service's data a CT without a
description is most often the chest CT; a head CT described as such is not counted).

**Duplicate imaging**: a chest CT order within ``duplicate_ct_window_days`` (30) of a performed chest CT, or two
chest CT orders in the same order session.

**Stale data** (flagged, never silently used as current): smoking history older than ``stale_after_days``
(default 365 days; CDS setting ``cds.stale_after_days``), BMI older than 2 years, labs older than 1 year, a
latest chest CT older than 15 months (for the risk models, not for nodule follow-up, whose date *is* the point).

**High risk** (``RiskFlag``): a 6-year risk ≥ 1.51 % (PLCOm2012 threshold of Tammemägi et al., PLOS Med
2014;11:e1001764; the fusion model is flagged at the same threshold when its horizon is 6 years and by its own
threshold otherwise); a Brock probability ≥ 10 % for a nodule (BTS 2015 threshold for further work-up).
**Rising risk**: a tracked nodule that grew by the NELSON rule (volume +25 % or more), or grew by Lung-RADS
(mean diameter > 1.5 mm within 12 months).

**Missing PLCOm2012 inputs**: education and BMI, when absent, are set to the model's centring values (level 4,
27 kg/m²), which contribute zero to the logit; the estimate lists them as ``imputed`` and the card says so.
Age, sex-independent smoking inputs (status, intensity, duration, years since quitting) are never imputed: the
model abstains. Race/ethnicity absent → the PLCOm2012noRace variant is used instead.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import date, timedelta

SCREENING_STUDY_WORDS = ("screening", "ldct", "low dose", "low-dose", "lcs")
CHEST_STUDY_WORDS = ("chest", "thorax", "thoracic", "lung", "pulmonary")


@dataclass(frozen=True, slots=True)
class AssessmentPolicy:
    """Policy knobs; defaults are the documented values in the module docstring."""

    stale_smoking_days: int = 365
    stale_bmi_days: int = 730
    stale_lab_days: int = 365
    stale_ct_days: int = 456
    high_risk_6yr: float = 0.0151
    high_risk_brock: float = 0.10
    annual_interval_months: int = 12
    duplicate_ct_window_days: int = 30
    """A chest CT order within this many days of a performed chest CT is flagged as possible duplicate imaging."""
    screening_study_words: tuple[str, ...] = field(default=SCREENING_STUDY_WORDS)
    chest_study_words: tuple[str, ...] = field(default=CHEST_STUDY_WORDS)
    high_risk_fusion: float = 0.0151

    def __post_init__(self) -> None:
        for name in ("stale_smoking_days", "stale_bmi_days", "stale_lab_days", "stale_ct_days",
                     "annual_interval_months", "duplicate_ct_window_days"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f'Argument "{name}" must be a non-negative integer, got {value!r}.')
        for name in ("high_risk_6yr", "high_risk_brock", "high_risk_fusion"):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise ValueError(f'Argument "{name}" must be a probability in (0, 1), got {value!r}.')


DEFAULT_POLICY = AssessmentPolicy()


def add_months(day: date, months: float) -> date:
    """``day`` plus whole calendar months (clamped to month end), plus the fractional part as days (30.4375/mo)."""
    whole = int(months)
    frac = months - whole
    month_index = day.month - 1 + whole
    year = day.year + month_index // 12
    month = month_index % 12 + 1
    last = calendar.monthrange(year, month)[1]
    out = date(year, month, min(day.day, last))
    if frac:
        out += timedelta(days=round(frac * 30.4375))
    return out


@dataclass(frozen=True, slots=True)
class DueWindow:
    window_start: date
    due_date: date
    overdue_after: date


def due_window(last_study: date, *, months: float | None = None,
               months_range: tuple[float, float] | None = None) -> DueWindow:
    """The order window, due date and overdue date for a follow-up counted from ``last_study`` (see module doc)."""
    if months_range is not None:
        low, high = months_range
        if high < low:
            raise ValueError('Argument "months_range" must be (low, high) with low <= high.')
        start = add_months(last_study, low)
        return DueWindow(window_start=start, due_date=start, overdue_after=add_months(last_study, high))
    if months is None:
        raise ValueError('One of "months" or "months_range" is required.')
    if months <= 0:
        return DueWindow(window_start=last_study, due_date=last_study, overdue_after=last_study + timedelta(days=30))
    due = add_months(last_study, months)
    early_days = round(months * 30.4375 / 12)
    grace_days = max(30, round(months * 30.4375 / 4))
    return DueWindow(window_start=due - timedelta(days=early_days), due_date=due,
                     overdue_after=due + timedelta(days=grace_days))
