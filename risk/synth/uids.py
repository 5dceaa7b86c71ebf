"""Deterministic DICOM UIDs and FHIR ids for the synthetic cohort.

UIDs are built from their position in the cohort under pydicom's UID root (which pydicom users may use):
``1.2.826.0.1.3680043.8.498.71.<seed>.<site>.<patient>.<study>.<kind>[.<n>]`` (71 = this generator's scheme), so
they are unique across seeds, sites, patients and studies, derived from the seed alone, never longer than 64
characters, and cheap enough to make millions of (no hashing). ``study`` 0 holds patient-level UIDs (tracking
UIDs of nodules) and ``patient`` 0 site-level ones (the AI device).
"""

from __future__ import annotations

from pydicom.uid import PYDICOM_ROOT_UID

UID_ROOT = PYDICOM_ROOT_UID + "71."

STUDY, CT_SERIES, SR_SERIES, FRAME_OF_REFERENCE, CT_INSTANCE, SR_INSTANCE, DEVICE, TRACKING = range(1, 9)

MAX_SEED = 2**32 - 1


def uid(seed: int, site: int, patient: int, study: int, kind: int, n: int | None = None) -> str:
    value = f"{UID_ROOT}{seed}.{site}.{patient}.{study}.{kind}" + ("" if n is None else f".{n}")
    assert len(value) <= 64, value
    return value


def study_uid(seed: int, site: int, patient: int, study: int) -> str:
    return uid(seed, site, patient, study, STUDY)


def ct_series_uid(seed: int, site: int, patient: int, study: int) -> str:
    return uid(seed, site, patient, study, CT_SERIES)


def sr_series_uid(seed: int, site: int, patient: int, study: int) -> str:
    return uid(seed, site, patient, study, SR_SERIES)


def frame_of_reference_uid(seed: int, site: int, patient: int, study: int) -> str:
    return uid(seed, site, patient, study, FRAME_OF_REFERENCE)


def ct_instance_uid(seed: int, site: int, patient: int, study: int, instance_number: int) -> str:
    return uid(seed, site, patient, study, CT_INSTANCE, instance_number)


def sr_instance_uid(seed: int, site: int, patient: int, study: int) -> str:
    return uid(seed, site, patient, study, SR_INSTANCE)


def tracking_uid(seed: int, site: int, patient: int, nodule: int) -> str:
    """Tracking Unique Identifier of a nodule: the same in every study of the patient."""
    return uid(seed, site, patient, 0, TRACKING, nodule)


def device_uid(seed: int, site: int) -> str:
    """Device Observer UID of the site's vendor AI."""
    return uid(seed, site, 0, 0, DEVICE)


def patient_id(prefix: str, index: int) -> str:
    """FHIR Patient id, e.g. ``lca-0000001``."""
    return f"{prefix}-{index:07d}"


def mrn(prefix: str, index: int) -> str:
    """Medical record number (FHIR identifier value and DICOM PatientID), e.g. ``A0000001``."""
    return f"{prefix}{index:07d}"


def accession_number(prefix: str, index: int, study: int) -> str:
    """Accession number (≤ 16 characters, DICOM SH), e.g. ``SA000000103``."""
    return f"{prefix}{index:07d}{study:02d}"
