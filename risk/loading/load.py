"""Loads a synthetic cohort directory into the FHIR server and the PACS (``risk load``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from risk.loading.cohort import CohortDirectory
from risk.loading.dicom_load import DicomLoader
from risk.loading.fhir_load import FhirLoader, bundle_file_unit, ndjson_units
from risk.loading.report import ChannelReport, LoadReport


class FhirInput(StrEnum):
    AUTO = "auto"
    """Bundles when the directory has any, else NDJSON."""
    BUNDLES = "bundles"
    NDJSON = "ndjson"


@dataclass(frozen=True, slots=True)
class Destinations:
    fhir: FhirLoader | None
    fhir_target: str = ""
    dicom: DicomLoader | None = None
    dicom_target: str = ""


def load_cohort(cohort: CohortDirectory, to: Destinations, *, fhir_input: FhirInput = FhirInput.AUTO,
                progress: Callable[[ChannelReport], None] | None = None) -> LoadReport:
    """Loads FHIR first, then DICOM; each channel reports its own failures and never stops the other."""
    started = time.monotonic()
    report = LoadReport(str(cohort.root), notes=[cohort.describe(), *cohort.problems])
    if to.fhir is not None:
        use_ndjson = fhir_input is FhirInput.NDJSON or (fhir_input is FhirInput.AUTO and not cohort.bundle_files)
        channel = ChannelReport("FHIR", to.fhir_target, unit="chunks" if use_ndjson else "files")
        if use_ndjson:
            if not cohort.ndjson_files:
                report.notes.append("FHIR: no fhir/ndjson/*.ndjson files")
            to.fhir.load(ndjson_units(cohort.ndjson_files, failures=channel.failures), channel, progress)
        else:
            if not cohort.bundle_files:
                report.notes.append("FHIR: no fhir/bundles/*.json files")
            to.fhir.load([bundle_file_unit(p) for p in cohort.bundle_files], channel, progress)
        report.channels.append(channel)
    if to.dicom is not None:
        channel = ChannelReport("DICOM", to.dicom_target)
        to.dicom.load(cohort.dicom_files, channel, progress)
        report.channels.append(channel)
    report.seconds = time.monotonic() - started
    return report
