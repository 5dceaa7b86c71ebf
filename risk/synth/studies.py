"""One CT study of one patient, gathered from the cohort tables: what the CT writer and the SR builder need."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from risk.synth import model as M
from risk.synth import phantom, uids
from risk.synth.fhir import day_strings
from risk.synth.model import Cohort


@dataclass(frozen=True, slots=True)
class StudyNodule:
    """A nodule as seen on one study: truth (pixel data) and what the vendor AI measured (SR)."""

    ordinal: int
    tracking_uid: str
    lobe: int
    composition: int
    margin: int
    malignant: bool
    rendered: phantom.RenderedNodule
    detected: bool
    measured_long_mm: float
    measured_short_mm: float
    measured_volume_mm3: float
    measured_core_mm: float | None
    measured_centre_mm: tuple[float, float, float]
    ai_probability: float


@dataclass(frozen=True, slots=True)
class StudyContext:
    patient_index: int
    patient_id: str
    mrn: str
    patient_name: str
    birth_date: str
    """DICOM DA (YYYYMMDD)."""
    sex: str
    age_years: int
    ordinal: int
    study_uid: str
    ct_series_uid: str
    sr_series_uid: str
    sr_sop_uid: str
    frame_of_reference_uid: str
    device_uid: str
    accession: str
    date: str
    """DICOM DA (YYYYMMDD)."""
    time: str
    """DICOM TM (HHMMSS)."""
    time_point: str
    manufacturer: str
    model: str
    kernel: str
    noise_sd_hu: float
    institution: str
    offset_mm: tuple[float, float, float]
    nodules: tuple[StudyNodule, ...]
    sr_style: int
    strip_tracking_uids: bool
    legacy_srt: bool
    render_seed: tuple[int, ...]


def study_contexts(cohort: Cohort, patient: int) -> list[StudyContext]:
    """Every study of chunk-local patient ``patient``, oldest first."""
    p, s, t, rows, site = cohort.patients, cohort.studies, cohort.tracks, cohort.nodules, cohort.site
    seed, site_no = cohort.seed, site.number
    index = int(p.index[patient])
    pid = uids.patient_id(site.id_prefix, index)
    study_idx = np.nonzero(s.patient == patient)[0]
    dates = [d.replace("-", "") for d in day_strings(cohort.as_of, s.day[study_idx])]
    birth = day_strings(cohort.as_of, p.birth_day[patient:patient + 1])[0].replace("-", "")
    out: list[StudyContext] = []
    for j, study in enumerate(study_idx.tolist()):
        k = int(s.ordinal[study])
        scanner = site.scanners[int(s.scanner[study])]
        kernel = scanner.kernels[int(s.kernel[study])]
        minute = int(s.minute[study])
        age = int((int(s.day[study]) - int(p.birth_day[patient])) // M.DAYS_PER_YEAR)
        kind = int(s.kind[study])
        label = f"T{int(s.round[study])}" + {M.FOLLOW_UP_3M: "-FU3M", M.FOLLOW_UP_6M: "-FU6M"}.get(kind, "")
        nodules = []
        for r in np.nonzero(rows.study == study)[0].tolist():
            tr = int(rows.track[r])
            long_mm, short_mm, cc_mm = float(rows.long_mm[r]), float(rows.short_mm[r]), float(rows.cc_mm[r])
            semi = (long_mm / 2, short_mm / 2, cc_mm / 2) if t.long_along_x[tr] else (short_mm / 2, long_mm / 2,
                                                                                       cc_mm / 2)
            core = float(rows.measured_core_mm[r])
            nodules.append(StudyNodule(
                ordinal=int(t.ordinal[tr]), tracking_uid=uids.tracking_uid(seed, site_no, index, int(t.ordinal[tr])),
                lobe=int(t.lobe[tr]), composition=int(t.composition[tr]), margin=int(t.margin[tr]),
                malignant=bool(t.malignant[tr]),
                rendered=phantom.RenderedNodule(
                    (float(rows.centre_x[r]), float(rows.centre_y[r]), float(rows.centre_z[r])), semi,
                    float(t.core_fraction[tr])),
                detected=bool(rows.detected[r]), measured_long_mm=float(rows.measured_long_mm[r]),
                measured_short_mm=float(rows.measured_short_mm[r]),
                measured_volume_mm3=float(rows.measured_volume_mm3[r]),
                measured_core_mm=None if np.isnan(core) else core,
                measured_centre_mm=(float(rows.measured_x[r]), float(rows.measured_y[r]), float(rows.measured_z[r])),
                ai_probability=float(rows.ai_probability[r]),
            ))
        out.append(StudyContext(
            patient_index=index, patient_id=pid, mrn=uids.mrn(site.mrn_prefix, index),
            patient_name=f"Synthetic^{pid.upper()}", birth_date=birth, sex="F" if p.female[patient] else "M",
            age_years=age, ordinal=k, study_uid=uids.study_uid(seed, site_no, index, k),
            ct_series_uid=uids.ct_series_uid(seed, site_no, index, k),
            sr_series_uid=uids.sr_series_uid(seed, site_no, index, k),
            sr_sop_uid=uids.sr_instance_uid(seed, site_no, index, k),
            frame_of_reference_uid=uids.frame_of_reference_uid(seed, site_no, index, k),
            device_uid=uids.device_uid(seed, site_no),
            accession=uids.accession_number(site.accession_prefix, index, k), date=dates[j],
            time=f"{minute // 60:02d}{minute % 60:02d}00", time_point=label, manufacturer=scanner.manufacturer,
            model=scanner.model, kernel=kernel.name, noise_sd_hu=kernel.noise_sd_hu, institution=site.institution,
            offset_mm=(float(s.offset_x[study]), float(s.offset_y[study]), float(s.offset_z[study])),
            nodules=tuple(nodules), sr_style=int(s.sr_style[study]),
            strip_tracking_uids=bool(s.sr_strip_tracking[study]), legacy_srt=bool(s.sr_legacy_srt[study]),
            render_seed=(seed, site_no, index, k),
        ))
    return out
