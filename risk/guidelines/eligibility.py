"""Lung-cancer screening eligibility: USPSTF 2021, CMS NCD 210.14 (2022) and ACS 2023.

Source: shared/reference/clinical-models.md §5.

=========== ======= =============== ===========================================================
program     age     smoking         years since quitting
=========== ======= =============== ===========================================================
USPSTF 2021 50-80   >= 20 pack-yr   current smoker, or quit within the past 15 years
CMS 2022    50-77   >= 20 pack-yr   current smoker, or quit within the last 15 years
ACS 2023    50-80   >= 20 pack-yr   any current or former smoker (no limit)
=========== ======= =============== ===========================================================

Ages are inclusive at both ends. Pack-years = cigarettes per day ÷ 20 × years smoked (1 pack = 20 cigarettes,
CMS decision memo); a recorded ``pack_years`` is used as given.

**Exactly 15 years since quitting: not eligible** (``years_since_quit < 15`` is required). The texts conflict
at the boundary: USPSTF says "quit within the past 15 years" and also "discontinue once a person has not smoked
for 15 years"; CMS says "quit smoking within the last 15 years". We follow the USPSTF discontinuation clause,
which is the more specific statement: at 15 years the person *has* not smoked for 15 years. It also matches
how quit times are reported: a whole number of years is a floor, so "quit 15 years ago" means at least 15 full
years. The same rule is applied to CMS. ACS 2023 removed the limit, so the boundary does not arise there.

None of the three programs' other conditions (life-limiting comorbidity, willingness to be treated, symptoms,
the CMS shared-decision-making visit) can be judged from these inputs; each decision lists them as notes.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from risk.domain.assessment import ScreeningProgram
from risk.domain.smoking import pack_years_from
from risk.guidelines._common import CalculatorInput, field_error
from risk.guidelines.plcom2012 import SmokingStatusInput
from risk.guidelines.result import ModelOutputs, ModelResult, scored

USPSTF_AGE_YEARS = (50.0, 80.0)  # USPSTF 2021 (JAMA 2021;325:962-970)
CMS_AGE_YEARS = (50.0, 77.0)  # CMS decision memo CAG-00439R, 2022-02-10 (not 50-70 as one news page misprints)
ACS_AGE_YEARS = (50.0, 80.0)  # ACS 2023 (Wolf AMD et al., CA Cancer J Clin 2023)
MIN_PACK_YEARS = 20.0  # all three programs
QUIT_LIMIT_YEARS = 15.0  # USPSTF 2021 and CMS 2022; eligible only when years_since_quit < 15 (see module doc)

MODEL_NAME = "eligibility"
MODEL_VERSION = "uspstf-2021+cms-2022+acs-2023"
CITATION = ("US Preventive Services Task Force. Screening for lung cancer. JAMA 2021;325:962-970; CMS National "
            "Coverage Determination 210.14, decision memo CAG-00439R (2022-02-10); Wolf AMD et al. Screening for "
            "lung cancer: 2023 guideline update from the American Cancer Society. CA Cancer J Clin 2023.")

USPSTF_NOTES = ("Not assessed here: a health problem that substantially limits life expectancy or the ability or "
                "willingness to have curative lung surgery (USPSTF: do not screen).",)
CMS_NOTES = ("Before the first screening LDCT, CMS requires a counselling and shared decision-making visit "
             "using one or more decision aids, and a written order.",
             "Not assessed here: the person must be asymptomatic (no signs or symptoms of lung cancer).")
ACS_NOTES = ("Not assessed here: a serious comorbidity that limits life expectancy, or unwillingness to accept "
             "treatment (ACS: do not screen).",)


class EligibilityInput(CalculatorInput):
    """Smoking history and age. Give either ``pack_years`` or both ``cigarettes_per_day`` and
    ``smoking_duration_years``; when both are given the recorded ``pack_years`` is used."""

    age: Annotated[float, Field(ge=18, le=120, description="Age in years.")]
    smoking_status: SmokingStatusInput = Field(description="current | former | never.")
    cigarettes_per_day: Annotated[float | None, Field(gt=0, le=200, description=(
        "Average cigarettes smoked per day."))] = None
    smoking_duration_years: Annotated[float | None, Field(ge=0, le=100, description=(
        "Years smoked."))] = None
    pack_years: Annotated[float | None, Field(ge=0, le=500, description=(
        "Recorded pack-years (instead of cigarettes_per_day and smoking_duration_years)."))] = None
    years_since_quit: Annotated[float | None, Field(ge=0, le=100, description=(
        "Years since quitting (required for former smokers; 0 or absent for current smokers)."))] = None

    @model_validator(mode="after")
    def _smoking_fields(self) -> EligibilityInput:
        if self.smoking_status == "never":
            if self.pack_years:
                raise field_error("pack_years", "must be 0 or absent for a never-smoker")
            return self
        if self.pack_years is None:
            if self.cigarettes_per_day is None:
                raise field_error("cigarettes_per_day",
                                  "required for an ever-smoker unless pack_years is given")
            if self.smoking_duration_years is None:
                raise field_error("smoking_duration_years",
                                  "required for an ever-smoker unless pack_years is given")
        if self.smoking_status == "former" and self.years_since_quit is None:
            raise field_error("years_since_quit", "required for former smokers")
        if self.smoking_status == "current" and self.years_since_quit not in (None, 0, 0.0):
            raise field_error("years_since_quit", "must be 0 or absent for a current smoker")
        if (self.smoking_duration_years or 0.0) + (self.years_since_quit or 0.0) > self.age:
            raise field_error("smoking_duration_years", "smoking_duration_years + years_since_quit must not "
                              "exceed age")
        return self


class ProgramDecision(ModelOutputs):
    eligible: bool = Field(description="Meets the program's age and smoking criteria.")
    reason: str = Field(description="Why, naming each criterion met or failed.")
    notes: tuple[str, ...] = Field(default=(), description="Conditions these inputs cannot decide.")


class EligibilityOutputs(ModelOutputs):
    pack_years: float = Field(ge=0, description="Pack-years used (0 for never-smokers).")
    pack_years_derived: bool = Field(description="True when computed from cigarettes/day × years ÷ 20.")
    uspstf_2021: ProgramDecision
    cms_2022: ProgramDecision
    acs_2023: ProgramDecision


EligibilityResult = ModelResult[EligibilityOutputs]


def pack_years_of(data: EligibilityInput) -> tuple[float, bool]:
    """(pack-years, derived?) for the input."""
    if data.smoking_status == "never":
        return 0.0, False
    if data.pack_years is not None:
        return data.pack_years, False
    assert data.cigarettes_per_day is not None and data.smoking_duration_years is not None
    return pack_years_from(data.cigarettes_per_day, data.smoking_duration_years), True


def program_decision(program: ScreeningProgram, *, age: float, smoking_status: str, pack_years: float,
                     years_since_quit: float | None) -> ProgramDecision:
    """Eligibility for one program from already-validated values (the hot-path form)."""
    age_range, quit_limit, notes = {
        ScreeningProgram.USPSTF_2021: (USPSTF_AGE_YEARS, QUIT_LIMIT_YEARS, USPSTF_NOTES),
        ScreeningProgram.CMS_2022: (CMS_AGE_YEARS, QUIT_LIMIT_YEARS, CMS_NOTES),
        ScreeningProgram.ACS_2023: (ACS_AGE_YEARS, None, ACS_NOTES),
    }[program]
    met: list[str] = []
    failed: list[str] = []
    low, high = age_range
    (met if low <= age <= high else failed).append(f"age {age:g} {'within' if low <= age <= high else 'outside'} "
                                                   f"{low:g}-{high:g}")
    if smoking_status == "never":
        failed.append("never smoked")
    else:
        enough = pack_years >= MIN_PACK_YEARS
        (met if enough else failed).append(f"{pack_years:.1f} pack-years ({'>=' if enough else '<'} "
                                           f"{MIN_PACK_YEARS:g})")
        if smoking_status == "current":
            met.append("current smoker")
        elif quit_limit is None:
            met.append("former smoker (no limit on years since quitting)")
        elif years_since_quit is None:
            raise ValueError('Argument "years_since_quit" is required for a former smoker under '
                             f"{program.value}.")
        elif years_since_quit < quit_limit:
            met.append(f"quit {years_since_quit:g} years ago (< {quit_limit:g})")
        else:
            failed.append(f"quit {years_since_quit:g} years ago (not smoked for {quit_limit:g} years or more)")
    eligible = not failed
    reason = ("eligible: " + "; ".join(met)) if eligible else ("not eligible: " + "; ".join(failed))
    return ProgramDecision(eligible=eligible, reason=reason, notes=notes)


def compute_eligibility(data: EligibilityInput) -> EligibilityResult:
    """Eligibility under the three programs, with pack-years."""
    pack_years, derived = pack_years_of(data)
    warnings: list[str] = []
    if (data.pack_years is not None and data.cigarettes_per_day is not None
            and data.smoking_duration_years is not None):
        computed = pack_years_from(data.cigarettes_per_day, data.smoking_duration_years)
        if abs(computed - data.pack_years) > 1.0:
            warnings.append(f"recorded pack_years {data.pack_years:g} differs from cigarettes_per_day × "
                            f"smoking_duration_years ÷ 20 = {computed:.1f}; the recorded value was used")
    decisions = {p: program_decision(p, age=data.age, smoking_status=data.smoking_status, pack_years=pack_years,
                                     years_since_quit=data.years_since_quit)
                 for p in ScreeningProgram}
    outputs = EligibilityOutputs(pack_years=pack_years, pack_years_derived=derived,
                                 uspstf_2021=decisions[ScreeningProgram.USPSTF_2021],
                                 cms_2022=decisions[ScreeningProgram.CMS_2022],
                                 acs_2023=decisions[ScreeningProgram.ACS_2023])
    return scored(EligibilityResult, model=MODEL_NAME, version=MODEL_VERSION, citation=CITATION, inputs=data,
                  outputs=outputs, warnings=warnings)
