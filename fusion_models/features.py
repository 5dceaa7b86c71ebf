"""The two tasks' feature sets: what the fusion models read, with units, modality and explanation wording.

``PATIENT_SCHEMA``: lung cancer within ``horizon_years`` (1-6) of the index date. EHR facts (the PLCOm2012
inputs and more: labs, spirometry) plus patient-level imaging features from the latest CT on or before the
index date ("index nodule" = the largest non-calcified nodule on that CT).

``NODULE_SCHEMA``: malignancy of one nodule, from its latest measurement on or before the index date (the Brock
inputs and more: AI score, volume, growth) plus the patient's EHR facts that Brock and PLCOm2012 use.

Imaging features of a patient without any CT are all missing (the torch network's imaging branch is then off);
a CT without nodules has ``ct_study_count`` ≥ 1 and ``nodule_count`` = 0 with the nodule features missing.
"""

from __future__ import annotations

from fusion_models.schema import (
    FactorText,
    FeatureKind,
    FeatureRow,
    FeatureSchema,
    FeatureSpec,
    FeatureValue,
    Modality,
    Task,
)

EHR, IMG = Modality.EHR, Modality.IMAGING
NUM, BIN, CAT = FeatureKind.NUMERIC, FeatureKind.BINARY, FeatureKind.CATEGORICAL

SEX_LEVELS = ("female", "male")
RACE_LEVELS = ("white", "black", "hispanic", "asian", "american_indian_alaska_native",
               "native_hawaiian_pacific_islander")
SMOKING_LEVELS = ("current", "former", "never")
COMPOSITION_LEVELS = ("solid", "part_solid", "nonsolid", "calcified")
MARGIN_LEVELS = ("smooth", "lobulated", "irregular", "spiculated")

DAYS_PER_MONTH = 30.4375


def _num(row: FeatureRow, name: str) -> float | None:
    """The row's numeric value of ``name`` (None when missing or not a number)."""
    v = row.get(name)
    return None if v is None or isinstance(v, str) else float(v)


def _fmt(template: str, missing: str) -> FactorText:
    def render(value: FeatureValue, _row: FeatureRow) -> str:
        return missing if value is None else template.format(value=value)
    return render


def _flag(present: str, absent: str, missing: str) -> FactorText:
    def render(value: FeatureValue, _row: FeatureRow) -> str:
        if value is None:
            return missing
        return present if value and value not in ("0", "false") else absent
    return render


def _smoking(value: FeatureValue, _row: FeatureRow) -> str:
    if value is None:
        return "smoking status not recorded"
    return "never smoked" if value == "never" else f"{value} smoker"


def _smoking_quantity(template: str, missing: str) -> FactorText:
    """A smoking quantity; for a never-smoker a missing one is the same fact as the status ("never smoked")."""
    def render(value: FeatureValue, row: FeatureRow) -> str:
        if value is None:
            return "never smoked" if row.get("smoking_status") == "never" else missing
        if row.get("smoking_status") == "never" and value == 0:
            return "never smoked"
        return template.format(value=value)
    return render


def _quit(value: FeatureValue, row: FeatureRow) -> str:
    status = row.get("smoking_status")
    if status == "never":
        return "never smoked"
    if status == "current":
        return "current smoker"
    if value is None:
        return "quit date not recorded"
    return f"quit smoking {float(value):.0f} years ago"


def _growth(prefix: str) -> FactorText:
    def render(value: FeatureValue, row: FeatureRow) -> str:
        change = _num(row, f"{prefix}volume_change_pct")
        days = _num(row, f"{prefix}growth_interval_days")
        if value is None or change is None or days is None:
            return "no earlier CT to measure growth"
        months = days / DAYS_PER_MONTH
        if change >= 0.5:
            return f"nodule grew {change:.0f}% in {months:.0f} months"
        if change <= -0.5:
            return f"nodule shrank {-change:.0f}% in {months:.0f} months"
        return f"nodule unchanged over {months:.0f} months"
    return render


