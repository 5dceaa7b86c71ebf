"""FHIR → domain: targeted dict walking over FHIR JSON, with every skipped item recorded as a note.

The mapping rules are data in risk/features/rules.py, shared with the polars Bulk path.
"""

from risk.extract.snapshot import (
    FhirExtraction,
    FhirRecords,
    ImagingOutcome,
    assemble_snapshot,
    extract_fhir,
    group_resources,
    merge_studies,
    snapshot_from_resources,
)

__all__ = [
    "FhirExtraction",
    "FhirRecords",
    "ImagingOutcome",
    "assemble_snapshot",
    "extract_fhir",
    "group_resources",
    "merge_studies",
    "snapshot_from_resources",
]
