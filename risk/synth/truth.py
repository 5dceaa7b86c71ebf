"""Ground truth as parquet: OUT/truth/{patients,studies,nodules,labs,orders}.parquet.

The truth holds the *true* values (before any record-keeping messiness) and the flags saying how each patient's
FHIR record was made messy, so ingestion tests can check what was recovered. Columns are listed in README.md;
dates are ``Date``, identifiers are the FHIR ids and DICOM UIDs the other outputs use.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from risk import codes
from risk.synth import fhir as F
from risk.synth import model as M
from risk.synth import phantom, uids
from risk.synth.model import Cohort
from risk.synth.risk_equations import RACE_ORDER

TABLES = ("patients", "studies", "nodules", "labs", "orders")

_SMOKING = np.array(["current", "former", "never"], dtype=object)
_BMI_FORM = np.array(["bmi+height+weight", "bmi", "height+weight", "none"], dtype=object)
_QUANTITIES = np.array(["full", "pack-years-only", "status-only"], dtype=object)
_LAB_LOINC = np.array([c.code for c in F.LAB_CODES], dtype=object)


def _dates(as_of: date, days: np.ndarray) -> pl.Series:
    arr = np.asarray(days, dtype=np.float64)
    base = np.datetime64(as_of, "D")
    out = np.full(arr.shape, np.datetime64("NaT"), dtype="datetime64[D]")
    ok = ~np.isnan(arr)
    out[ok] = base + arr[ok].astype(np.int64).astype("timedelta64[D]")
    return pl.Series(out, dtype=pl.Date)


def _f(values: np.ndarray) -> pl.Series:
    return pl.Series(np.asarray(values, dtype=np.float64), dtype=pl.Float64, nan_to_null=True)


def _s(values: list[str] | np.ndarray) -> pl.Series:
    return pl.Series(list(values), dtype=pl.String)


def truth_frames(c: Cohort, ct_matrix: int) -> dict[str, pl.DataFrame]:
    """The five truth tables of one (sub-)chunk."""
    p, s, t, r, lab, o, site = c.patients, c.studies, c.tracks, c.nodules, c.labs, c.orders, c.site
    seed, sn = c.seed, site.number
    index = p.index.tolist()
    pid = np.array([uids.patient_id(site.id_prefix, i) for i in index], dtype=object)
    ever = p.smoking_t0 != M.NEVER
    quit_after_t0 = (p.smoking_t0 == M.CURRENT) & ~np.isnan(p.quit_day)
    latest = np.where(quit_after_t0, M.FORMER, p.smoking_t0)
    n_studies = np.bincount(s.patient, minlength=len(p))
    recorded = p.cancer & (np.nan_to_num(p.onset_day, nan=1.0) <= 0)
    patients = pl.DataFrame({
        "patient_id": _s(pid), "mrn": _s([uids.mrn(site.mrn_prefix, i) for i in index]),
        "site": _s([site.name] * len(p)), "patient_number": pl.Series(p.index, dtype=pl.Int64),
        "sex": _s(np.where(p.female, "female", "male")), "birth_date": _dates(c.as_of, p.birth_day),
        "race_ethnicity": _s([RACE_ORDER[k].value for k in p.race.tolist()]),
        "t0_date": _dates(c.as_of, p.t0_day), "age_t0": _f(np.round(p.age_t0, 2)),
        "education_level": pl.Series(p.education, dtype=pl.Int64), "height_cm": _f(p.height_cm),
        "weight_kg": _f(p.weight_kg), "bmi": _f(p.bmi),
        "smoking_status_t0": _s(_SMOKING[p.smoking_t0]), "smoking_status_latest": _s(_SMOKING[latest]),
        "cigarettes_per_day": _f(p.cigarettes_per_day), "smoking_start_age": _f(np.round(p.start_age, 1)),
        "years_smoked_t0": _f(p.years_smoked_t0), "years_since_quit_t0": _f(np.round(p.years_since_quit_t0, 3)),
        "quit_date": _dates(c.as_of, p.quit_day), "pack_years_t0": _f(np.where(ever, p.pack_years, np.nan)),
        "copd": pl.Series(p.copd), "emphysema": pl.Series(p.emphysema),
        "personal_cancer_history": pl.Series(p.personal_cancer),
        "family_history_lung_cancer": pl.Series(p.family_history),
        "plcom2012_6y": _f(p.plcom2012_6y), "risk_6y": _f(p.risk_6y),
        "lung_cancer": pl.Series(p.cancer), "lung_cancer_onset_date": _dates(c.as_of, p.onset_day),
        "lung_cancer_recorded": pl.Series(recorded), "cancer_from_visible_nodule": pl.Series(p.cancer_visible),
        "n_studies": pl.Series(n_studies.astype(np.int64), dtype=pl.Int64),
        "fhir_bmi_form": _s(_BMI_FORM[p.bmi_form]),
        "fhir_height_weight_alt_units": pl.Series(p.height_weight_alt_units & np.isin(p.bmi_form, (0, 2))),
        "fhir_education_recorded": pl.Series(p.education_recorded),
        "fhir_smoking_conflict": pl.Series(p.smoking_conflict),
        "fhir_smoking_quantities": _s(np.where(ever, _QUANTITIES[p.smoking_quantities], "status-only")),
        "fhir_packs_per_day": pl.Series(ever & (p.smoking_quantities == 0) & p.packs_per_day_form),
        "fhir_family_history_as_condition": pl.Series(p.family_history & p.family_history_as_condition),
        "fhir_second_degree_family_history": pl.Series(p.second_degree_family_history),
        "fhir_copd_icd10": pl.Series(p.copd & p.copd_icd),
        "fhir_lung_cancer_icd10": pl.Series(recorded & p.cancer_icd),
    })

    sp = s.patient
    s_index = p.index[sp].tolist()
    s_ord = s.ordinal.tolist()
    geometry = phantom.GEOMETRIES[ct_matrix]
    scanner = [site.scanners[k] for k in s.scanner.tolist()]
    kernels = [sc.kernels[k] for sc, k in zip(scanner, s.kernel.tolist(), strict=True)]
    cat_names = np.array(["", "1", "2", "3", "4A", "4B"], dtype=object)
    reported = np.bincount(r.study[r.detected], minlength=len(s))
    visible = np.bincount(r.study, minlength=len(s))
    studies = pl.DataFrame({
        "patient_id": _s(pid[sp]),
        "study_instance_uid": _s([uids.study_uid(seed, sn, i, k) for i, k in zip(s_index, s_ord, strict=True)]),
        "ct_series_instance_uid": _s([uids.ct_series_uid(seed, sn, i, k)
                                      for i, k in zip(s_index, s_ord, strict=True)]),
        "sr_series_instance_uid": _s([uids.sr_series_uid(seed, sn, i, k)
                                      for i, k in zip(s_index, s_ord, strict=True)]),
        "sr_sop_instance_uid": _s([uids.sr_instance_uid(seed, sn, i, k) for i, k in zip(s_index, s_ord, strict=True)]),
        "frame_of_reference_uid": _s([uids.frame_of_reference_uid(seed, sn, i, k)
                                      for i, k in zip(s_index, s_ord, strict=True)]),
        "accession_number": _s([uids.accession_number(site.accession_prefix, i, k)
                                for i, k in zip(s_index, s_ord, strict=True)]),
        "imaging_study_id": _s([f"{x}-ct-{k}" for x, k in zip(pid[sp], s_ord, strict=True)]),
        "service_request_id": _s([f"{x}-ldct-{k}" for x, k in zip(pid[sp], s_ord, strict=True)]),
        "study_date": _dates(c.as_of, s.day), "study_ordinal": pl.Series(s.ordinal, dtype=pl.Int64),
        "screening_round": pl.Series(s.round, dtype=pl.Int64),
        "kind": _s(np.array(M.STUDY_KIND_NAMES, dtype=object)[s.kind]),
        "manufacturer": _s([sc.manufacturer for sc in scanner]), "model": _s([sc.model for sc in scanner]),
        "convolution_kernel": _s([k.name for k in kernels]),
        "noise_sd_hu": _f(np.array([k.noise_sd_hu for k in kernels])),
        "ct_instances": pl.Series(np.full(len(s), geometry.n_slices), dtype=pl.Int64),
        "offset_x_mm": _f(s.offset_x), "offset_y_mm": _f(s.offset_y), "offset_z_mm": _f(s.offset_z),
        "sr_shape": _s(np.array(M.SR_STYLE_NAMES, dtype=object)[s.sr_style]),
        "sr_tracking_uids_stripped": pl.Series(s.sr_strip_tracking),
        "sr_legacy_srt": pl.Series(s.sr_legacy_srt),
        "lung_rads_like_category": _s(cat_names[s.category]),
        "nodules_visible": pl.Series(visible.astype(np.int64), dtype=pl.Int64),
        "nodules_reported": pl.Series(reported.astype(np.int64), dtype=pl.Int64),
    })

    tr = r.track
    r_index = p.index[r.patient].tolist()
    r_ord = t.ordinal[tr].tolist()
    upper = (t.lobe[tr] == phantom.RUL) | (t.lobe[tr] == phantom.LUL)
    nodules = pl.DataFrame({
        "patient_id": _s(pid[r.patient]),
        "study_instance_uid": _s([uids.study_uid(seed, sn, i, k)
                                  for i, k in zip(r_index, s.ordinal[r.study].tolist(), strict=True)]),
        "study_date": _dates(c.as_of, s.day[r.study]),
        "nodule": pl.Series(t.ordinal[tr], dtype=pl.Int64),
        "tracking_identifier": _s([f"Nodule {k}" for k in r_ord]),
        "tracking_uid": _s([uids.tracking_uid(seed, sn, i, k) for i, k in zip(r_index, r_ord, strict=True)]),
        "malignant": pl.Series(t.malignant[tr]),
        "behaviour": _s(np.array(M.BEHAVIOUR_NAMES, dtype=object)[t.behaviour[tr]]),
        "composition": _s(np.array(M.COMPOSITION_NAMES, dtype=object)[t.composition[tr]]),
        "lobe": _s(np.array(phantom.LOBE_NAMES, dtype=object)[t.lobe[tr]]),
        "lobe_snomed": _s([codes.LOBES[name].code for name in np.array(phantom.LOBE_NAMES)[t.lobe[tr]]]),
        "upper_lobe": pl.Series(upper),
        "margin": _s(np.array(M.MARGIN_NAMES, dtype=object)[t.margin[tr]]),
        "spiculated": pl.Series(t.margin[tr] == M.SPICULATED),
        "centre_x_mm": _f(r.centre_x), "centre_y_mm": _f(r.centre_y), "centre_z_mm": _f(r.centre_z),
        "long_axis_mm": _f(r.long_mm), "short_axis_mm": _f(r.short_mm), "cc_axis_mm": _f(r.cc_mm),
        "long_axis_along_x": pl.Series(t.long_along_x[tr]),
        "mean_diameter_mm": _f(np.round((r.long_mm + r.short_mm) / 2, 2)), "volume_mm3": _f(r.volume_mm3),
        "solid_component_mm": _f(r.core_mm), "vdt_days": _f(np.round(t.vdt_days[tr], 1)),
        "detected_by_ai": pl.Series(r.detected),
        "sr_long_axis_mm": _f(np.where(r.detected, r.measured_long_mm, np.nan)),
        "sr_short_axis_mm": _f(np.where(r.detected, r.measured_short_mm, np.nan)),
        "sr_volume_mm3": _f(np.where(r.detected, r.measured_volume_mm3, np.nan)),
        "sr_solid_component_mm": _f(np.where(r.detected, r.measured_core_mm, np.nan)),
        "sr_centre_x_mm": _f(np.where(r.detected, r.measured_x, np.nan)),
        "sr_centre_y_mm": _f(np.where(r.detected, r.measured_y, np.nan)),
        "sr_centre_z_mm": _f(np.where(r.detected, r.measured_z, np.nan)),
        "ai_probability": _f(np.where(r.detected, r.ai_probability, np.nan)),
    })

    lp = lab.patient
    kind = np.where(lab.analyte >= M.LAB_FEV1, "spiro", "lab")
    slugs = np.array(M.LAB_SLUGS, dtype=object)[lab.analyte]
    reported_pairs = [F.lab_reported(a, v, alt) for a, v, alt in
                      zip(lab.analyte.tolist(), lab.value.tolist(), lab.alt_unit.tolist(), strict=True)]
    onset = np.where(p.cancer[lp], p.onset_day[lp], np.inf)
    labs = pl.DataFrame({
        "patient_id": _s(pid[lp]),
        "observation_id": _s([f"{x}-{k}-{d}-{sl}" for x, k, d, sl in
                              zip(pid[lp], kind, lab.draw.tolist(), slugs, strict=True)]),
        "loinc": _s(_LAB_LOINC[lab.analyte]), "analyte": _s(slugs), "date": _dates(c.as_of, lab.day),
        "value": _f(lab.value), "unit": _s(np.array(F.LAB_UNITS, dtype=object)[lab.analyte]),
        "reported_value": _f(np.array([v for v, _ in reported_pairs], dtype=np.float64)),
        "reported_unit": pl.Series([None if m else u for (_, u), m in
                                    zip(reported_pairs, lab.missing_unit.tolist(), strict=True)], dtype=pl.String),
        "pre_diagnostic": pl.Series((onset - lab.day >= 0) & (onset - lab.day <= M.PRE_DIAGNOSTIC_DAYS)),
    })

    orders = pl.DataFrame({
        "patient_id": _s(pid[o.patient]),
        "service_request_id": _s([f"{x}-ldct-fu-{k}" for x, k in zip(pid[o.patient], o.ordinal.tolist(), strict=True)]),
        "due_date": _dates(c.as_of, o.due_day), "authored_date": _dates(c.as_of, o.authored_day),
        "kind": _s(np.array(M.STUDY_KIND_NAMES, dtype=object)[o.kind]),
        "overdue": pl.Series(o.due_day <= 0),
    })
    return {"patients": patients, "studies": studies, "nodules": nodules, "labs": labs, "orders": orders}


class TruthWriter:
    """Appends each chunk's tables to OUT/truth/<table>.parquet (one row group per chunk)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._writers: dict[str, pq.ParquetWriter] = {}
        self.rows: dict[str, int] = dict.fromkeys(TABLES, 0)

    def write(self, frames: dict[str, pl.DataFrame]) -> None:
        for name in TABLES:
            table = frames[name].to_arrow()
            writer = self._writers.get(name)
            if writer is None:
                writer = pq.ParquetWriter(self.directory / f"{name}.parquet", table.schema, compression="zstd")
                self._writers[name] = writer
            writer.write_table(table.cast(writer.schema))
            self.rows[name] += table.num_rows

    def close(self) -> dict[str, int]:
        for writer in self._writers.values():
            writer.close()
        return dict(self.rows)