def _composition(value: FeatureValue, _row: FeatureRow) -> str:
    names = {"solid": "solid nodule", "part_solid": "part-solid nodule", "nonsolid": "ground-glass (non-solid) nodule",
             "calcified": "calcified nodule"}
    return "nodule type not reported" if value is None else names.get(str(value), f"{value} nodule")


def _margin(value: FeatureValue, _row: FeatureRow) -> str:
    return "nodule margin not reported" if value is None else f"{value} margin"


def _imaging(factor: FactorText) -> FactorText:
    """A patient-level imaging factor: without any CT, or without a nodule on the latest CT, every imaging feature
    states that one fact (so the explanation shows it once, with the summed contribution)."""
    def render(value: FeatureValue, row: FeatureRow) -> str:
        if row.get("ct_study_count") is None:
            return "no CT on record"
        if value is None and row.get("nodule_count") == 0:
            return "no nodule on the latest CT"
        return factor(value, row)
    return render


def _count_on_latest(value: FeatureValue, row: FeatureRow) -> str:
    if value is None:
        return "no CT on record"
    return "no nodule on the latest CT" if value == 0 else f"{float(value):.0f} nodule(s) on the latest CT"


def _lab(name: str, unit: str) -> FactorText:
    return _fmt(f"{name} {{value:.3g}} {unit}", f"no recent {name}")


def _spec(name: str, kind: FeatureKind, modality: Modality, unit: str, description: str, *,
          levels: tuple[str, ...] = (), required: bool = False, plausible: tuple[float, float] | None = None,
          factor: FactorText | None = None) -> FeatureSpec:
    return FeatureSpec(name=name, kind=kind, modality=modality, unit=unit, description=description, levels=levels,
                       allowed_missing=not required, required=required, plausible_range=plausible,
                       factor=factor)


# --- EHR features (names shared by both tasks) --------------------------------------------------------------
AGE = _spec("age_years", NUM, EHR, "a", "age", required=True, plausible=(0, 130), factor=_fmt("age {value:.0f}", ""))
SEX = _spec("sex", CAT, EHR, "1", "sex", levels=SEX_LEVELS, factor=_fmt("{value}", "sex not recorded"))
RACE = _spec("race_ethnicity", CAT, EHR, "1", "race/ethnicity (PLCOm2012 groups)", levels=RACE_LEVELS,
             factor=_fmt("race/ethnicity: {value}", "race/ethnicity not recorded"))
EDUCATION = _spec("education_level", NUM, EHR, "1", "education level (PLCO 1-6)", plausible=(1, 6),
                  factor=_fmt("education level {value:.0f} of 6", "education not recorded"))
BMI = _spec("bmi", NUM, EHR, "kg/m2", "BMI", plausible=(10, 100), factor=_fmt("BMI {value:.0f}", "BMI not recorded"))
COPD = _spec("copd", BIN, EHR, "1", "COPD", factor=_flag("COPD", "no COPD", "COPD status unknown"))
EMPHYSEMA = _spec("emphysema", BIN, EHR, "1", "emphysema",
                  factor=_flag("emphysema", "no emphysema", "emphysema status unknown"))
PERSONAL_CANCER = _spec("personal_history_cancer", BIN, EHR, "1", "personal history of cancer",
                        factor=_flag("personal history of cancer", "no prior cancer", "cancer history unknown"))
FAMILY_LUNG = _spec("family_history_lung_cancer", BIN, EHR, "1", "family history of lung cancer",
                    factor=_flag("lung cancer in a first-degree relative", "no family history of lung cancer",
                                 "family history unknown"))
SMOKING = _spec("smoking_status", CAT, EHR, "1", "smoking status", levels=SMOKING_LEVELS, factor=_smoking)
SMOKING_REQUIRED = _spec("smoking_status", CAT, EHR, "1", "smoking status", levels=SMOKING_LEVELS, required=True,
                         factor=_smoking)
