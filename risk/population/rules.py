"""risk.assess's patient-level rules over a whole population, as polars expressions built from the rules' own data.

The one-patient code stays the reference: eligibility is :func:`risk.assess.eligibility.eligibility_decisions`
(which calls :func:`risk.guidelines.eligibility.program_decision`), PLCOm2012 is
:func:`risk.assess.risks.plcom2012_estimate`, annual screening is ``risk.assess.core._screening`` with the due
windows of :func:`risk.assess.policy.due_window`, and the chest-CT rule is
:func:`risk.assess.nodules.chest_ct_studies`. Nothing is re-typed here:

* ages, pack-year and quit limits come from risk.guidelines.eligibility (``USPSTF_AGE_YEARS`` …);
* PLCOm2012 and PLCOm2012noRace coefficients, centres and race terms from risk.guidelines.plcom2012, and the
  input limits an estimate must pass (age, BMI, cigarettes/day …) are read from the pydantic input model's field
  constraints, so a changed bound changes both paths;
* the annual window's "opens early" and "overdue after" offsets are measured by calling ``due_window`` itself;
* the chest-CT and screening words are the policy's tuples.

The rule *order* (the order of the checks in ``_decide`` and ``plcom2012_estimate``) is mirrored, and
tests/population/test_rules.py checks, for every patient of a synthetic cohort and for random inputs, that these
columns equal what the one-patient functions return. Reasons in words are not stored: the pages call the one-patient
functions for the rows they show (risk.population.explain).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final

import annotated_types
import polars as pl

from risk.assess.policy import DEFAULT_POLICY, AssessmentPolicy, due_window
from risk.domain.assessment import ScreeningProgram
from risk.domain.smoking import CIGARETTES_PER_PACK, SmokingStatus
from risk.guidelines import eligibility as elig
from risk.guidelines import plcom2012 as plco

NEVER: Final = SmokingStatus.NEVER.value
CURRENT: Final = SmokingStatus.CURRENT.value
FORMER: Final = SmokingStatus.FORMER.value
EVER: Final = (CURRENT, FORMER)

PROGRAM_COLUMNS: Final = {
    ScreeningProgram.USPSTF_2021: "eligible_uspstf_2021",
    ScreeningProgram.CMS_2022: "eligible_cms_2022",
    ScreeningProgram.ACS_2023: "eligible_acs_2023",
}
AGE_RANGES: Final = {
    ScreeningProgram.USPSTF_2021: elig.USPSTF_AGE_YEARS,
    ScreeningProgram.CMS_2022: elig.CMS_AGE_YEARS,
    ScreeningProgram.ACS_2023: elig.ACS_AGE_YEARS,
}
QUIT_LIMITED: Final = frozenset({ScreeningProgram.USPSTF_2021, ScreeningProgram.CMS_2022})
"""Programs with a years-since-quitting limit (ACS 2023 removed it; risk.assess.eligibility ``needs_quit``)."""


# --- eligibility ---------------------------------------------------------------------------------------------
def eligibility_expr(program: ScreeningProgram) -> pl.Expr:
    """True / False / null (cannot tell) as ``risk.assess.eligibility._decide`` decides, from the feature row."""
    low, high = AGE_RANGES[program]
    age = pl.col("age_years")
    status = pl.col("smoking_status")
    pack_years = pl.col("pack_years")
    ysq = pl.col("years_since_quit")
    needs_quit = program in QUIT_LIMITED
    missing = (age.is_null() | status.is_null() | (status == SmokingStatus.UNKNOWN.value)
               | (status.is_in(EVER) & pack_years.is_null()))
    if needs_quit:
        missing = missing | ((status == FORMER) & ysq.is_null())
    failed_quit = (ysq >= elig.QUIT_LIMIT_YEARS) & (status == FORMER) if needs_quit else pl.lit(False)
    return (
        pl.when(pl.col("lung_cancer").fill_null(False)).then(False)
        .when(age.is_not_null() & ~age.is_between(low, high)).then(False)
        .when(status == NEVER).then(False)
        .when(pack_years.is_not_null() & (pack_years < elig.MIN_PACK_YEARS)).then(False)
        .when(failed_quit.fill_null(False)).then(False)
        .when(missing).then(None)
        .otherwise(True)
    ).cast(pl.Boolean).alias(PROGRAM_COLUMNS[program])


def eligibility_columns() -> list[pl.Expr]:
    return [eligibility_expr(p) for p in ScreeningProgram]


def eligible_any_expr() -> pl.Expr:
    """``risk.assess.eligibility.eligible_on``: True if any program says so, null if any cannot tell, else False."""
    cols = [pl.col(c) for c in PROGRAM_COLUMNS.values()]
    return (pl.when(pl.any_horizontal([c.fill_null(False) for c in cols])).then(True)
            .when(pl.any_horizontal([c.is_null() for c in cols])).then(None)
            .otherwise(False)).cast(pl.Boolean).alias("eligible_any")


# --- PLCOm2012 -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Bounds:
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True

    def expr(self, col: pl.Expr) -> pl.Expr:
        ok = pl.lit(True)
        if self.low is not None:
            ok = ok & ((col >= self.low) if self.low_inclusive else (col > self.low))
        if self.high is not None:
            ok = ok & (col <= self.high)
        return ok


def field_bounds(model: Any, name: str) -> Bounds:
    """The numeric constraints (ge / gt / le) of a pydantic model field."""
    low: float | None = None
    high: float | None = None
    inclusive = True
    for m in model.model_fields[name].metadata:
        if isinstance(m, annotated_types.Ge):
            low, inclusive = float(m.ge), True  # type: ignore[arg-type]
        elif isinstance(m, annotated_types.Gt):
            low, inclusive = float(m.gt), False  # type: ignore[arg-type]
        elif isinstance(m, annotated_types.Le):
            high = float(m.le)  # type: ignore[arg-type]
        elif isinstance(m, annotated_types.Lt):
            high = float(m.lt)  # type: ignore[arg-type]
    return Bounds(low, high, inclusive)


_PLCO_FIELDS: Final = ("age", "education_level", "bmi", "cigarettes_per_day", "smoking_duration_years",
                       "years_since_quit")
PLCO_BOUNDS: Final = {name: field_bounds(plco.Plcom2012Input, name) for name in _PLCO_FIELDS}
_RACE_TERMS: Final = {race.value: term for race, term in plco.RACE_TERMS.items()}


@dataclass(frozen=True, slots=True)
class _Coef:
    intercept: float
    age: float
    education: float
    bmi: float
    copd: float
    personal_history_cancer: float
    family_history_lung_cancer: float
    current_smoker: float
    intensity: float
    duration: float
    quit: float


PLCOM2012: Final = _Coef(plco.INTERCEPT, plco.AGE_PER_YEAR, plco.EDUCATION_PER_LEVEL, plco.BMI_PER_UNIT, plco.COPD,
                         plco.PERSONAL_HISTORY_CANCER, plco.FAMILY_HISTORY_LUNG_CANCER, plco.CURRENT_SMOKER,
                         plco.INTENSITY, plco.DURATION_PER_YEAR, plco.QUIT_PER_YEAR)
NORACE: Final = _Coef(plco.NORACE_INTERCEPT, plco.NORACE_AGE_PER_YEAR, plco.NORACE_EDUCATION_PER_LEVEL,
                      plco.NORACE_BMI_PER_UNIT, plco.NORACE_COPD, plco.NORACE_PERSONAL_HISTORY_CANCER,
                      plco.NORACE_FAMILY_HISTORY_LUNG_CANCER, plco.NORACE_CURRENT_SMOKER, plco.NORACE_INTENSITY,
                      plco.NORACE_DURATION_PER_YEAR, plco.NORACE_QUIT_PER_YEAR)


def _logit(c: _Coef, *, age: pl.Expr, education: pl.Expr, bmi: pl.Expr, copd: pl.Expr, phc: pl.Expr,
           fhx: pl.Expr, current: pl.Expr, cpd: pl.Expr, duration: pl.Expr, quit_years: pl.Expr) -> pl.Expr:
    """The terms of ``risk.guidelines.plcom2012._terms`` (same order; fsum there, plain sum here: ≤ 1e-15 apart)."""
    terms = [
        pl.lit(c.intercept),
        c.age * (age - plco.AGE_CENTRE),
        c.education * (education - plco.EDUCATION_CENTRE),
        c.bmi * (bmi - plco.BMI_CENTRE),
        c.copd * copd.cast(pl.Float64),
        c.personal_history_cancer * phc.cast(pl.Float64),
        c.family_history_lung_cancer * fhx.cast(pl.Float64),
        c.current_smoker * current.cast(pl.Float64),
        c.intensity * ((cpd / 10.0) ** -1 - plco.INTENSITY_CENTRE),
        c.duration * (duration - plco.DURATION_CENTRE),
        c.quit * (quit_years - plco.QUIT_CENTRE),
    ]
    return pl.sum_horizontal(terms)


def plco_columns() -> list[pl.Expr]:
    """``plco_probability`` and ``plco_model`` (``plcom2012`` / ``plcom2012-norace``; null when it abstains),
    following :func:`risk.assess.risks.plcom2012_estimate` step by step (inputs; :func:`plco_finish` scores)."""
    py = pl.col("pack_years")
    cpd0 = pl.col("cigarettes_per_day")
    dur0 = pl.col("smoking_duration_years")
    truthy_py = py.is_not_null() & (py != 0)
    cpd = (pl.when(cpd0.is_null() & truthy_py & dur0.is_not_null() & (dur0 != 0))
           .then(py * CIGARETTES_PER_PACK / dur0).otherwise(cpd0))
    dur = (pl.when(dur0.is_null() & truthy_py & cpd.is_not_null() & (cpd != 0))
           .then(py * CIGARETTES_PER_PACK / cpd).otherwise(dur0))
    return [cpd.alias("_plco_cpd"), dur.alias("_plco_dur")]


def plco_finish() -> list[pl.Expr]:
    status = pl.col("smoking_status")
    cpd, dur = pl.col("_plco_cpd"), pl.col("_plco_dur")
    ysq = pl.col("years_since_quit")
    current = status == CURRENT
    former = status == FORMER
    age = pl.col("age_years").cast(pl.Float64)
    education = pl.col("education_level").fill_null(plco.EDUCATION_CENTRE).cast(pl.Float64)
    bmi = pl.col("bmi").fill_null(plco.BMI_CENTRE)
    copd = pl.col("copd").fill_null(False) | pl.col("emphysema").fill_null(False)
    phc = pl.col("personal_history_cancer").fill_null(False)
    fhx = pl.col("family_history_lung_cancer").fill_null(False)
    ysq_in = pl.when(current).then(None).otherwise(ysq)
    b = PLCO_BOUNDS
    valid = (b["age"].expr(age) & b["education_level"].expr(education) & b["bmi"].expr(bmi)
             & b["cigarettes_per_day"].expr(cpd) & b["smoking_duration_years"].expr(dur)
             & (ysq_in.is_null() | b["years_since_quit"].expr(ysq_in))
             & ~(dur + ysq_in.fill_null(0.0) > age))
    scorable = (age.is_not_null() & ~pl.col("lung_cancer").fill_null(False) & status.is_in(EVER)
                & cpd.is_not_null() & (cpd != 0) & dur.is_not_null() & (dur != 0)
                & ~(former & ysq.is_null()) & valid.fill_null(False))
    quit_years = pl.when(current).then(0.0).otherwise(ysq)
    kw = dict(age=age, education=education, bmi=bmi, copd=copd, phc=phc, fhx=fhx, current=current, cpd=cpd,
              duration=dur, quit_years=quit_years)
    race = pl.col("race_ethnicity")
    race_term = race.replace_strict(_RACE_TERMS, default=None, return_dtype=pl.Float64)
    with_race = _logit(PLCOM2012, **kw) + race_term
    no_race = _logit(NORACE, **kw)
    logit = pl.when(race.is_not_null()).then(with_race).otherwise(no_race)
    probability = 1.0 / (1.0 + (-logit).exp())
    return [
        pl.when(scorable).then(probability).alias("plco_probability"),
        pl.when(scorable).then(pl.when(race.is_not_null()).then(pl.lit(plco.MODEL_NAME))
                               .otherwise(pl.lit(plco.NORACE_MODEL_NAME))).alias("plco_model"),
    ]


# --- chest CT and annual screening ---------------------------------------------------------------------------------
def description_flags(policy: AssessmentPolicy = DEFAULT_POLICY, column: str = "description") -> list[pl.Expr]:
    """``chest_desc`` (described with a chest or screening word, or undescribed) and ``screening_desc`` (a
    screening word): the description part of risk.assess's chest-CT and screening-study rules."""
    description = pl.col(column).str.to_lowercase().fill_null("")
    chest_words = policy.chest_study_words + policy.screening_study_words
    named = pl.any_horizontal([description.str.contains(w, literal=True) for w in chest_words])
    screening = pl.any_horizontal([description.str.contains(w, literal=True) for w in policy.screening_study_words])
    return [((description == "") | named).alias("chest_desc"), screening.alias("screening_desc")]


