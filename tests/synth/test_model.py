"""The generative model: distributions within tolerance of the documented targets (risk/synth/README.md),
determinism, prefix stability, and real signal in both the EHR and the imaging features."""

from __future__ import annotations

from dataclasses import fields
from datetime import date
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from risk.synth import model as M
from risk.synth import phantom
from risk.synth.risk_equations import NONSOLID
from risk.synth.sites import SITE_A, SITE_B, SiteProfile

AS_OF = date(2026, 6, 30)
CHUNKS = 6  # 30,000 patients per site: the tolerances below are >= 3 standard errors at this size


def _cat(tables: list[Any]) -> Any:
    first = tables[0]
    return type(first)(**{f.name: np.concatenate([getattr(t, f.name) for t in tables]) for f in fields(first)})


class Sim:
    """Several chunks of one site, with the event tables' patient indices made global."""

    def __init__(self, site: SiteProfile, seed: int = 11) -> None:
        cohorts = [M.simulate_chunk(seed, site, k, AS_OF) for k in range(CHUNKS)]
        offset = [k * M.CHUNK_PATIENTS for k in range(CHUNKS)]
        self.p = _cat([c.patients for c in cohorts])
        self.t = _cat([c.tracks for c in cohorts])
        self.s = _cat([c.studies for c in cohorts])
        self.labs = _cat([c.labs for c in cohorts])
        self.t_patient = np.concatenate([c.tracks.patient + o for c, o in zip(cohorts, offset, strict=True)])
        self.s_patient = np.concatenate([c.studies.patient + o for c, o in zip(cohorts, offset, strict=True)])
        self.l_patient = np.concatenate([c.labs.patient + o for c, o in zip(cohorts, offset, strict=True)])
        rows = []
        track_offset = study_offset = 0
        for c, o in zip(cohorts, offset, strict=True):
            r = c.nodules
            rows.append(dict(patient=r.patient + o, track=r.track + track_offset, study=r.study + study_offset,
                             detected=r.detected, ai=r.ai_probability, volume=r.volume_mm3, long=r.long_mm))
            track_offset += len(c.tracks)
            study_offset += len(c.studies)
        self.rows = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}


@pytest.fixture(scope="module")
def a() -> Sim:
    return Sim(SITE_A)


@pytest.fixture(scope="module")
def b() -> Sim:
    return Sim(SITE_B)


def _share(mask: np.ndarray) -> float:
    return float(np.mean(mask))


# --- demographics and smoking ------------------------------------------------------------------------------------
def test_demographics_follow_the_site_profile(a: Sim) -> None:
    p = a.p
    assert _share(p.female) == pytest.approx(0.45, abs=0.015)
    race = np.bincount(p.race, minlength=6) / len(p)
    assert race == pytest.approx([0.76, 0.10, 0.07, 0.05, 0.015, 0.005], abs=0.012)
    assert p.age_t0.min() >= 45 and p.age_t0.max() <= 85
    assert p.age_t0.mean() == pytest.approx(63.0, abs=0.3)
    assert _share((p.age_t0 >= 50) & (p.age_t0 <= 80)) >= 0.95
    edu = np.bincount(p.education, minlength=7)[1:] / len(p)
    assert edu == pytest.approx(M.EDUCATION_P, abs=0.012)
    assert p.bmi.mean() == pytest.approx(27.8 - 0.8 * 0.45, abs=0.3)
    assert np.allclose(p.bmi, np.round(p.weight_kg / (p.height_cm / 100) ** 2, 1))
    follow_years = -p.t0_day / M.DAYS_PER_YEAR
    assert follow_years.min() >= 0.24 and follow_years.max() <= 5.01


