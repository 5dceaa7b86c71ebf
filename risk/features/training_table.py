"""A cohort (FHIR Bulk NDJSON + reported nodules + outcomes) → the fusion models' training tables (parquet).

Layout read (the synthetic cohort of ``risk synth``; a site provides the same pieces):

* ``COHORT/fhir/ndjson/*.ndjson`` — the FHIR Bulk export → EHR features (risk/features/bulk.py, the same
  rules as the online path);
* ``COHORT/truth/nodules.parquet`` — what the vendor SR reported per nodule and study (``sr_*`` columns,
  composition, margin, lobe, AI probability, tracking UID, ``detected_by_ai``) → imaging features
  (risk/features/imaging.py, the same functions as the online path);
* outcomes: ``COHORT/truth/patients.parquet`` (``lung_cancer_onset_date``) and the ``malignant`` flag of
  ``truth/nodules.parquet``; a site passes its own outcome tables instead (:func:`build_training_tables`);
* ``COHORT/truth/studies.parquet`` (optional) — scanner vendor and kernel for the subgroup tables;
* ``COHORT/manifest.json`` — the as-of date and the site.

Prediction time and labels:

* **Index date** = the cohort's as-of date (``--as-of``): every feature uses data on or before it (exactly what a
  snapshot taken that day sees).
* **Patient task**: ``lung_cancer`` = 1 when lung cancer is diagnosed after the index date and within
  ``horizon_years`` (1-6) of it. Patients already diagnosed on or before the index date (prevalent cancers: the
  EHR row's ``lung_cancer`` or an onset on or before it) are left out: the model predicts future diagnoses.
* **Nodule task**: one row per nodule track observed (AI-detected) on or before the index date, with its
  latest measurement; ``malignant`` = the track's ground truth.

Baselines added for the evaluation report (null where the published model does not apply or an input is
missing): ``baseline_plcom2012`` (risk.guidelines.plcom2012; ever-smokers) and ``baseline_brock``
(risk.guidelines.brock; nodules of 1-30 mm, solid/part-solid/non-solid).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from fusion_models.features import NODULE_SCHEMA, PATIENT_SCHEMA
from fusion_models.schema import FeatureKind, FeatureSchema
from risk.errors import InvalidInput
from risk.features.bulk import build_feature_table
from risk.features.fusion_row import nodule_feature_rows, patient_row
from risk.features.imaging import tracks_from_table
from risk.guidelines import brock, plcom2012
from risk.sources.bulk import BulkExport

DAYS_PER_YEAR = 365.25
PATIENT_FILE = "patient.parquet"
NODULE_FILE = "nodule.parquet"
TABLES_FILE = "tables.json"
META_COLUMNS = ("site", "scanner_vendor", "scanner_kernel")


@dataclass
class TrainingTables:
    patient: pl.DataFrame
    nodule: pl.DataFrame
    info: dict[str, Any] = field(default_factory=dict)


def _typed(schema: FeatureSchema, rows: list[dict[str, Any]], extra: Mapping[str, pl.DataType]) -> pl.DataFrame:
    dtypes: dict[str, pl.DataType] = dict(extra)
    for spec in schema.features:
        dtypes[spec.name] = {FeatureKind.NUMERIC: pl.Float64(), FeatureKind.BINARY: pl.Boolean(),
                             FeatureKind.CATEGORICAL: pl.String()}[spec.kind]
    return pl.DataFrame(rows, schema=dtypes, orient="row")


def plcom2012_baseline(row: Mapping[str, Any]) -> float | None:
    """PLCOm2012 6-year risk of an ever-smoker with every input recorded, else None."""
    status = row.get("smoking_status")
    needed = ("age_years", "race_ethnicity", "education_level", "bmi", "cigarettes_per_day", "smoking_duration_years")
    if status not in ("current", "former") or any(row.get(k) is None for k in needed):
        return None
    quit_years = 0.0 if status == "current" else row.get("years_since_quit")
    if quit_years is None or not row["cigarettes_per_day"] > 0:
        return None
    return plcom2012.plcom2012_probability(
        age=float(row["age_years"]), race_ethnicity=str(row["race_ethnicity"]),
        education_level=int(row["education_level"]), bmi=float(row["bmi"]), copd=bool(row.get("copd")),
        personal_history_cancer=bool(row.get("personal_history_cancer")),
        family_history_lung_cancer=bool(row.get("family_history_lung_cancer")), current_smoker=status == "current",
        cigarettes_per_day=float(row["cigarettes_per_day"]),
        smoking_duration_years=float(row["smoking_duration_years"]), years_since_quit=float(quit_years))


def brock_baseline(row: Mapping[str, Any]) -> float | None:
    """Brock model 2b probability of one nodule within its scope (1-30 mm, non-calcified), else None."""
    size = row.get("nodule_diameter_mm")
    kind = row.get("nodule_composition")
    lo, hi = brock.SIZE_SCOPE_MM
    if size is None or not lo <= size <= hi or kind not in brock.NODULE_TYPE_TERMS or row.get("age_years") is None:
        return None
    if row.get("sex") is None or row.get("nodule_upper_lobe") is None or row.get("nodule_margin") is None:
        return None
    return brock.brock_probability(
        age=float(row["age_years"]), female=row["sex"] == "female",
        family_history_lung_cancer=bool(row.get("family_history_lung_cancer")),
        emphysema=bool(row.get("emphysema")), nodule_size_mm=float(size), nodule_type=str(kind),
        upper_lobe=bool(row["nodule_upper_lobe"]), nodule_count=int(row.get("nodule_count") or 1),
        spiculation=row["nodule_margin"] == "spiculated")


def _scanners(studies: pl.DataFrame | None, as_of: date) -> tuple[dict[str, tuple[str, str]], dict[tuple[str, date],
                                                                                                   tuple[str, str]]]:
    if studies is None:
        return {}, {}
    s = studies.filter(pl.col("study_date") <= as_of).sort("patient_id", "study_date")
    by_study: dict[tuple[str, date], tuple[str, str]] = {}
    latest: dict[str, tuple[str, str]] = {}
    columns = ("patient_id", "study_date", "manufacturer", "convolution_kernel")
    for pid, d, vendor, kernel in s.select(columns).iter_rows():
        by_study[(pid, d)] = (vendor, kernel)
        latest[pid] = (vendor, kernel)
    return latest, by_study


def build_training_tables(cohort_dir: Path, *, as_of: date | None = None, horizon_years: float = 6.0,
                          outcomes: pl.DataFrame | None = None, nodule_outcomes: pl.DataFrame | None = None
                          ) -> TrainingTables:
    """Both tasks' training tables for a cohort directory (see the module docstring).

    ``outcomes``: patient_id, lung_cancer_onset_date (null = none known); ``nodule_outcomes``: patient_id,
    tracking_uid, malignant. Default: the cohort's truth tables.
    """
    cohort = Path(cohort_dir)
    if not 1.0 <= horizon_years <= 6.0:
        raise InvalidInput("horizon_years", "must lie in 1-6 years")
    manifest_path = cohort / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    if as_of is None:
        if "as_of" not in manifest:
            raise InvalidInput("as_of", f"not given and {manifest_path} has none")
        as_of = date.fromisoformat(manifest["as_of"])
    site = str(manifest.get("site", ""))
    ndjson = cohort / "fhir" / "ndjson"
    if not ndjson.is_dir():
        raise InvalidInput("cohort_dir", f"{ndjson} does not exist (need the FHIR Bulk NDJSON)")
    truth = cohort / "truth"
    nodules_path = truth / "nodules.parquet"
    if not nodules_path.is_file():
        raise InvalidInput("cohort_dir", f"{nodules_path} does not exist (need the reported nodules)")
    ehr = build_feature_table(BulkExport(ndjson), as_of=as_of).table
    nodules = pl.read_parquet(nodules_path)
    tracks = tracks_from_table(nodules, as_of)
    if outcomes is None:
        outcomes = pl.read_parquet(truth / "patients.parquet", columns=["patient_id", "lung_cancer_onset_date"])
    if nodule_outcomes is None:
        nodule_outcomes = nodules.select("patient_id", "tracking_uid", "malignant").unique(
            ["patient_id", "tracking_uid"])
    onset = dict(outcomes.select("patient_id", "lung_cancer_onset_date").iter_rows())
    malignant = {(p, t): bool(m) for p, t, m in nodule_outcomes.select("patient_id", "tracking_uid", "malignant")
                 .iter_rows()}
    studies_path = truth / "studies.parquet"
    latest_scanner, study_scanner = _scanners(pl.read_parquet(studies_path) if studies_path.is_file() else None,
                                              as_of)
    horizon_end = as_of + timedelta(days=round(horizon_years * DAYS_PER_YEAR))

    patient_rows: list[dict[str, Any]] = []
    nodule_rows: list[dict[str, Any]] = []
    prevalent = 0
    for ehr_row in ehr.iter_rows(named=True):
        pid = ehr_row["patient_id"]
        patient_tracks = tracks.get(pid, [])
        vendor, kernel = latest_scanner.get(pid, (None, None))
        meta = {"patient_id": pid, "site": site, "scanner_vendor": vendor, "scanner_kernel": kernel}
        for key, row in nodule_feature_rows(ehr_row, patient_tracks):
            label = malignant.get((pid, key))
            if label is None:
                continue
            track = next(t for t in patient_tracks if t[-1].track_key == key)
            v, k = study_scanner.get((pid, track[-1].study_date), (None, None))
            nodule_rows.append({**row, **meta, "scanner_vendor": v, "scanner_kernel": k, "nodule_id": key,
                                "malignant": label, "baseline_brock": brock_baseline(row)})
        d = onset.get(pid)
        if ehr_row.get("lung_cancer") or (d is not None and d <= as_of):
            prevalent += 1
            continue
        row = patient_row(ehr_row, patient_tracks)
        patient_rows.append({**row, **meta, "lung_cancer": d is not None and d <= horizon_end,
                             "baseline_plcom2012": plcom2012_baseline(row)})
    meta_types: dict[str, pl.DataType] = {"patient_id": pl.String(), "site": pl.String(),
                                          "scanner_vendor": pl.String(), "scanner_kernel": pl.String()}
    patient = _typed(PATIENT_SCHEMA, patient_rows, {**meta_types, "lung_cancer": pl.Boolean(),
                                                     "baseline_plcom2012": pl.Float64()})
    nodule = _typed(NODULE_SCHEMA, nodule_rows, {**meta_types, "nodule_id": pl.String(), "malignant": pl.Boolean(),
                                                  "baseline_brock": pl.Float64()})
    info = {"cohort": str(cohort), "as_of": as_of.isoformat(), "horizon_years": horizon_years, "site": site,
            "synthetic": bool(manifest.get("synthetic", False)), "generator": manifest.get("generator_version"),
            "seed": manifest.get("seed"), "patients_in_export": ehr.height, "prevalent_cancers_excluded": prevalent,
            "patient_rows": patient.height, "patient_events": int(patient.get_column("lung_cancer").sum()),
            "nodule_rows": nodule.height, "nodule_events": int(nodule.get_column("malignant").sum()),
            "patient_schema_hash": PATIENT_SCHEMA.hash, "nodule_schema_hash": NODULE_SCHEMA.hash}
    return TrainingTables(patient=patient, nodule=nodule, info=info)


def write_training_tables(tables: TrainingTables, out_dir: Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"patient": out / PATIENT_FILE, "nodule": out / NODULE_FILE}
    tables.patient.write_parquet(paths["patient"])
    tables.nodule.write_parquet(paths["nodule"])
    (out / TABLES_FILE).write_text(json.dumps(tables.info, indent=1) + "\n")
    return paths