def chest_ct_filter() -> pl.Expr:
    """``risk.assess.nodules.chest_ct_studies`` for studies without nodule measurements (CT; described with a chest
    or screening word, or undescribed). Studies that carry nodule measurements count separately (their dates)."""
    return pl.col("is_ct") & pl.col("chest_desc")


@dataclass(frozen=True, slots=True)
class AnnualWindow:
    months: int
    early_days: int
    grace_days: int
    baseline_grace_days: int

    @classmethod
    def from_policy(cls, policy: AssessmentPolicy = DEFAULT_POLICY) -> AnnualWindow:
        """Measured from ``due_window`` itself (its offsets around the due date are constant)."""
        months = policy.annual_interval_months
        probe = date(2001, 3, 15)
        w = due_window(probe, months=months)
        base = due_window(probe, months=0)
        return cls(months=months, early_days=(w.due_date - w.window_start).days,
                   grace_days=(w.overdue_after - w.due_date).days,
                   baseline_grace_days=(base.overdue_after - base.due_date).days)


def annual_columns(as_of: date, policy: AssessmentPolicy = DEFAULT_POLICY) -> list[pl.Expr]:
    """Annual screening recommendation of ``risk.assess.core._screening`` (null when there is none).

    Needs ``eligible_any`` (True when any program), ``last_chest_ct`` and ``has_imaging_plan`` (a nodule
    recommendation already sets the next CT)."""
    w = AnnualWindow.from_policy(policy)
    last = pl.col("last_chest_ct")
    recommended = pl.col("eligible_any").fill_null(False) & ~pl.col("has_imaging_plan").fill_null(False)
    due = last.dt.offset_by(f"{w.months}mo")
    return [
        pl.when(recommended).then(pl.when(last.is_null()).then(pl.lit(as_of)).otherwise(due - timedelta(
            days=w.early_days))).alias("annual_window_start"),
        pl.when(recommended).then(pl.when(last.is_null()).then(pl.lit(as_of)).otherwise(due)).alias(
            "annual_due_date"),
        pl.when(recommended).then(pl.when(last.is_null()).then(pl.lit(as_of + timedelta(days=w.baseline_grace_days)))
                                  .otherwise(due + timedelta(days=w.grace_days))).alias("annual_overdue_after"),
    ]
