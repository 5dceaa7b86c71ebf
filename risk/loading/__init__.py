"""Putting a synthetic cohort into the local stack: FHIR transactions and DICOM STOW-RS (``risk load``),
and the SMART Backend Services client that authorises the FHIR side."""

from risk.loading.backend_auth import BackendServicesAuth, read_private_jwks
from risk.loading.cohort import CohortDirectory
from risk.loading.dicom_load import DicomLoader
from risk.loading.fhir_load import FhirLoader, FhirTransactionClient, transaction_chunks
from risk.loading.load import Destinations, FhirInput, load_cohort
from risk.loading.report import ChannelReport, FileFailure, LoadReport

__all__ = [
    "BackendServicesAuth",
    "ChannelReport",
    "CohortDirectory",
    "Destinations",
    "DicomLoader",
    "FhirInput",
    "FhirLoader",
    "FhirTransactionClient",
    "FileFailure",
    "LoadReport",
    "load_cohort",
    "read_private_jwks",
    "transaction_chunks",
]
