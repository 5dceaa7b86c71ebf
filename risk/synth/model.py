"""The generative model of the synthetic screening cohort (numpy, vectorised per chunk of patients).

Everything is drawn per chunk of :data:`CHUNK_PATIENTS` patients from ``numpy.random.default_rng([seed,
site.number, chunk_index])``; a chunk is always simulated in full and then cut to the requested size, so patient
*k* is the same whatever ``--patients``, ``--workers`` or output options are (prefix-stable, deterministic).
Time is in integer days relative to ``--as-of`` (day 0; the past is negative).

The full specification with its targets is in risk/synth/README.md; in short:

Demographics (site profile, sites.py)
    age at the baseline screen T0 ~ Normal(63, 6.5) cut to [45, 85]; female 45 %; PLCOm2012 race/ethnicity mix;
    education level 1–6 with P = (.08, .24, .12, .22, .19, .15); BMI ~ Normal(27.8 − 0.8·current, 5) cut to
    [16, 55], height by sex, weight = BMI·height²; T0 lies Uniform(0.25, 5) years before as-of.
Smoking
    status at T0 (current, former, never) = (.45, .45, .10); start age ~ Normal(17.5, 3.5) cut to [10, 35];
    cigarettes/day ~ LogNormal(ln 20, 0.45), 60 % heaped to multiples of 5, cut to [2, 80]; years since quitting
    (former) ~ Uniform(0.5, 25) (quit ≥ 2 years after starting); pack-years = cpd/20 · years smoked; 12 % of
    current smokers quit during follow-up.
Comorbidity
    COPD: P = logistic(−2.9 + 0.025·PY + 0.35·current) in ever-smokers, 4 % in never-smokers; CT emphysema:
    logistic(−2.6 + 0.02·PY + 1.8·COPD), 3 % in never-smokers; personal cancer history 8 %; first-degree family
    history of lung cancer 14 %.
Outcome
    lung cancer within 6 years of T0 ~ Bernoulli(p) with logit p = PLCOm2012 logit (ever-smokers; the published
    equation from risk.guidelines.plcom2012) or −6.2 + 0.06·(age − 62) + 0.5·family + 0.3·personal cancer
    (never-smokers), plus ln(site odds multiplier) (site-a 1.0, site-b 1.4). Onset ~ T0 + Uniform(30, 2192) days.
Imaging (the signal the EHR does not carry)
    85 % of cancers come from a visible malignant nodule; the rest are interval cancers without one. The malignant
    nodule measures D ~ LogNormal(ln 15 mm, 0.3) (cut to [8, 45]) at onset and grows backwards in time with a
    volume doubling time of LogNormal(ln 200 d, .35) (solid), (ln 450 d, .3) (part-solid), (ln 800 d, .3)
    (non-solid); it is visible from 3 mm. Benign nodules ~ Poisson(0.45 + 0.35·ever + 0.25·emphysema) per patient
    (≤ 6), diameter LogNormal(ln 4.3 mm, 0.38) cut to [2.5, 25], 75 % present at T0, behaviour stable 60 % /
    slow-growing (VDT 800–2000 d) 10 % / shrinking 15 % / resolving 15 %. Type, lobe and margin differ between
    malignant and benign nodules in the direction of the Brock model (part-solid, upper lobe and spiculation
    enrich for cancer; see README for the tables). The vendor-AI malignancy score is
    logistic(−4 + Brock image terms + 1.5·malignant + N(0, 0.8) per nodule + N(0, 0.3) per study).
Labs
    CBC (WBC, haemoglobin, platelets, neutrophils, lymphocytes), CRP, albumin at Poisson(0.7) draws, spirometry for
    80 % of COPD and 15 % of other patients; in the 12 months before a cancer's onset CRP ×2.2, albumin −0.35 g/dL,
    platelets ×1.15, neutrophils ×1.2, lymphocytes ×0.85.
Screening
    baseline T0, annual rounds (attendance 88 %, dropout 5 % per round) until as-of or the cancer's onset; a
    Lung-RADS-like category on the largest visible nodule triggers a 6-month (category 3) or 3-month (4A/4B)
    follow-up LDCT the first time it is reached (attended 85 %; otherwise an open, overdue order).

Why fusion beats either source alone, by construction: the outcome is drawn from the EHR (PLCOm2012 covariates,
site), and the imaging evidence is drawn *given the outcome* (malignant nodule present, its size, growth, type,
lobe, margin, AI score), so imaging and EHR are conditionally independent given the outcome and each carries
likelihood ratio the other lacks: the EHR knows who is at risk (and covers interval cancers), the images know
which nodule is malignant.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt

from risk.synth import phantom
from risk.synth.risk_equations import (
    PART_SOLID,
    RACE_ORDER,
    SOLID,
    brock_nodule_logit,
    logistic,
    plcom2012_logit,
)
from risk.synth.sites import SiteProfile

F = npt.NDArray[np.float64]
I = npt.NDArray[np.int64]  # noqa: E741
B = npt.NDArray[np.bool_]

CHUNK_PATIENTS = 5000
DAYS_PER_YEAR = 365.25
HORIZON_DAYS = 2192  # six years
MAX_ANNUAL_ROUNDS = 7
FOLLOW_UP_YEARS = (0.25, 5.0)

# Smoking status at T0.
CURRENT, FORMER, NEVER = 0, 1, 2
EDUCATION_P = (0.08, 0.24, 0.12, 0.22, 0.19, 0.15)

# Study kinds.
BASELINE, ANNUAL, FOLLOW_UP_3M, FOLLOW_UP_6M = 0, 1, 2, 3
STUDY_KIND_NAMES = ("baseline", "annual", "follow-up-3m", "follow-up-6m")
# SR shapes.
SR_PLANAR_3D_POINT, SR_VOLUMETRIC, SR_PLANAR_2D_CIRCLE = 0, 1, 2
SR_STYLE_NAMES = ("planar-scoord3d-point", "volumetric-surface-point", "planar-scoord-circle")

# Nodule attributes.
COMPOSITION_NAMES = ("solid", "part_solid", "nonsolid")  # risk.domain.NoduleComposition values
MARGIN_NAMES = ("smooth", "lobulated", "irregular", "spiculated")  # risk.domain.Margin values
SPICULATED = 3
STABLE, SLOW_GROWING, SHRINKING, RESOLVING, MALIGNANT = 0, 1, 2, 3, 4
BEHAVIOUR_NAMES = ("stable", "slow-growing", "shrinking", "resolving", "malignant")
BENIGN_COMPOSITION_P = (0.76, 0.06, 0.18)
MALIGNANT_COMPOSITION_P = (0.66, 0.18, 0.16)
BENIGN_LOBE_P = (0.22, 0.10, 0.24, 0.20, 0.24)  # RUL RML RLL LUL LLL: upper 0.42
MALIGNANT_LOBE_P = (0.34, 0.07, 0.17, 0.25, 0.17)  # upper 0.59
BENIGN_MARGIN_P = (0.70, 0.15, 0.07, 0.08)
MALIGNANT_MARGIN_P = (0.35, 0.27, 0.20, 0.18)
BENIGN_BEHAVIOUR_P = (0.60, 0.10, 0.15, 0.15)
VISIBLE_FROM_MM = 3.0
VISIBLE_CANCER_RATE = 0.85
AI_INTERCEPT = -4.0
AI_MALIGNANT_SHIFT = 1.5

# Labs (canonical units; risk/extract/labs.py).
LAB_WBC, LAB_HGB, LAB_PLT, LAB_NEUT, LAB_LYMPH, LAB_CRP, LAB_ALB, LAB_FEV1, LAB_FEV1_FVC = range(9)
LAB_SLUGS = ("wbc", "hgb", "plt", "neut", "lymph", "crp", "alb", "fev1", "fev1fvc")
LAB_DRAWS_MEAN = 0.7
PRE_DIAGNOSTIC_DAYS = 365

# Record-keeping messiness (documented in README "Deliberate messiness").
BMI_FORM_P = (0.50, 0.30, 0.15, 0.05)  # BMI+height+weight, BMI only, height+weight only, none
HEIGHT_WEIGHT_ALT_UNIT_RATE = 0.10
EDUCATION_RECORDED_RATE = 0.90
SMOKING_CONFLICT_RATE = 0.04
SMOKING_QUANTITIES_P = (0.85, 0.10, 0.05)  # full, pack-years only, status only
PACKS_PER_DAY_RATE = 0.05
LAB_ALT_UNIT_RATE = 0.05
LAB_MISSING_UNIT_RATE = 0.005
FAMILY_HISTORY_AS_CONDITION_RATE = 0.10
SECOND_DEGREE_FAMILY_HISTORY_RATE = 0.04
OTHER_FAMILY_HISTORY_RATE = 0.10
DUPLICATE_OBSERVATION_PER_MILLE = 20


@dataclass(frozen=True, slots=True)
class Table:
    """A set of equally long numpy columns; subclasses name them."""

    def select(self, mask: B | I) -> Any:
        return replace(self, **{f.name: getattr(self, f.name)[mask] for f in fields(self)})

    def __len__(self) -> int:
        return len(getattr(self, fields(self)[0].name))


@dataclass(frozen=True, slots=True)
class Patients(Table):
    index: I
    """Global 1-based patient number (``lca-0000001`` is 1)."""
    female: B
    race: I
    """Index into risk.synth.risk_equations.RACE_ORDER."""
    age_t0: F
    t0_day: I
    birth_day: I
    education: I
    height_cm: F
    weight_kg: F
    bmi: F
    smoking_t0: I
    start_age: F
    cigarettes_per_day: F
    years_smoked_t0: F
    years_since_quit_t0: F
    quit_day: F
    """Day the patient quit (former smokers before T0, some current smokers during follow-up); NaN if none."""
    pack_years: F
    copd: B
    emphysema: B
    personal_cancer: B
    family_history: B
    plcom2012_6y: F
    """PLCOm2012 six-year risk at T0 (NaN for never-smokers: the model does not apply)."""
    risk_6y: F
    """The probability the outcome was actually drawn with (PLCOm2012 × site odds, or the never-smoker model)."""
    cancer: B
    onset_day: F
    cancer_visible: B
    # Messiness flags (FHIR only; the truth tables hold the true values).
    bmi_form: I
    height_weight_alt_units: B
    education_recorded: B
    smoking_conflict: B
    smoking_quantities: I
    packs_per_day_form: B
    copd_icd: B
    emphysema_condition: B
    emphysema_icd: B
    personal_cancer_form: I
    personal_cancer_icd: B
    cancer_icd: B
    family_history_relation: I
    family_history_as_condition: B
    family_history_onset_age: I
    second_degree_family_history: B
    other_family_history: B
    copd_onset_day: I
    personal_cancer_day: I
    smoking_visit_day: I


@dataclass(frozen=True, slots=True)
class Tracks(Table):
    """One row per nodule (persistent across studies)."""

    patient: I
    ordinal: I
    """1-based within the patient, in order of appearance ("Nodule 1", "Nodule 2", ...)."""
    malignant: B
    behaviour: I
    composition: I
    lobe: I
    margin: I
    anat_x: F
    anat_y: F
    anat_z: F
    d_ref_mm: F
    day_ref: F
    vdt_days: F
    appear_day: F
    disappear_day: F
    short_ratio: F
    cc_ratio: F
    long_along_x: B
    core_fraction: F
    ai_noise: F


@dataclass(frozen=True, slots=True)
class Studies(Table):
    patient: I
    day: I
    kind: I
    round: I
    ordinal: I
    """1-based within the patient, by date."""
    minute: I
    scanner: I
    kernel: I
    offset_x: F
    offset_y: F
    offset_z: F
    sr_style: I
    sr_strip_tracking: B
    sr_legacy_srt: B
    category: I
    """Lung-RADS-like category of the largest visible nodule (1, 2, 3, 4 = 4A, 5 = 4B)."""


@dataclass(frozen=True, slots=True)
class NoduleRows(Table):
    """One row per nodule per study where the nodule is visible (≥ 3 mm)."""

    study: I
    track: I
    patient: I
    long_mm: F
    short_mm: F
    cc_mm: F
    volume_mm3: F
    core_mm: F
    centre_x: F
    centre_y: F
    centre_z: F
    detected: B
    measured_long_mm: F
    measured_short_mm: F
    measured_volume_mm3: F
    measured_core_mm: F
    measured_x: F
    measured_y: F
    measured_z: F
    ai_probability: F


@dataclass(frozen=True, slots=True)
class Labs(Table):
    patient: I
    day: I
    analyte: I
    draw: I
    """1-based draw number within the patient (spirometry has its own numbering)."""
    value: F
    alt_unit: B
    missing_unit: B


@dataclass(frozen=True, slots=True)
class OpenOrders(Table):
    """Follow-up LDCT orders not (yet) performed: due in the future, or overdue (the patient did not come)."""

    patient: I
    due_day: I
    authored_day: I
    kind: I
    ordinal: I


@dataclass(frozen=True, slots=True)
class Cohort:
    seed: int
    site: SiteProfile
    as_of: date
    chunk_index: int
    patients: Patients
    tracks: Tracks
    studies: Studies
    nodules: NoduleRows
    labs: Labs
    orders: OpenOrders

    def head(self, n: int) -> Cohort:
        """The first ``n`` patients of the chunk, with their events (prefix stability)."""
        return self if n >= len(self.patients) else self.subset(0, n)

    def subset(self, start: int, stop: int) -> Cohort:
        """Patients ``start`` to ``stop - 1`` of the chunk with their events; patient indices become 0-based."""
        keep_track = (self.tracks.patient >= start) & (self.tracks.patient < stop)
        new_track = np.cumsum(keep_track) - 1
        keep_study = (self.studies.patient >= start) & (self.studies.patient < stop)
        new_study = np.cumsum(keep_study) - 1
        rows = self.nodules.select((self.nodules.patient >= start) & (self.nodules.patient < stop))
        rows = replace(rows, study=new_study[rows.study], track=new_track[rows.track], patient=rows.patient - start)
        tracks = self.tracks.select(keep_track)
        studies = self.studies.select(keep_study)
        labs = self.labs.select((self.labs.patient >= start) & (self.labs.patient < stop))
        orders = self.orders.select((self.orders.patient >= start) & (self.orders.patient < stop))
        return replace(
            self,
            patients=self.patients.select(np.arange(start, min(stop, len(self.patients)))),
            tracks=replace(tracks, patient=tracks.patient - start),
            studies=replace(studies, patient=studies.patient - start),
            nodules=rows,
            labs=replace(labs, patient=labs.patient - start),
            orders=replace(orders, patient=orders.patient - start),
        )


def simulate_chunk(seed: int, site: SiteProfile, chunk_index: int, as_of: date, n: int | None = None) -> Cohort:
    """Simulate chunk ``chunk_index`` (patients ``chunk_index·CHUNK_PATIENTS + 1`` …) and keep the first ``n``."""
    rng = np.random.default_rng([seed, site.number, chunk_index])
    patients = _patients(rng, site, chunk_index)
    tracks = _tracks(rng, patients)
    studies, nodules, orders = _screening(rng, site, patients, tracks)
    labs = _labs(rng, patients)
    cohort = Cohort(seed, site, as_of, chunk_index, patients, tracks, studies, nodules, labs, orders)
    return cohort if n is None else cohort.head(n)


# --- patients ---------------------------------------------------------------------------------------------------
def _patients(rng: np.random.Generator, site: SiteProfile, chunk_index: int) -> Patients:
    n = CHUNK_PATIENTS
    index = chunk_index * CHUNK_PATIENTS + np.arange(n, dtype=np.int64) + 1
    female = rng.random(n) < site.female_rate
    race_p = dict(site.race_mix)
    race = rng.choice(len(RACE_ORDER), size=n, p=[race_p.get(r, 0.0) for r in RACE_ORDER]).astype(np.int64)
    age_t0 = np.clip(rng.normal(site.age_mean, site.age_sd, n), 45.0, 85.0)
    follow_years = rng.uniform(*FOLLOW_UP_YEARS, n)
    t0_day = -np.round(follow_years * DAYS_PER_YEAR).astype(np.int64)
    birth_day = t0_day - np.round(age_t0 * DAYS_PER_YEAR).astype(np.int64)
    education = rng.choice(6, size=n, p=EDUCATION_P).astype(np.int64) + 1
    smoking = rng.choice(3, size=n, p=site.smoking_mix).astype(np.int64)
    ever = smoking != NEVER
    current = smoking == CURRENT
    former = smoking == FORMER

    bmi_drawn = np.clip(rng.normal(27.8 - 0.8 * current, 5.0), 16.0, 55.0)
    height_cm = np.round(np.clip(np.where(female, rng.normal(162.0, 6.5, n), rng.normal(176.0, 7.0, n)),
                                 140.0, 205.0), 1)
    weight_kg = np.round(bmi_drawn * (height_cm / 100.0) ** 2, 1)
    bmi = np.round(weight_kg / (height_cm / 100.0) ** 2, 1)

    start_age = np.clip(rng.normal(17.5, 3.5, n), 10.0, 35.0)
    cpd = np.exp(rng.normal(np.log(20.0), 0.45, n))
    heaped = rng.random(n) < 0.6
    cpd = np.clip(np.where(heaped, np.maximum(5.0, np.round(cpd / 5.0) * 5.0), np.round(cpd)), 2.0, 80.0)
    ysq_drawn = np.minimum(rng.uniform(0.5, 25.0, n), age_t0 - start_age - 2.0)
    quit_before = t0_day - np.round(ysq_drawn * DAYS_PER_YEAR).astype(np.int64)
    quits_later = current & (rng.random(n) < 0.12) & (t0_day + 90 < -30)
    later_day = t0_day + 90 + np.floor(rng.random(n) * np.maximum(1, -30 - (t0_day + 90))).astype(np.int64)
    quit_day = np.where(former, quit_before.astype(float), np.where(quits_later, later_day.astype(float), np.nan))
    years_since_quit_t0 = np.where(former, (t0_day - quit_before) / DAYS_PER_YEAR, np.where(ever, 0.0, np.nan))
    smoked_until_age = np.where(former, age_t0 - years_since_quit_t0, age_t0)
    years_smoked = np.where(ever, np.maximum(1.0, np.round(smoked_until_age - start_age)), np.nan)
    cpd = np.where(ever, cpd, np.nan)
    start_age = np.where(ever, start_age, np.nan)
    pack_years = np.where(ever, np.round(cpd / 20.0 * years_smoked, 1), 0.0)

    py0 = np.nan_to_num(pack_years)
    copd = rng.random(n) < np.where(ever, logistic(-2.9 + 0.025 * py0 + 0.35 * current), 0.04)
    emphysema = rng.random(n) < np.where(ever, logistic(-2.6 + 0.02 * py0 + 1.8 * copd), 0.03)
    personal_cancer = rng.random(n) < 0.08
    family_history = rng.random(n) < 0.14

    plco_logit = plcom2012_logit(age_t0, race, education, bmi, copd, personal_cancer, family_history, current,
                                 np.where(ever, cpd, 10.0), np.nan_to_num(years_smoked),
                                 np.nan_to_num(years_since_quit_t0))
    never_logit = -6.2 + 0.06 * (age_t0 - 62.0) + 0.5 * family_history + 0.3 * personal_cancer
    logit = np.where(ever, plco_logit, never_logit) + np.log(site.risk_odds_multiplier)
    plcom2012_6y = np.where(ever, logistic(plco_logit), np.nan)
    risk_6y = logistic(logit)
    cancer = rng.random(n) < risk_6y
    onset_day = np.where(cancer, t0_day + rng.integers(30, HORIZON_DAYS + 1, n), np.nan)
    cancer_visible = cancer & (rng.random(n) < VISIBLE_CANCER_RATE)

    icd = site.icd_condition_rate
    return Patients(
        index=index, female=female, race=race, age_t0=age_t0, t0_day=t0_day, birth_day=birth_day,
        education=education, height_cm=height_cm, weight_kg=weight_kg, bmi=bmi, smoking_t0=smoking,
        start_age=start_age, cigarettes_per_day=cpd, years_smoked_t0=years_smoked,
        years_since_quit_t0=years_since_quit_t0, quit_day=quit_day, pack_years=pack_years, copd=copd,
        emphysema=emphysema, personal_cancer=personal_cancer, family_history=family_history,
        plcom2012_6y=plcom2012_6y, risk_6y=risk_6y, cancer=cancer, onset_day=onset_day,
        cancer_visible=cancer_visible,
        bmi_form=rng.choice(4, size=n, p=BMI_FORM_P).astype(np.int64),
        height_weight_alt_units=rng.random(n) < HEIGHT_WEIGHT_ALT_UNIT_RATE,
        education_recorded=rng.random(n) < EDUCATION_RECORDED_RATE,
        smoking_conflict=ever & (rng.random(n) < SMOKING_CONFLICT_RATE),
        smoking_quantities=np.where(ever, rng.choice(3, size=n, p=SMOKING_QUANTITIES_P), 2).astype(np.int64),
        packs_per_day_form=rng.random(n) < PACKS_PER_DAY_RATE,
        copd_icd=rng.random(n) < icd,
        emphysema_condition=emphysema & (rng.random(n) < 0.4),
        emphysema_icd=rng.random(n) < icd,
        personal_cancer_form=rng.integers(0, 2, n),
        personal_cancer_icd=rng.random(n) < icd,
        cancer_icd=rng.random(n) < icd,
        family_history_relation=rng.choice(4, size=n, p=(0.35, 0.25, 0.20, 0.20)).astype(np.int64),
        family_history_as_condition=rng.random(n) < FAMILY_HISTORY_AS_CONDITION_RATE,
        family_history_onset_age=rng.integers(45, 85, n),
        second_degree_family_history=~family_history & (rng.random(n) < SECOND_DEGREE_FAMILY_HISTORY_RATE),
        other_family_history=rng.random(n) < OTHER_FAMILY_HISTORY_RATE,
        copd_onset_day=t0_day - rng.integers(365, 3653, n),
        personal_cancer_day=t0_day - rng.integers(730, 7305, n),
        smoking_visit_day=t0_day - rng.integers(7, 61, n),
    )


# --- nodules -----------------------------------------------------------------------------------------------------
def _tracks(rng: np.random.Generator, p: Patients) -> Tracks:
    n = len(p)
    ever = p.smoking_t0 != NEVER
    n_benign = np.minimum(rng.poisson(0.45 + 0.35 * ever + 0.25 * p.emphysema), 6)
    pb = np.repeat(np.arange(n), n_benign)
    nb = len(pb)
    t0 = p.t0_day[pb].astype(float)
    pre_existing = rng.random(nb) < 0.75
    appear_b = np.where(pre_existing, t0 - 1000.0, np.floor(t0 + rng.random(nb) * -t0))
    d_b = np.clip(np.exp(rng.normal(np.log(4.3), 0.38, nb)), 2.5, 25.0)
    behaviour_b = rng.choice(4, size=nb, p=BENIGN_BEHAVIOUR_P).astype(np.int64)
    day_ref_b = np.maximum(appear_b, t0)
    vdt_b = np.where(behaviour_b == SLOW_GROWING, rng.uniform(800.0, 2000.0, nb), np.nan)
    disappear_b = np.where(behaviour_b == RESOLVING, day_ref_b + rng.uniform(60.0, 400.0, nb), np.nan)
    comp_b = rng.choice(3, size=nb, p=BENIGN_COMPOSITION_P).astype(np.int64)
    lobe_b = rng.choice(5, size=nb, p=BENIGN_LOBE_P).astype(np.int64)
    margin_b = rng.choice(4, size=nb, p=BENIGN_MARGIN_P).astype(np.int64)

    pm = np.nonzero(p.cancer_visible)[0]
    nm = len(pm)
    d_m = np.clip(np.exp(rng.normal(np.log(15.0), 0.3, nm)), 8.0, 45.0)
    comp_m = rng.choice(3, size=nm, p=MALIGNANT_COMPOSITION_P).astype(np.int64)
    vdt_median = np.select([comp_m == SOLID, comp_m == PART_SOLID], [200.0, 450.0], 800.0)
    vdt_sd = np.where(comp_m == SOLID, 0.35, 0.3)
    vdt_m = np.exp(np.log(vdt_median) + vdt_sd * rng.standard_normal(nm))
    vdt_m = np.where(comp_m == SOLID, np.clip(vdt_m, 60.0, 600.0), vdt_m)
    onset = p.onset_day[pm]
    appear_m = onset - 3.0 * vdt_m * np.log2(d_m / VISIBLE_FROM_MM)
    lobe_m = rng.choice(5, size=nm, p=MALIGNANT_LOBE_P).astype(np.int64)
    margin_m = rng.choice(4, size=nm, p=MALIGNANT_MARGIN_P).astype(np.int64)

    patient = np.concatenate([pb, pm]).astype(np.int64)
    total = len(patient)
    malignant = np.concatenate([np.zeros(nb, bool), np.ones(nm, bool)])
    behaviour = np.concatenate([behaviour_b, np.full(nm, MALIGNANT)])
    composition = np.concatenate([comp_b, comp_m])
    lobe = np.concatenate([lobe_b, lobe_m])
    d_ref = np.concatenate([d_b, d_m])
    day_ref = np.concatenate([day_ref_b, onset])
    vdt = np.concatenate([vdt_b, vdt_m])
    appear = np.concatenate([appear_b, appear_m])
    disappear = np.concatenate([disappear_b, np.full(nm, np.nan)])
    margin = np.concatenate([margin_b, margin_m])
    short_ratio = rng.uniform(0.72, 0.98, total)
    cc_ratio = rng.uniform(0.75, 1.0, total)
    long_along_x = rng.random(total) < 0.5
    core = np.select([composition == SOLID, composition == PART_SOLID], [1.0, 0.0], 0.0)
    core = np.where(composition == PART_SOLID, rng.uniform(0.35, 0.7, total), core)
    ai_noise = rng.normal(0.0, 0.8, total)
    # Largest size over the nodule's life (up to as-of) keeps it inside the lung.
    max_d = np.where(behaviour == SLOW_GROWING, d_ref * 2.0 ** (-day_ref / (3.0 * np.nan_to_num(vdt, nan=1.0))),
                     d_ref)
    centres = phantom.sample_positions(rng, lobe, max_d / 2.0)

    order = np.lexsort((np.arange(total), appear, patient))
    tracks = Tracks(
        patient=patient, ordinal=np.zeros(total, np.int64), malignant=malignant, behaviour=behaviour,
        composition=composition, lobe=lobe, margin=margin, anat_x=centres[:, 0], anat_y=centres[:, 1],
        anat_z=centres[:, 2], d_ref_mm=d_ref, day_ref=day_ref, vdt_days=vdt, appear_day=appear,
        disappear_day=disappear, short_ratio=short_ratio, cc_ratio=cc_ratio, long_along_x=long_along_x,
        core_fraction=core, ai_noise=ai_noise,
    ).select(order)
    starts = _group_starts(tracks.patient, n)
    ordinal = np.arange(len(tracks)) - starts[tracks.patient] + 1
    return replace(tracks, ordinal=ordinal.astype(np.int64))


def diameter_at(t: Tracks, idx: I, day: F) -> tuple[F, B]:
    """Long-axis diameter (mm) of tracks ``idx`` on ``day`` and whether the nodule is visible then."""
    d_ref = t.d_ref_mm[idx]
    behaviour = t.behaviour[idx]
    dt = day - t.day_ref[idx]
    vdt = np.nan_to_num(t.vdt_days[idx], nan=1.0)
    grown = d_ref * 2.0 ** (dt / (3.0 * vdt))
    shrunk = d_ref * np.maximum(0.35, 1.0 - 0.3 * np.maximum(0.0, dt) / DAYS_PER_YEAR)
    d = np.select([(behaviour == MALIGNANT) | (behaviour == SLOW_GROWING), behaviour == SHRINKING],
                  [grown, shrunk], d_ref)
    present = day >= t.appear_day[idx]
    disappear = t.disappear_day[idx]
    present &= np.isnan(disappear) | (day < np.nan_to_num(disappear, nan=np.inf))
    return d, present & (d >= VISIBLE_FROM_MM)


def _category(composition: I, long_mm: F, short_mm: F, core_mm: F) -> I:
    """Lung-RADS-like size category (1, 2, 3, 4 = 4A, 5 = 4B) of nodules from their mean diameter."""
    mean = (long_mm + short_mm) / 2.0
    solid = np.select([mean < 6, mean < 8, mean < 15], [2, 3, 4], 5)
    part = np.select([mean < 6, core_mm < 6, core_mm < 8], [2, 3, 4], 5)
    ground_glass = np.where(mean < 30, 2, 3)
    return np.asarray(np.select([composition == SOLID, composition == PART_SOLID], [solid, part], ground_glass),
                      dtype=np.int64)


# --- screening -----------------------------------------------------------------------------------------------------
def _screening(rng: np.random.Generator, site: SiteProfile, p: Patients,
               t: Tracks) -> tuple[Studies, NoduleRows, OpenOrders]:
    n = len(p)
    onset = np.where(p.cancer, p.onset_day, np.inf)
    k = np.arange(MAX_ANNUAL_ROUNDS)
    jitter = np.where(k > 0, np.round(rng.normal(0.0, 15.0, (n, MAX_ANNUAL_ROUNDS))), 0.0)
    nominal = p.t0_day[:, None] + np.round(k * DAYS_PER_YEAR) + jitter
    attend = rng.random((n, MAX_ANNUAL_ROUNDS)) < 0.88
    attend[:, 0] = True
    stay = rng.random((n, MAX_ANNUAL_ROUNDS)) >= 0.05
    stay[:, 0] = True
    stay = np.cumprod(stay, axis=1).astype(bool)
    valid = attend & stay & (nominal <= 0) & (nominal < onset[:, None])
    ap, ak = np.nonzero(valid)
    annual = _StudyDraft(patient=ap, day=nominal[ap, ak].astype(np.int64), kind=np.where(ak == 0, BASELINE, ANNUAL),
                         round=ak)
    cat, _ = _study_categories(t, annual, n)
    # Follow-up trigger: category >= 3 reached for the first time (or higher than at the previous annual study).
    prev = _previous_max_in_group(ap, cat)
    trigger = (cat >= 3) & (cat > prev)
    next_day = np.full(len(ap), np.inf)
    next_day[:-1] = np.where(ap[1:] == ap[:-1], annual.day[1:], np.inf)
    interval = np.where(cat == 3, 183, 91)
    fu_day = annual.day + interval + np.round(rng.normal(0.0, 7.0, len(ap))).astype(np.int64)
    fu_ok = trigger & (fu_day < next_day - 30) & (fu_day < onset[ap])
    fu_attended = rng.random(len(ap)) < 0.85
    done = fu_ok & fu_attended & (fu_day <= 0)
    open_mask = fu_ok & ~done
    fu_kind = np.where(cat == 3, FOLLOW_UP_6M, FOLLOW_UP_3M)
    follow = _StudyDraft(patient=ap[done], day=fu_day[done], kind=fu_kind[done], round=annual.round[done])

    patient = np.concatenate([annual.patient, follow.patient]).astype(np.int64)
    day = np.concatenate([annual.day, follow.day]).astype(np.int64)
    kind = np.concatenate([annual.kind, follow.kind]).astype(np.int64)
    rnd = np.concatenate([annual.round, follow.round]).astype(np.int64)
    order = np.lexsort((kind, day, patient))
    patient, day, kind, rnd = patient[order], day[order], kind[order], rnd[order]
    m = len(patient)
    ordinal = np.arange(m) - _group_starts(patient, n)[patient] + 1

    weights = np.array([s.weight for s in site.scanners])
    scanner = rng.choice(len(site.scanners), size=m, p=weights / weights.sum()).astype(np.int64)
    n_kernels = np.array([len(s.kernels) for s in site.scanners])
    kernel = np.floor(rng.random(m) * n_kernels[scanner]).astype(np.int64)
    ai = site.ai
    style = rng.choice(3, size=m, p=(ai.planar_3d_point_rate, ai.volumetric_rate,
                                     1.0 - ai.planar_3d_point_rate - ai.volumetric_rate)).astype(np.int64)
    studies = Studies(
        patient=patient, day=day, kind=kind, round=rnd, ordinal=ordinal.astype(np.int64),
        minute=rng.integers(7 * 60, 17 * 60, m), scanner=scanner, kernel=kernel,
        offset_x=np.round(rng.normal(0.0, 4.0, m), 1), offset_y=np.round(rng.normal(0.0, 4.0, m), 1),
        offset_z=np.round(rng.normal(0.0, 4.0, m), 1), sr_style=style,
        sr_strip_tracking=rng.random(m) < ai.missing_tracking_uid_rate,
        sr_legacy_srt=rng.random(m) < ai.legacy_srt_rate, category=np.zeros(m, np.int64),
    )
    category, rows = _study_categories(t, studies, n, rng=rng)
    studies = replace(studies, category=category)

    op = ap[open_mask]
    oo = np.lexsort((fu_day[open_mask], op))
    orders = OpenOrders(patient=op[oo].astype(np.int64), due_day=fu_day[open_mask][oo].astype(np.int64),
                        authored_day=annual.day[open_mask][oo].astype(np.int64) + 3,
                        kind=fu_kind[open_mask][oo].astype(np.int64), ordinal=np.zeros(len(op), np.int64))
    orders = replace(orders, ordinal=(np.arange(len(orders)) - _group_starts(orders.patient, n)[orders.patient]
                                      + 1).astype(np.int64))
    assert rows is not None
    return studies, rows, orders


@dataclass(frozen=True, slots=True)
class _StudyDraft:
    patient: I
    day: I
    kind: I
    round: I


def _study_categories(t: Tracks, studies: _StudyDraft | Studies, n_patients: int,
                      rng: np.random.Generator | None = None) -> tuple[I, NoduleRows | None]:
    """Per study, the category of its largest visible nodule; with ``rng``, also the nodule rows (measured)."""
    starts = _group_starts(t.patient, n_patients)
    counts = np.diff(np.r_[starts, len(t)])
    per_study = counts[studies.patient]
    study = np.repeat(np.arange(len(studies.patient)), per_study)
    track = starts[studies.patient][study] + (np.arange(len(study)) - np.repeat(np.cumsum(per_study) - per_study,
                                                                               per_study))
    day = studies.day[study].astype(float)
    long_mm, visible = diameter_at(t, track, day)
    study, track, long_mm = study[visible], track[visible], long_mm[visible]
    short_mm = long_mm * t.short_ratio[track]
    cc_mm = long_mm * t.cc_ratio[track]
    core_mm = long_mm * t.core_fraction[track]
    cat = _category(t.composition[track], long_mm, short_mm, core_mm)
    category = np.ones(len(studies.patient), np.int64)
    np.maximum.at(category, study, cat)
    if rng is None:
        return category, None
    assert isinstance(studies, Studies)
    m = len(study)
    mean_mm = (long_mm + short_mm) / 2.0
    detected = rng.random(m) < logistic((mean_mm - 3.8) / 0.45)
    measured_long = np.asarray(np.round(np.maximum(1.0, long_mm + rng.normal(0.0, 0.3, m)), 1), dtype=np.float64)
    short_noisy = np.maximum(0.8, short_mm + rng.normal(0.0, 0.3, m))
    measured_short = np.asarray(np.round(np.minimum(measured_long, short_noisy), 1), dtype=np.float64)
    volume = np.pi / 6.0 * long_mm * short_mm * cc_mm
    measured_volume = np.round(volume * np.exp(rng.normal(0.0, 0.08, m)))
    part_solid = t.composition[track] == PART_SOLID
    measured_core = np.where(part_solid, np.round(np.maximum(0.5, core_mm + rng.normal(0.0, 0.3, m)), 1), np.nan)
    cx = t.anat_x[track] + studies.offset_x[study]
    cy = t.anat_y[track] + studies.offset_y[study]
    cz = t.anat_z[track] + studies.offset_z[study]
    jitter = rng.normal(0.0, 0.5, (m, 3))
    upper = (t.lobe[track] == phantom.RUL) | (t.lobe[track] == phantom.LUL)
    ai_logit = (AI_INTERCEPT + brock_nodule_logit(measured_long, t.composition[track], upper,
                                                  t.margin[track] == SPICULATED)
                + AI_MALIGNANT_SHIFT * t.malignant[track] + t.ai_noise[track] + rng.normal(0.0, 0.3, m))
    rows = NoduleRows(
        study=study.astype(np.int64), track=track.astype(np.int64), patient=studies.patient[study],
        long_mm=np.round(long_mm, 2), short_mm=np.round(short_mm, 2), cc_mm=np.round(cc_mm, 2),
        volume_mm3=np.round(volume, 1), core_mm=np.where(part_solid, np.round(core_mm, 2), np.nan),
        centre_x=np.round(cx, 2), centre_y=np.round(cy, 2), centre_z=np.round(cz, 2), detected=detected,
        measured_long_mm=measured_long, measured_short_mm=measured_short, measured_volume_mm3=measured_volume,
        measured_core_mm=measured_core, measured_x=np.round(cx + jitter[:, 0], 1),
        measured_y=np.round(cy + jitter[:, 1], 1), measured_z=np.round(cz + jitter[:, 2], 1),
        ai_probability=np.asarray(np.round(np.clip(logistic(ai_logit), 0.001, 0.999), 3), dtype=np.float64),
    )
    return category, rows


# --- labs -----------------------------------------------------------------------------------------------------------
def _labs(rng: np.random.Generator, p: Patients) -> Labs:
    n = len(p)
    n_draws = np.minimum(rng.poisson(LAB_DRAWS_MEAN, n), 4)
    dp = np.repeat(np.arange(n), n_draws)
    nd = len(dp)
    t0 = p.t0_day[dp]
    day = (t0 - 365 + np.floor(rng.random(nd) * (-(t0 - 365) + 1))).astype(np.int64)
    order = np.lexsort((day, dp))
    dp, day = dp[order], day[order]
    draw = np.arange(nd) - _group_starts(dp, n)[dp] + 1
    current = p.smoking_t0[dp] == CURRENT
    female = p.female[dp]
    onset = np.where(p.cancer[dp], p.onset_day[dp], np.inf)
    pre = (onset - day >= 0) & (onset - day <= PRE_DIAGNOSTIC_DAYS)
    wbc = np.clip(rng.normal(7.0 + 0.9 * current, 1.6), 2.5, 20.0)
    neut = wbc * np.clip(rng.normal(0.60, 0.07, nd), 0.35, 0.85)
    lymph = np.minimum(wbc * np.clip(rng.normal(0.28, 0.06, nd), 0.08, 0.5), 0.95 * wbc - neut)
    hgb = np.where(female, rng.normal(13.2, 1.1, nd), rng.normal(14.5, 1.2, nd)) + 0.4 * current
    plt = np.clip(rng.normal(250.0, 55.0, nd), 80.0, 600.0)
    crp = np.clip(np.exp(rng.normal(np.log(2.0), 0.9, nd)) * np.where(p.copd[dp], 1.5, 1.0)
                  * np.where(current, 1.3, 1.0), 0.2, 200.0)
    alb = np.clip(rng.normal(4.1, 0.3, nd), 2.5, 5.2)
    crp = np.where(pre, crp * 2.2, crp)
    alb = np.where(pre, alb - 0.35, alb)
    plt = np.where(pre, plt * 1.15, plt)
    neut = np.where(pre, neut * 1.2, neut)
    lymph = np.where(pre, lymph * 0.85, lymph)
    has_crp = rng.random(nd) < 0.6
    has_alb = rng.random(nd) < 0.6
    values = np.stack([np.round(wbc, 1), np.round(hgb, 1), np.round(plt), np.round(neut, 2), np.round(lymph, 2),
                       np.round(crp, 1), np.round(alb, 1)], axis=1)
    present = np.ones((nd, 7), bool)
    present[:, LAB_CRP] = has_crp
    present[:, LAB_ALB] = has_alb
    rr, cc = np.nonzero(present)
    lab_patient, lab_day, lab_analyte, lab_draw, lab_value = dp[rr], day[rr], cc, draw[rr], values[rr, cc]

    has_spiro = rng.random(n) < np.where(p.copd, 0.8, 0.15)
    sp = np.nonzero(has_spiro)[0]
    ns = len(sp)
    s_day = (p.t0_day[sp] - 365 + np.floor(rng.random(ns) * (-(p.t0_day[sp] - 365) + 1))).astype(np.int64)
    copd = p.copd[sp]
    ratio = np.round(np.clip(np.where(copd, rng.normal(58.0, 8.0, ns), rng.normal(77.0, 6.0, ns)), 30.0, 95.0), 1)
    fev1 = np.round(np.clip((np.where(p.female[sp], 2.6, 3.4) - 0.025 * (p.age_t0[sp] - 60.0))
                            * np.where(copd, 0.62, 1.0) + rng.normal(0.0, 0.35, ns), 0.6, 5.5), 2)
    patient = np.concatenate([lab_patient, sp, sp]).astype(np.int64)
    day_all = np.concatenate([lab_day, s_day, s_day]).astype(np.int64)
    analyte = np.concatenate([lab_analyte, np.full(ns, LAB_FEV1), np.full(ns, LAB_FEV1_FVC)]).astype(np.int64)
    draw_all = np.concatenate([lab_draw, np.ones(2 * ns, np.int64)]).astype(np.int64)
    value = np.concatenate([lab_value, fev1, ratio])
    total = len(patient)
    alt = rng.random(total) < LAB_ALT_UNIT_RATE
    missing = ~alt & (rng.random(total) < LAB_MISSING_UNIT_RATE)
    order = np.lexsort((analyte, day_all, patient))
    return Labs(patient=patient, day=day_all, analyte=analyte, draw=draw_all, value=value, alt_unit=alt,
                missing_unit=missing).select(order)


# --- helpers -----------------------------------------------------------------------------------------------------
def _group_starts(sorted_keys: I, n_groups: int) -> I:
    """Start offset of each group 0..n_groups-1 in an array sorted by group."""
    return np.searchsorted(sorted_keys, np.arange(n_groups)).astype(np.int64)


def group_bounds(sorted_keys: I, n_groups: int) -> I:
    """``bounds[g]:bounds[g + 1]`` is group ``g``'s slice in an array sorted by group."""
    return np.searchsorted(sorted_keys, np.arange(n_groups + 1)).astype(np.int64)


def _previous_max_in_group(group: I, value: I) -> I:
    """For each row, the largest ``value`` among earlier rows of the same group (1 if none)."""
    out = np.ones(len(group), np.int64)
    running = 1
    for i in range(len(group)):
        if i == 0 or group[i] != group[i - 1]:
            running = 1
        out[i] = running
        running = max(running, int(value[i]))
    return out