"""The patient task needs smoking status (its main risk factor): unknown → the model abstains."""
CPD = _spec("cigarettes_per_day", NUM, EHR, "/d", "cigarettes per day", plausible=(0, 200),
            factor=_smoking_quantity("{value:.0f} cigarettes a day", "smoking intensity not recorded"))
DURATION = _spec("smoking_duration_years", NUM, EHR, "a", "years smoked", plausible=(0, 100),
                 factor=_smoking_quantity("smoked for {value:.0f} years", "smoking duration not recorded"))
QUIT = _spec("years_since_quit", NUM, EHR, "a", "years since quitting", plausible=(0, 100),
             factor=_quit)
PACK_YEARS = _spec("pack_years", NUM, EHR, "{pack-years}", "pack-years", plausible=(0, 500),
                   factor=_smoking_quantity("{value:.0f} pack-years", "pack-years not recorded"))
LABS = (
    _spec("lab_wbc", NUM, EHR, "10*3/uL", "white cell count", factor=_lab("white cell count", "×10³/µL")),
    _spec("lab_hemoglobin", NUM, EHR, "g/dL", "hemoglobin", factor=_lab("hemoglobin", "g/dL")),
    _spec("lab_platelets", NUM, EHR, "10*3/uL", "platelets", factor=_lab("platelets", "×10³/µL")),
    _spec("lab_neutrophils", NUM, EHR, "10*3/uL", "neutrophils", factor=_lab("neutrophils", "×10³/µL")),
    _spec("lab_lymphocytes", NUM, EHR, "10*3/uL", "lymphocytes", factor=_lab("lymphocytes", "×10³/µL")),
    _spec("lab_crp", NUM, EHR, "mg/L", "CRP", factor=_lab("CRP", "mg/L")),
    _spec("lab_albumin", NUM, EHR, "g/dL", "albumin", factor=_lab("albumin", "g/dL")),
    _spec("lab_fev1", NUM, EHR, "L", "FEV1", factor=_lab("FEV1", "L")),
    _spec("lab_fev1_fvc", NUM, EHR, "%", "FEV1/FVC", factor=_lab("FEV1/FVC", "%")),
)
LAB_FEATURES = tuple(f.name for f in LABS)

# --- Patient-level imaging features ------------------------------------------------------------------------------
PATIENT_IMAGING = (
    _spec("ct_study_count", NUM, IMG, "1", "CT studies to date",
          factor=_fmt("{value:.0f} CT scan(s) on record", "no CT on record")),
    _spec("nodule_count", NUM, IMG, "1", "nodules on the latest CT", factor=_count_on_latest),
    _spec("index_nodule_diameter_mm", NUM, IMG, "mm", "largest nodule diameter", plausible=(0, 300),
          factor=_imaging(_fmt("largest nodule {value:.0f} mm", "no nodule reported"))),
    _spec("index_nodule_composition", CAT, IMG, "1", "largest nodule type", levels=COMPOSITION_LEVELS,
          factor=_imaging(_composition)),
    _spec("index_nodule_solid_component_mm", NUM, IMG, "mm", "solid component", plausible=(0, 300),
          factor=_imaging(_fmt("solid component {value:.0f} mm", "not part-solid"))),
    _spec("index_nodule_spiculated", BIN, IMG, "1", "spiculated margin",
          factor=_imaging(_flag("spiculated nodule", "nodule not spiculated", "nodule margin not reported"))),
    _spec("index_nodule_upper_lobe", BIN, IMG, "1", "upper-lobe nodule",
          factor=_imaging(_flag("nodule in an upper lobe", "nodule outside the upper lobes",
                                "nodule lobe not reported"))),
    _spec("index_nodule_ai_probability", NUM, IMG, "1", "AI malignancy score of the largest nodule",
          plausible=(0, 1), factor=_imaging(_fmt("AI malignancy score {value:.2f}", "no AI score"))),
    _spec("index_nodule_volume_change_pct", NUM, IMG, "%", "volume change since the previous CT",
          factor=_imaging(_growth("index_nodule_"))),
    _spec("index_nodule_growth_interval_days", NUM, IMG, "d", "days since the previous CT of the nodule",
          factor=_imaging(_growth("index_nodule_"))),
    _spec("index_nodule_doublings_per_year", NUM, IMG, "/a", "volume doublings per year",
          factor=_imaging(_growth("index_nodule_"))),
    _spec("max_ai_probability", NUM, IMG, "1", "highest AI malignancy score on the latest CT", plausible=(0, 1),
          factor=_imaging(_fmt("highest AI malignancy score {value:.2f}", "no AI score"))),
)