def test_smoking_histories(a: Sim) -> None:
    p = a.p
    mix = np.bincount(p.smoking_t0, minlength=3) / len(p)
    assert mix == pytest.approx([0.45, 0.45, 0.10], abs=0.015)
    ever = p.smoking_t0 != M.NEVER
    assert np.median(p.cigarettes_per_day[ever]) == 20
    assert np.all((p.cigarettes_per_day[ever] >= 2) & (p.cigarettes_per_day[ever] <= 80))
    assert np.all(np.isnan(p.cigarettes_per_day[~ever]))
    assert 30 <= np.median(p.pack_years[ever]) <= 46
    assert np.allclose(p.pack_years[ever], np.round(p.cigarettes_per_day[ever] / 20 * p.years_smoked_t0[ever], 1))
    former = p.smoking_t0 == M.FORMER
    assert np.all(p.years_since_quit_t0[former] >= 0.49)
    assert np.all(p.quit_day[former] < p.t0_day[former])
    current = p.smoking_t0 == M.CURRENT
    quit_later = current & ~np.isnan(p.quit_day)
    assert _share(quit_later[current]) == pytest.approx(0.12 * np.mean(p.t0_day[current] + 90 < -30), abs=0.015)
    assert np.all(p.quit_day[quit_later] > p.t0_day[quit_later])


def test_comorbidity_rates(a: Sim) -> None:
    p = a.p
    ever = p.smoking_t0 != M.NEVER
    assert _share(p.copd[ever]) == pytest.approx(0.18, abs=0.03)
    assert _share(p.copd[~ever]) == pytest.approx(0.04, abs=0.015)
    assert _share(p.emphysema[ever]) == pytest.approx(0.23, abs=0.04)
    assert _share(p.emphysema[p.copd]) > 2 * _share(p.emphysema[~p.copd])
    assert _share(p.personal_cancer) == pytest.approx(0.08, abs=0.01)
    assert _share(p.family_history) == pytest.approx(0.14, abs=0.01)


# --- outcome ----------------------------------------------------------------------------------------------------
def test_cancer_follows_plcom2012_at_site_a(a: Sim) -> None:
    p = a.p
    ever = p.smoking_t0 != M.NEVER
    assert np.all(np.isnan(p.plcom2012_6y[~ever]))
    assert np.allclose(p.risk_6y[ever], p.plcom2012_6y[ever])  # site-a odds multiplier 1.0: the published model
    assert 0.025 <= p.plcom2012_6y[ever].mean() <= 0.045
    expected = p.risk_6y.sum()
    se = np.sqrt((p.risk_6y * (1 - p.risk_6y)).sum())
    assert abs(p.cancer.sum() - expected) < 4 * se
    # Calibration by risk decile: observed within 4 SE of expected in every fifth.
    order = np.argsort(p.risk_6y)
    for part in np.array_split(order, 5):
        exp_k = p.risk_6y[part].sum()
        assert abs(p.cancer[part].sum() - exp_k) < 4 * np.sqrt((p.risk_6y[part] * (1 - p.risk_6y[part])).sum()) + 2
    onset = p.onset_day[p.cancer] - p.t0_day[p.cancer]
    assert onset.min() >= 30 and onset.max() <= M.HORIZON_DAYS
    assert np.all(np.isnan(p.onset_day[~p.cancer]))
    assert _share(p.cancer_visible[p.cancer]) == pytest.approx(M.VISIBLE_CANCER_RATE, abs=0.06)
    assert not np.any(p.cancer_visible & ~p.cancer)


def test_site_b_has_higher_risk_than_site_a(a: Sim, b: Sim) -> None:
    ever_b = b.p.smoking_t0 != M.NEVER
    assert np.allclose(b.p.risk_6y[ever_b] / (1 - b.p.risk_6y[ever_b]),
                       1.4 * b.p.plcom2012_6y[ever_b] / (1 - b.p.plcom2012_6y[ever_b]))
    assert b.p.cancer.mean() > a.p.cancer.mean()
    assert _share(b.p.race == 1) == pytest.approx(0.22, abs=0.012)
    assert len(set(b.s.scanner.tolist())) == 3


