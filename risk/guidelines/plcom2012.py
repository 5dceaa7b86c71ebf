"""PLCOm2012: six-year lung-cancer risk of an ever-smoker (Tammemägi MC et al., N Engl J Med 2013), and the
PLCOm2012noRace variant.

Source: shared/reference/clinical-models.md §2. Equation (ever-smokers only)::

    logit = -4.532506 + 0.0778868·(age − 62) + race_term − 0.0812744·(education − 4) − 0.0274194·(BMI − 27)
            + 0.3553063·COPD + 0.4589971·personal_history_cancer + 0.587185·family_history_lung_cancer
            + 0.2597431·current_smoker − 1.822606·((cigarettes_per_day / 10)^−1 − 0.4021541613)
            + 0.0317321·(smoking_duration_years − 27) − 0.0308572·(years_since_quit − 10)
    P(6 years) = exp(logit) / (1 + exp(logit))

``years_since_quit`` is 0 for current smokers. The intensity term applies to former smokers too.

Discrepancies settled here (each pinned by a test):

* Race terms: Native Hawaiian/Pacific Islander +1.027152, American Indian/Alaska Native 0, as in resplab
  ``R/plcom2012.R``, the NTOG calculator and ten Haaf's code (a co-author's implementation). NCI ``lcmodels``
  swaps the two; not followed. The reference flags that NEJM Table 2 itself was not re-read.
* Hispanic −0.7434744 (resplab, lcmodels, NTOG); ten Haaf's 2014 R code has the typo −0.734744.
* The intensity centring constant is 0.4021541613 in full (lcmodels rounds it to .402154: < 1e-8 in P).

Thresholds on the six-year risk (reported as one boolean each, ``risk >= threshold``): 1.51 % (Tammemägi,
PLOS Med 2014), 1.70 % (ILST, Lancet Oncol 2022), 2.00 % (Pasquinelli, JTO 2020).

PLCOm2012noRace coefficients come from ten Haaf's ``model.PLCOm2012NoRace`` (last adjusted 2020-09-01);
the reference flags that no peer-reviewed table prints them (they come from the authors' calculator lineage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictInt, model_validator

from risk.domain.patient import RaceEthnicity
from risk.guidelines._common import CalculatorInput, field_error, logistic
from risk.guidelines.result import ModelOutputs, ModelResult, abstained, scored

# ---- PLCOm2012 coefficients (NEJM 2013; confirmed in resplab R/plcom2012.R, lcmodels, NTOG, ten Haaf 2014) ----
INTERCEPT = -4.532506  # resplab, lcmodels, NTOG, tenHaaf
AGE_PER_YEAR = 0.0778868  # resplab, lcmodels, NTOG, tenHaaf; centred at 62
AGE_CENTRE = 62.0
EDUCATION_PER_LEVEL = -0.0812744  # all four; ordinal 1-6, centred at 4
EDUCATION_CENTRE = 4
BMI_PER_UNIT = -0.0274194  # all four; centred at 27 kg/m²
BMI_CENTRE = 27.0
COPD = 0.3553063  # all four (self-reported COPD/emphysema/chronic bronchitis)
PERSONAL_HISTORY_CANCER = 0.4589971  # all four
FAMILY_HISTORY_LUNG_CANCER = 0.587185  # all four
CURRENT_SMOKER = 0.2597431  # all four (1 = current, 0 = former)
INTENSITY = -1.822606  # resplab, NTOG, tenHaaf; applied to (cigarettes_per_day / 10)^-1
MIN_CIGARETTES_PER_DAY = 0.1
"""The smallest intensity accepted (one cigarette in ten days). Smaller values are data errors (e.g. cigarettes/day
derived from a pack-years value of 1e-300), and near zero the intensity term (cpd / 10)^-1 overflows; the model
abstains on them with the field named instead."""
INTENSITY_CENTRE = 0.4021541613  # resplab, NTOG, tenHaaf (lcmodels: .402154)
DURATION_PER_YEAR = 0.0317321  # all four; centred at 27 years
DURATION_CENTRE = 27.0
QUIT_PER_YEAR = -0.0308572  # all four; centred at 10 years (0 for current smokers)
QUIT_CENTRE = 10.0

RACE_WHITE = 0.0  # reference category
RACE_BLACK = 0.3944778  # all four
RACE_HISPANIC = -0.7434744  # resplab, lcmodels, NTOG (tenHaaf 2014 R typo: -0.734744)
RACE_ASIAN = -0.466585  # all four
RACE_AMERICAN_INDIAN_ALASKA_NATIVE = 0.0  # resplab, NTOG, tenHaaf (lcmodels: +1.027152, swapped)
RACE_NATIVE_HAWAIIAN_PACIFIC_ISLANDER = 1.027152  # resplab, NTOG, tenHaaf (lcmodels: 0, swapped)

RACE_TERMS: dict[RaceEthnicity, float] = {
    RaceEthnicity.WHITE: RACE_WHITE,
    RaceEthnicity.BLACK: RACE_BLACK,
    RaceEthnicity.HISPANIC: RACE_HISPANIC,
    RaceEthnicity.ASIAN: RACE_ASIAN,
    RaceEthnicity.AMERICAN_INDIAN_ALASKA_NATIVE: RACE_AMERICAN_INDIAN_ALASKA_NATIVE,
    RaceEthnicity.NATIVE_HAWAIIAN_PACIFIC_ISLANDER: RACE_NATIVE_HAWAIIAN_PACIFIC_ISLANDER,
}

# ---- PLCOm2012noRace coefficients (ten Haaf, model.PLCOm2012NoRace, last adjusted 2020-09-01) ----
NORACE_INTERCEPT = -4.536696
NORACE_AGE_PER_YEAR = 0.0778895
NORACE_EDUCATION_PER_LEVEL = -0.0811569
NORACE_BMI_PER_UNIT = -0.0251066
NORACE_COPD = 0.3606082
NORACE_PERSONAL_HISTORY_CANCER = 0.4683545
NORACE_FAMILY_HISTORY_LUNG_CANCER = 0.584541
NORACE_CURRENT_SMOKER = 0.2675539
NORACE_INTENSITY = -1.767578
NORACE_DURATION_PER_YEAR = 0.031949
NORACE_QUIT_PER_YEAR = -0.0312719  # only source: ten Haaf (the TypeScript port shares every other slope)

# ---- Eligibility thresholds on the six-year risk ----
THRESHOLD_1_51 = 0.0151  # Tammemägi MC et al., PLOS Med 2014;11:e1001764 (abstract)
THRESHOLD_1_70 = 0.0170  # Tammemägi MC et al., Lancet Oncol 2022;23:138-148 (ILST)
THRESHOLD_2_00 = 0.0200  # Pasquinelli MM et al., J Thorac Oncol 2020 (Ontario use not verified)

PLCO_ENROLMENT_AGES = (55.0, 74.0)
"""PLCO enrolled people aged 55-74; risks outside these ages are extrapolations (reported as a warning)."""

MODEL_NAME = "plcom2012"
MODEL_VERSION = "tammemagi-nejm-2013"
CITATION = ("Tammemägi MC, Katki HA, Hocking WG, et al. Selection criteria for lung-cancer screening. "
            "N Engl J Med 2013;368:728-736. doi:10.1056/NEJMoa1211776. Race terms as in resplab/PLCOm2012 "
            "R/plcom2012.R, NTOG and ten Haaf (NHPI +1.027152, AI/AN 0).")
NORACE_MODEL_NAME = "plcom2012-norace"
NORACE_MODEL_VERSION = "tenhaaf-2020-09-01"
NORACE_CITATION = ("PLCOm2012noRace: coefficients from K. ten Haaf, model.PLCOm2012NoRace (Erasmus MC, last "
                   "adjusted 2020-09-01), the authors' calculator lineage (Tammemägi, Ver1-13OCT2016-MT); no "
                   "peer-reviewed coefficient table found. Base model: Tammemägi MC et al. N Engl J Med "
                   "2013;368:728-736.")

NEVER_SMOKER_REASON = ("PLCOm2012 was developed in ever-smokers; it does not apply to never-smokers "
                       "(smoking_status is 'never').")


@dataclass(frozen=True, slots=True)
class _Coefficients:
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


_PLCOM2012 = _Coefficients(INTERCEPT, AGE_PER_YEAR, EDUCATION_PER_LEVEL, BMI_PER_UNIT, COPD,
                           PERSONAL_HISTORY_CANCER, FAMILY_HISTORY_LUNG_CANCER, CURRENT_SMOKER, INTENSITY,
                           DURATION_PER_YEAR, QUIT_PER_YEAR)
_NORACE = _Coefficients(NORACE_INTERCEPT, NORACE_AGE_PER_YEAR, NORACE_EDUCATION_PER_LEVEL, NORACE_BMI_PER_UNIT,
                        NORACE_COPD, NORACE_PERSONAL_HISTORY_CANCER, NORACE_FAMILY_HISTORY_LUNG_CANCER,
                        NORACE_CURRENT_SMOKER, NORACE_INTENSITY, NORACE_DURATION_PER_YEAR, NORACE_QUIT_PER_YEAR)


def _terms(c: _Coefficients, *, age: float, education_level: int, bmi: float, copd: bool,
           personal_history_cancer: bool, family_history_lung_cancer: bool, current_smoker: bool,
           cigarettes_per_day: float, smoking_duration_years: float, years_since_quit: float) -> dict[str, float]:
    if not cigarettes_per_day > 0:
        raise ValueError(f'Argument "cigarettes_per_day" must be > 0 for an ever-smoker, got {cigarettes_per_day!r}.')
    quit_years = 0.0 if current_smoker else years_since_quit
    # "+ 0.0" turns a -0.0 product (a value at its centre times a negative slope) into 0.0 for the JSON.
    return {
        "intercept": c.intercept,
        "age": c.age * (age - AGE_CENTRE),
        "education_level": c.education * (education_level - EDUCATION_CENTRE) + 0.0,
        "bmi": c.bmi * (bmi - BMI_CENTRE) + 0.0,
        "copd": c.copd * copd,
        "personal_history_cancer": c.personal_history_cancer * personal_history_cancer,
        "family_history_lung_cancer": c.family_history_lung_cancer * family_history_lung_cancer,
        "current_smoker": c.current_smoker * current_smoker,
        "cigarettes_per_day": c.intensity * ((cigarettes_per_day / 10.0) ** -1 - INTENSITY_CENTRE),
        "smoking_duration_years": c.duration * (smoking_duration_years - DURATION_CENTRE),
        "years_since_quit": c.quit * (quit_years - QUIT_CENTRE) + 0.0,
    }


def plcom2012_logit(age: float, race_ethnicity: RaceEthnicity | str, education_level: int, bmi: float,
                    copd: bool, personal_history_cancer: bool, family_history_lung_cancer: bool,
                    current_smoker: bool, cigarettes_per_day: float, smoking_duration_years: float,
                    years_since_quit: float) -> float:
    """The PLCOm2012 linear predictor of an ever-smoker (``years_since_quit`` ignored for current smokers)."""
    terms = _terms(_PLCOM2012, age=age, education_level=education_level, bmi=bmi, copd=copd,
                   personal_history_cancer=personal_history_cancer,
                   family_history_lung_cancer=family_history_lung_cancer, current_smoker=current_smoker,
                   cigarettes_per_day=cigarettes_per_day, smoking_duration_years=smoking_duration_years,
                   years_since_quit=years_since_quit)
    return math.fsum(terms.values()) + RACE_TERMS[RaceEthnicity(race_ethnicity)]


def plcom2012_probability(age: float, race_ethnicity: RaceEthnicity | str, education_level: int, bmi: float,
                          copd: bool, personal_history_cancer: bool, family_history_lung_cancer: bool,
                          current_smoker: bool, cigarettes_per_day: float, smoking_duration_years: float,
                          years_since_quit: float) -> float:
    """Six-year lung-cancer probability of an ever-smoker (PLCOm2012). No input validation beyond
    ``cigarettes_per_day > 0``: the hot-path form of :func:`compute_plcom2012`."""
    return logistic(plcom2012_logit(age, race_ethnicity, education_level, bmi, copd, personal_history_cancer,
                                    family_history_lung_cancer, current_smoker, cigarettes_per_day,
                                    smoking_duration_years, years_since_quit))


def plcom2012_norace_logit(age: float, education_level: int, bmi: float, copd: bool,
                           personal_history_cancer: bool, family_history_lung_cancer: bool, current_smoker: bool,
                           cigarettes_per_day: float, smoking_duration_years: float,
                           years_since_quit: float) -> float:
    """The PLCOm2012noRace linear predictor of an ever-smoker."""
    terms = _terms(_NORACE, age=age, education_level=education_level, bmi=bmi, copd=copd,
                   personal_history_cancer=personal_history_cancer,
                   family_history_lung_cancer=family_history_lung_cancer, current_smoker=current_smoker,
                   cigarettes_per_day=cigarettes_per_day, smoking_duration_years=smoking_duration_years,
                   years_since_quit=years_since_quit)
    return math.fsum(terms.values())


def plcom2012_norace_probability(age: float, education_level: int, bmi: float, copd: bool,
                                 personal_history_cancer: bool, family_history_lung_cancer: bool,
                                 current_smoker: bool, cigarettes_per_day: float, smoking_duration_years: float,
                                 years_since_quit: float) -> float:
    """Six-year lung-cancer probability of an ever-smoker (PLCOm2012noRace)."""
    return logistic(plcom2012_norace_logit(age, education_level, bmi, copd, personal_history_cancer,
                                           family_history_lung_cancer, current_smoker, cigarettes_per_day,
                                           smoking_duration_years, years_since_quit))


SmokingStatusInput = Literal["current", "former", "never"]


class _PlcoInputBase(CalculatorInput):
    age: Annotated[float, Field(ge=18, le=100, description="Age in years (PLCO enrolled 55-74).")]
    education_level: Annotated[StrictInt, Field(ge=1, le=6, description=(
        "Education, ordinal: 1 less than high-school graduate; 2 high-school graduate; 3 post-high-school "
        "training other than college; 4 some college; 5 college graduate; 6 postgraduate/professional."))]
    bmi: Annotated[float, Field(ge=10, le=100, description="Body-mass index, kg/m².")]
    copd: StrictBool = Field(description="Self-reported COPD, emphysema or chronic bronchitis.")
    personal_history_cancer: StrictBool = Field(description="Personal history of any cancer.")
    family_history_lung_cancer: StrictBool = Field(description="Lung cancer in a first-degree relative.")
    smoking_status: SmokingStatusInput = Field(description="current | former | never.")
    cigarettes_per_day: Annotated[float | None, Field(ge=MIN_CIGARETTES_PER_DAY, le=200, description=(
        "Average cigarettes smoked per day (required for ever-smokers); at least 0.1, one cigarette in ten days."))
    ] = None
    smoking_duration_years: Annotated[float | None, Field(ge=0, le=100, description=(
        "Years smoked (required for ever-smokers)."))] = None
    years_since_quit: Annotated[float | None, Field(ge=0, le=100, description=(
        "Years since quitting (required for former smokers; 0 or absent for current smokers)."))] = None

    @model_validator(mode="after")
    def _smoking_fields(self) -> _PlcoInputBase:
        if self.smoking_status == "never":
            return self
        if self.cigarettes_per_day is None:
            raise field_error("cigarettes_per_day", "required for current and former smokers")
        if self.smoking_duration_years is None:
            raise field_error("smoking_duration_years", "required for current and former smokers")
        if self.smoking_status == "former" and self.years_since_quit is None:
            raise field_error("years_since_quit", "required for former smokers")
        if self.smoking_status == "current" and self.years_since_quit not in (None, 0, 0.0):
            raise field_error("years_since_quit", "must be 0 or absent for a current smoker")
        if self.smoking_duration_years + (self.years_since_quit or 0.0) > self.age:
            raise field_error("smoking_duration_years",
                              "smoking_duration_years + years_since_quit must not exceed age")
        return self

    @property
    def current_smoker(self) -> bool:
        return self.smoking_status == "current"


class Plcom2012Input(_PlcoInputBase):
    """Inputs of PLCOm2012 (field names fixed by the public interface)."""

    race_ethnicity: RaceEthnicity = Field(strict=False, description=(
        "white | black | hispanic | asian | american_indian_alaska_native | native_hawaiian_pacific_islander."))


class Plcom2012NoRaceInput(_PlcoInputBase):
    """Inputs of PLCOm2012noRace: those of PLCOm2012; ``race_ethnicity`` is accepted (so one payload serves
    both) and not used."""

    race_ethnicity: RaceEthnicity | None = Field(default=None, strict=False, description="Accepted and not used.")


class Plcom2012Outputs(ModelOutputs):
    probability_6yr: float = Field(ge=0, le=1, description="Six-year probability of lung cancer.")
    risk_ge_1_51pct: bool = Field(description="probability_6yr >= 1.51 % (Tammemägi, PLOS Med 2014).")
    risk_ge_1_70pct: bool = Field(description="probability_6yr >= 1.70 % (ILST, Lancet Oncol 2022).")
    risk_ge_2_00pct: bool = Field(description="probability_6yr >= 2.00 % (Pasquinelli, JTO 2020).")
    linear_predictor: float = Field(description="The logit (log-odds) of probability_6yr.")
    contributions: dict[str, float] = Field(description="Each term's contribution to the logit.")


Plcom2012Result = ModelResult[Plcom2012Outputs]


def threshold_flags(probability_6yr: float) -> tuple[bool, bool, bool]:
    """(>= 1.51 %, >= 1.70 %, >= 2.00 %): a risk exactly at a threshold meets it."""
    return (probability_6yr >= THRESHOLD_1_51, probability_6yr >= THRESHOLD_1_70,
            probability_6yr >= THRESHOLD_2_00)


def _outputs(logit: float, terms: dict[str, float]) -> Plcom2012Outputs:
    p = logistic(logit)
    ge_151, ge_170, ge_200 = threshold_flags(p)
    return Plcom2012Outputs(probability_6yr=p, risk_ge_1_51pct=ge_151, risk_ge_1_70pct=ge_170,
                            risk_ge_2_00pct=ge_200, linear_predictor=logit, contributions=terms)


def _age_warnings(age: float) -> list[str]:
    low, high = PLCO_ENROLMENT_AGES
    if low <= age <= high:
        return []
    return [f"age {age:g} is outside the PLCO enrolment ages {low:g}-{high:g}: the risk is an extrapolation"]


def _scalar_terms(c: _Coefficients, data: _PlcoInputBase) -> dict[str, float]:
    assert data.cigarettes_per_day is not None and data.smoking_duration_years is not None
    return _terms(c, age=data.age, education_level=data.education_level, bmi=data.bmi, copd=data.copd,
                  personal_history_cancer=data.personal_history_cancer,
                  family_history_lung_cancer=data.family_history_lung_cancer, current_smoker=data.current_smoker,
                  cigarettes_per_day=data.cigarettes_per_day, smoking_duration_years=data.smoking_duration_years,
                  years_since_quit=data.years_since_quit or 0.0)


def compute_plcom2012(data: Plcom2012Input) -> Plcom2012Result:
    """PLCOm2012 six-year risk, or an abstention for never-smokers."""
    if data.smoking_status == "never":
        return abstained(Plcom2012Result, model=MODEL_NAME, version=MODEL_VERSION, citation=CITATION,
                         inputs=data, reasons=[NEVER_SMOKER_REASON])
    terms = _scalar_terms(_PLCOM2012, data)
    terms["race_ethnicity"] = RACE_TERMS[data.race_ethnicity]
    return scored(Plcom2012Result, model=MODEL_NAME, version=MODEL_VERSION, citation=CITATION, inputs=data,
                  outputs=_outputs(math.fsum(terms.values()), terms), warnings=_age_warnings(data.age))


def compute_plcom2012_norace(data: Plcom2012NoRaceInput) -> Plcom2012Result:
    """PLCOm2012noRace six-year risk, or an abstention for never-smokers."""
    warnings = _age_warnings(data.age)
    if data.race_ethnicity is not None:
        warnings.append("race_ethnicity is not used by PLCOm2012noRace")
    if data.smoking_status == "never":
        return abstained(Plcom2012Result, model=NORACE_MODEL_NAME, version=NORACE_MODEL_VERSION,
                         citation=NORACE_CITATION, inputs=data,
                         reasons=[NEVER_SMOKER_REASON.replace("PLCOm2012", "PLCOm2012noRace", 1)])
    terms = _scalar_terms(_NORACE, data)
    return scored(Plcom2012Result, model=NORACE_MODEL_NAME, version=NORACE_MODEL_VERSION,
                  citation=NORACE_CITATION, inputs=data, outputs=_outputs(math.fsum(terms.values()), terms),
                  warnings=warnings)