PATIENT_SCHEMA = FeatureSchema(
    name="patient-v1", task=Task.PATIENT, label="lung_cancer",
    label_description="lung cancer diagnosed after the index date and within horizon_years of it",
    features=(AGE, SEX, RACE, EDUCATION, BMI, COPD, EMPHYSEMA, PERSONAL_CANCER, FAMILY_LUNG, SMOKING_REQUIRED, CPD,
              DURATION,
              QUIT, PACK_YEARS, *LABS, *PATIENT_IMAGING),
)

# --- Nodule-level features --------------------------------------------------------------------------------------
NODULE_IMAGING = (
    _spec("nodule_diameter_mm", NUM, IMG, "mm", "nodule diameter", required=True, plausible=(0, 300),
          factor=_fmt("nodule {value:.0f} mm", "")),
    _spec("nodule_volume_mm3", NUM, IMG, "mm3", "nodule volume", plausible=(0, 1.5e7),
          factor=_fmt("volume {value:.0f} mm³", "volume not reported")),
    _spec("nodule_composition", CAT, IMG, "1", "nodule type", levels=COMPOSITION_LEVELS, factor=_composition),
    _spec("nodule_solid_component_mm", NUM, IMG, "mm", "solid component", plausible=(0, 300),
          factor=_fmt("solid component {value:.0f} mm", "not part-solid")),
    _spec("nodule_margin", CAT, IMG, "1", "nodule margin", levels=MARGIN_LEVELS, factor=_margin),
    _spec("nodule_upper_lobe", BIN, IMG, "1", "upper-lobe nodule",
          factor=_flag("in an upper lobe", "outside the upper lobes", "lobe not reported")),
    _spec("nodule_ai_probability", NUM, IMG, "1", "AI malignancy score", plausible=(0, 1),
          factor=_fmt("AI malignancy score {value:.2f}", "no AI score")),
    _spec("nodule_count", NUM, IMG, "1", "nodules on the CT",
          factor=_fmt("{value:.0f} nodule(s) on the CT", "nodule count unknown")),
    _spec("nodule_observation_count", NUM, IMG, "1", "CTs the nodule was seen on",
          factor=_fmt("seen on {value:.0f} CT(s)", "")),
    _spec("nodule_volume_change_pct", NUM, IMG, "%", "volume change since the previous CT",
          factor=_growth("nodule_")),
    _spec("nodule_growth_interval_days", NUM, IMG, "d", "days since the previous CT", factor=_growth("nodule_")),
    _spec("nodule_doublings_per_year", NUM, IMG, "/a", "volume doublings per year", factor=_growth("nodule_")),
)

NODULE_SCHEMA = FeatureSchema(
    name="nodule-v1", task=Task.NODULE, label="malignant",
    label_description="the nodule is a lung cancer (ground truth of the cohort)",
    features=(AGE, SEX, EMPHYSEMA, COPD, PERSONAL_CANCER, FAMILY_LUNG, SMOKING, PACK_YEARS, *NODULE_IMAGING),
)

SCHEMAS = {Task.PATIENT: PATIENT_SCHEMA, Task.NODULE: NODULE_SCHEMA}


def schema_for(task: Task | str) -> FeatureSchema:
    return SCHEMAS[Task(task)]
