"""A small stand-in feature table with the schemas' columns and a known signal in both modalities.

Used by the fast tests so they do not depend on the cohort generator: the label follows a logistic model with
an EHR part (age, pack-years, COPD, family history) and an imaging part (nodule size, spiculation, AI score,
growth), so a fusion model must beat either modality alone. Not a clinical model of anything.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from fusion_models.features import COMPOSITION_LEVELS, MARGIN_LEVELS, RACE_LEVELS


def _logistic(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def patient_table(n: int = 3000, seed: int = 0, imaging_rate: float = 0.85, shift: float = 0.0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.uniform(50, 80, n).round()
    status = rng.choice(["current", "former", "never"], n, p=[0.4, 0.45, 0.15])
    smoker = status != "never"
    cpd = np.where(smoker, rng.uniform(5, 40, n).round(), np.nan)
    duration = np.where(smoker, rng.uniform(10, 50, n).round(), np.nan)
    pack_years = np.where(smoker, cpd / 20 * duration, 0.0)
    quit = np.where(status == "former", rng.uniform(0, 20, n).round(), np.where(status == "current", 0.0, np.nan))
    copd = rng.random(n) < 0.15 + 0.2 * smoker
    family = rng.random(n) < 0.1
    has_ct = rng.random(n) < imaging_rate
    nodules = np.where(has_ct, rng.poisson(1.2, n), 0)
    has_nod = nodules > 0
    diameter = np.where(has_nod, rng.gamma(2.5, 3.0, n).clip(2, 40).round(1), np.nan)
    spic = np.where(has_nod, (rng.random(n) < 0.15).astype(float), np.nan)
    upper = np.where(has_nod, (rng.random(n) < 0.5).astype(float), np.nan)
    growth = np.where(has_nod & (rng.random(n) < 0.6), rng.normal(0.2, 0.8, n), np.nan)
    ehr_lp = (0.06 * (age - 65) + 0.025 * np.nan_to_num(pack_years) + 0.5 * copd + 0.5 * family
              - 0.03 * np.nan_to_num(quit))
    img_lp = np.where(has_nod, 0.12 * (np.nan_to_num(diameter) - 8) + 1.0 * np.nan_to_num(spic)
                      + 0.8 * np.nan_to_num(growth), -0.3 * has_ct)
    ai = np.where(has_nod, _logistic(img_lp + rng.normal(0, 1.0, n) - 1.5), np.nan)
    lp = -3.2 + ehr_lp + img_lp + shift
    y = (rng.random(n) < _logistic(lp)).astype(np.int8)
    lab = lambda mu, sd: np.where(rng.random(n) < 0.6, rng.normal(mu, sd, n).clip(0.1), np.nan)  # noqa: E731
    drawn = rng.choice(COMPOSITION_LEVELS[:3], n, p=[0.7, 0.15, 0.15])
    comp = np.array([str(c) if h else None for c, h in zip(drawn, has_nod, strict=True)], dtype=object)
    frame = pl.DataFrame({
        "patient_id": [f"p{seed}-{i:05d}" for i in range(n)],
        "age_years": age, "sex": rng.choice(["female", "male"], n),
        "race_ethnicity": rng.choice(RACE_LEVELS[:4], n, p=[0.7, 0.12, 0.1, 0.08]),
        "education_level": rng.integers(1, 7, n).astype(float), "bmi": rng.normal(27, 4, n).clip(15, 50).round(1),
        "copd": copd, "emphysema": rng.random(n) < 0.1, "personal_history_cancer": rng.random(n) < 0.08,
        "family_history_lung_cancer": family, "smoking_status": status, "cigarettes_per_day": cpd,
        "smoking_duration_years": duration, "years_since_quit": quit, "pack_years": pack_years,
        "lab_wbc": lab(7, 2), "lab_hemoglobin": lab(14, 1.5), "lab_platelets": lab(250, 60),
        "lab_neutrophils": lab(4.5, 1.5), "lab_lymphocytes": lab(2, 0.6), "lab_crp": lab(4, 3),
        "lab_albumin": lab(4.2, 0.4), "lab_fev1": lab(2.6, 0.7), "lab_fev1_fvc": lab(70, 10),
        "ct_study_count": np.where(has_ct, rng.integers(1, 5, n), np.nan).astype(float),
        "nodule_count": np.where(has_ct, nodules, np.nan).astype(float),
        "index_nodule_diameter_mm": diameter, "index_nodule_composition": pl.Series(comp.tolist(), dtype=pl.String),
        "index_nodule_solid_component_mm": np.where(comp == "part_solid", np.nan_to_num(diameter) / 2, np.nan),
        "index_nodule_spiculated": spic, "index_nodule_upper_lobe": upper, "index_nodule_ai_probability": ai,
        "index_nodule_volume_change_pct": np.where(np.isfinite(growth), (2 ** (growth * 0.5) - 1) * 100, np.nan),
        "index_nodule_growth_interval_days": np.where(np.isfinite(growth), 182.0, np.nan),
        "index_nodule_doublings_per_year": growth, "max_ai_probability": ai,
        "lung_cancer": y,
        "scanner_vendor": rng.choice(["Siemens", "GE"], n), "scanner_kernel": rng.choice(["B30f", "STANDARD"], n),
        "site": ["standin"] * n,
    }, strict=False)
    return frame.with_columns(pl.col(["copd", "emphysema", "personal_history_cancer", "family_history_lung_cancer"])
                              .cast(pl.Int8))


def nodule_table(n_patients: int = 1500, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed + 100)
    rows: list[dict[str, object]] = []
    for i in range(n_patients):
        age = float(round(rng.uniform(50, 80)))
        female = rng.random() < 0.5
        status = str(rng.choice(["current", "former", "never"], p=[0.4, 0.45, 0.15]))
        pack_years = 0.0 if status == "never" else float(round(rng.uniform(5, 80)))
        emph = int(rng.random() < 0.15)
        family = int(rng.random() < 0.1)
        count = int(rng.integers(1, 5))
        for k in range(count):
            d = round(float(np.clip(rng.gamma(2.5, 3.0), 2, 40)), 1)
            comp = str(rng.choice(COMPOSITION_LEVELS[:3], p=[0.7, 0.15, 0.15]))
            margin = str(rng.choice(MARGIN_LEVELS, p=[0.6, 0.15, 0.1, 0.15]))
            growth = float(rng.normal(0.2, 0.8)) if rng.random() < 0.6 else None
            lp = (-4.0 + 0.15 * (d - 8) + 1.0 * (margin == "spiculated") + (0.8 * growth if growth else 0)
                  + 0.03 * (age - 65) + 0.015 * pack_years + 0.4 * emph)
            ai = float(_logistic(np.array(lp + rng.normal(0, 1.0) + 1.0)))
            rows.append({
                "patient_id": f"n{seed}-{i:05d}", "nodule_id": f"n{seed}-{i:05d}-{k}", "age_years": age,
                "sex": "female" if female else "male", "emphysema": emph, "copd": int(rng.random() < 0.2),
                "personal_history_cancer": int(rng.random() < 0.08), "family_history_lung_cancer": family,
                "smoking_status": status, "pack_years": pack_years, "nodule_diameter_mm": d,
                "nodule_volume_mm3": float(np.pi / 6 * d**3), "nodule_composition": comp,
                "nodule_solid_component_mm": d / 2 if comp == "part_solid" else None, "nodule_margin": margin,
                "nodule_upper_lobe": int(rng.random() < 0.5),
                "nodule_ai_probability": ai, "nodule_count": float(count),
                "nodule_observation_count": 2.0 if growth is not None else 1.0,
                "nodule_volume_change_pct": (2 ** (growth * 0.5) - 1) * 100 if growth is not None else None,
                "nodule_growth_interval_days": 182.0 if growth is not None else None,
                "nodule_doublings_per_year": growth,
                "malignant": int(rng.random() < _logistic(np.array(lp)).item()),
                "baseline_brock": float(_logistic(np.array(-6.8 + 0.5 * d ** 0.5 + 0.77 * (margin == "spiculated")))),
                "scanner_vendor": str(rng.choice(["Siemens", "GE"])), "site": "standin",
            })
    return pl.DataFrame(rows, infer_schema_length=None)