# --- nodules ----------------------------------------------------------------------------------------------------
def test_malignant_and_benign_nodules_differ_like_brock(a: Sim) -> None:
    t = a.t
    mal, ben = t.malignant, ~t.malignant
    assert mal.sum() == a.p.cancer_visible.sum()
    upper = (t.lobe == phantom.RUL) | (t.lobe == phantom.LUL)
    assert _share(upper[mal]) == pytest.approx(0.59, abs=0.06)
    assert _share(upper[ben]) == pytest.approx(0.42, abs=0.02)
    spic = t.margin == M.SPICULATED
    assert _share(spic[mal]) == pytest.approx(0.18, abs=0.05)
    assert _share(spic[ben]) == pytest.approx(0.08, abs=0.01)
    part = t.composition == M.PART_SOLID
    assert _share(part[mal]) == pytest.approx(0.18, abs=0.05)
    assert _share(part[ben]) == pytest.approx(0.06, abs=0.01)
    ever = a.p.smoking_t0 != M.NEVER
    benign_per_patient = np.bincount(a.t_patient[ben], minlength=len(a.p))
    assert benign_per_patient.max() <= 6
    assert benign_per_patient[ever].mean() > benign_per_patient[~ever].mean()
    assert benign_per_patient.mean() == pytest.approx(0.45 + 0.35 * ever.mean() + 0.25 * a.p.emphysema.mean(),
                                                      abs=0.03)


def test_growth_malignant_vdt_and_benign_stability(a: Sim) -> None:
    t = a.t
    solid_mal = t.malignant & (t.composition == M.SOLID)
    assert 150 <= np.median(t.vdt_days[solid_mal]) <= 260
    assert t.vdt_days[solid_mal].min() >= 60 and t.vdt_days[solid_mal].max() <= 600
    assert np.median(t.vdt_days[t.malignant & (t.composition == NONSOLID)]) > 600
    # Observed VDT between a nodule's first and last study equals the drawn one (volumes follow it).
    r = a.rows
    s_day = a.s.day[r["study"]]
    for track in np.nonzero(solid_mal)[0][:200]:
        seen = np.nonzero(r["track"] == track)[0]
        if len(seen) < 2 or s_day[seen[-1]] - s_day[seen[0]] < 180:
            continue
        v1, v2 = r["volume"][seen[0]], r["volume"][seen[-1]]
        vdt = (s_day[seen[-1]] - s_day[seen[0]]) * np.log(2) / np.log(v2 / v1)
        assert vdt == pytest.approx(t.vdt_days[track], rel=0.02)
    stable = np.isin(r["track"], np.nonzero(t.behaviour == M.STABLE)[0])
    for track in np.unique(r["track"][stable])[:200]:
        vols = r["volume"][r["track"] == track]
        assert np.ptp(vols) == 0


def test_nodules_lie_inside_their_lobe(a: Sim) -> None:
    t = a.t
    assert np.array_equal(phantom.lobe_of(t.anat_x, t.anat_y, t.anat_z), t.lobe)
    assert np.all(phantom.inside_lung(t.anat_x, t.anat_y, t.anat_z, margin_mm=1.0))


def test_screening_schedule(a: Sim) -> None:
    s, p = a.s, a.p
    assert np.array_equal(np.unique(a.s_patient[s.kind == M.BASELINE]), np.arange(len(p)))
    assert np.array_equal(s.day[s.kind == M.BASELINE], p.t0_day[a.s_patient[s.kind == M.BASELINE]])
    assert np.all(s.day <= 0)
    onset = np.where(p.cancer, p.onset_day, np.inf)[a.s_patient]
    assert np.all(s.day < onset)
    kinds = np.bincount(s.kind, minlength=4)
    assert kinds[M.FOLLOW_UP_3M] > 0 and kinds[M.FOLLOW_UP_6M] > 0
    assert 2.0 <= len(s) / len(p) <= 3.5
    # Follow-ups come 3 or 6 months after an annual study with a category >= 3.
    fu = np.nonzero(s.kind >= M.FOLLOW_UP_3M)[0]
    prev = fu - 1
    assert np.all(a.s_patient[prev] == a.s_patient[fu])
    assert np.all(s.category[prev] >= 3)
    gap = s.day[fu] - s.day[prev]
    assert np.all(np.where(s.kind[fu] == M.FOLLOW_UP_3M, abs(gap - 91) < 40, abs(gap - 183) < 40))


