"""One valid input per calculator, shared by the registry, CLI and HTTP tests."""

from __future__ import annotations

from typing import Any

SAMPLES: dict[str, dict[str, Any]] = {
    "plcom2012": {"age": 62, "race_ethnicity": "white", "education_level": 4, "bmi": 27, "copd": False,
                  "personal_history_cancer": False, "family_history_lung_cancer": False, "smoking_status": "former",
                  "cigarettes_per_day": 80, "smoking_duration_years": 27, "years_since_quit": 10},
    "plcom2012-norace": {"age": 63, "education_level": 1, "bmi": 36.01108, "copd": True,
                         "personal_history_cancer": True, "family_history_lung_cancer": True,
                         "smoking_status": "current", "cigarettes_per_day": 10, "smoking_duration_years": 12},
    "brock": {"age": 68, "sex": "female", "family_history_lung_cancer": False, "emphysema": False,
              "nodule_size_mm": 10, "nodule_type": "solid", "upper_lobe": True, "nodule_count": 4,
              "spiculation": True},
    "mayo": {"age": 65, "ever_smoker": True, "extrathoracic_cancer_over_5y": False, "nodule_diameter_mm": 12,
             "spiculation": True, "upper_lobe": True},
    "va": {"age": 62, "ever_smoker": False, "nodule_diameter_mm": 10},
    "lungrads": {"findings": [{"status": "baseline", "composition": "solid", "long_axis_mm": 6.2,
                               "short_axis_mm": 5.7}]},
    "fleischner": {"age": 60, "risk": "low", "nodules": [{"composition": "solid", "long_axis_mm": 7.2,
                                                          "short_axis_mm": 6.3}]},
    "eligibility": {"age": 65, "smoking_status": "former", "cigarettes_per_day": 20, "smoking_duration_years": 30,
                    "years_since_quit": 10},
    "vdt": {"d1_mm": 8, "d2_mm": 10, "interval_days": 90},
}

EXPECTED: dict[str, tuple[str, Any]] = {
    # model → (output field, expected value) for the samples above
    "plcom2012": ("probability_6yr", 0.01750922),  # resplab README
    "plcom2012-norace": ("probability_6yr", 0.01827511),  # ten Haaf N1
    "brock": ("probability", 0.1892),
    "mayo": ("probability", 0.4649),
    "va": ("probability", 0.0791),  # ER2019 worked example
    "lungrads": ("category", "3"),  # L05
    "fleischner": ("recommendation", "CT at 6-12 months, then consider CT at 18-24 months."),
    "eligibility": ("pack_years", 30.0),
    "vdt": ("growth_category", "growth_vdt_under_400"),
}