def test_labs_and_pre_diagnostic_signal(a: Sim) -> None:
    lab, p = a.labs, a.p
    assert 3.5 <= len(lab) / len(p) <= 6.0
    assert _share(lab.alt_unit) == pytest.approx(M.LAB_ALT_UNIT_RATE, abs=0.005)
    assert _share(lab.missing_unit) == pytest.approx(M.LAB_MISSING_UNIT_RATE, abs=0.002)
    crp = lab.analyte == M.LAB_CRP
    onset = np.where(p.cancer, p.onset_day, np.inf)[a.l_patient]
    pre = (onset - lab.day >= 0) & (onset - lab.day <= M.PRE_DIAGNOSTIC_DAYS)
    assert np.median(lab.value[crp & pre]) > 1.6 * np.median(lab.value[crp & ~pre])
    ratio = lab.analyte == M.LAB_FEV1_FVC
    copd = p.copd[a.l_patient]
    assert np.median(lab.value[ratio & copd]) < 70 < np.median(lab.value[ratio & ~copd])


# --- signal: fusion beats either source alone, by construction --------------------------------------------------
def test_both_ehr_and_imaging_carry_signal_and_together_beat_either(a: Sim) -> None:
    p, r = a.p, a.rows
    ai_max = np.full(len(p), 0.0)
    np.maximum.at(ai_max, r["patient"][r["detected"]], r["ai"][r["detected"]])
    logit = lambda x: np.log(np.clip(x, 1e-3, 1 - 1e-3) / (1 - np.clip(x, 1e-3, 1 - 1e-3)))  # noqa: E731
    auc_ehr = roc_auc_score(p.cancer, p.risk_6y)
    auc_img = roc_auc_score(p.cancer, ai_max)
    auc_both = roc_auc_score(p.cancer, logit(p.risk_6y) + logit(np.maximum(ai_max, 0.01)))
    assert 0.72 <= auc_ehr <= 0.87  # PLCOm2012 validated at 0.797 (NEJM 2013)
    assert auc_img >= 0.75
    assert auc_both >= max(auc_ehr, auc_img) + 0.02


# --- determinism -----------------------------------------------------------------------------------------------
def _equal(x: Any, y: Any) -> bool:
    return all(np.array_equal(getattr(x, f.name), getattr(y, f.name), equal_nan=getattr(x, f.name).dtype.kind == "f")
               for f in fields(x))


def test_same_seed_same_cohort_and_different_seed_differs() -> None:
    one = M.simulate_chunk(5, SITE_A, 2, AS_OF)
    two = M.simulate_chunk(5, SITE_A, 2, AS_OF)
    for name in ("patients", "tracks", "studies", "nodules", "labs", "orders"):
        assert _equal(getattr(one, name), getattr(two, name)), name
    other = M.simulate_chunk(6, SITE_A, 2, AS_OF)
    assert not np.array_equal(one.patients.age_t0, other.patients.age_t0)
    assert not np.array_equal(one.patients.age_t0, M.simulate_chunk(5, SITE_B, 2, AS_OF).patients.age_t0)
    assert one.patients.index[0] == 2 * M.CHUNK_PATIENTS + 1


def test_prefix_stability_and_subsets() -> None:
    full = M.simulate_chunk(5, SITE_A, 0, AS_OF)
    head = M.simulate_chunk(5, SITE_A, 0, AS_OF, n=40)
    assert len(head.patients) == 40
    assert np.array_equal(head.patients.age_t0, full.patients.age_t0[:40])
    assert np.array_equal(head.studies.day, full.studies.day[full.studies.patient < 40])
    part = full.subset(100, 140)
    assert np.array_equal(part.patients.index, full.patients.index[100:140])
    keep = (full.nodules.patient >= 100) & (full.nodules.patient < 140)
    assert np.array_equal(part.nodules.long_mm, full.nodules.long_mm[keep])
    # Re-indexed references still point at the same study and nodule.
    assert np.array_equal(part.studies.day[part.nodules.study], full.studies.day[full.nodules.study[keep]])
    assert np.array_equal(part.tracks.anat_x[part.nodules.track], full.tracks.anat_x[full.nodules.track[keep]])
    assert np.array_equal(part.studies.patient[part.nodules.study], part.nodules.patient)
