"""Where every value came from, and what ingestion could not use.

Every domain value carries a :class:`SourceRef`: the resource or DICOM object it was read from and
the clinical date it describes. :class:`IngestionNote` records what was skipped and why, so that a
snapshot says "COPD could not be checked: FHIR server timed out" instead of silently "no COPD".
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from risk.domain._checks import require_date, require_text
from risk.domain._value import value_type


class SourceKind(StrEnum):
    """The kind of system a value was read from."""

    FHIR = "fhir"
    """A FHIR resource; ``reference`` is ``Type/id`` (or a full URL when the id is unknown)."""
    DICOM = "dicom"
    """A DICOM object; ``reference`` is ``urn:dicom:uid:<SOPInstanceUID>`` (or a study UID)."""
    DERIVED = "derived"
    """Computed by this service from other values (e.g. pack-years from cigarettes/day × years)."""
    INPUT = "input"
    """Typed in by a user or passed directly to a calculator."""


@value_type
class SourceRef:
    """The origin of one value: what it came from, and the clinical date it describes."""

    kind: SourceKind
    reference: str
    effective: date | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, SourceKind):
            raise TypeError('Argument "kind" must be a SourceKind.')
        require_text("reference", self.reference)
        require_date("effective", self.effective, optional=True)

    def age_days(self, as_of: date) -> int | None:
        """Days between the value's date and ``as_of`` (None when the date is unknown)."""
        return None if self.effective is None else (as_of - self.effective).days

    def to_json(self) -> dict[str, str]:
        out = {"kind": self.kind.value, "reference": self.reference}
        if self.effective is not None:
            out["effective"] = self.effective.isoformat()
        return out


def dicom_ref(uid: str, effective: date | None = None) -> SourceRef:
    return SourceRef(SourceKind.DICOM, f"urn:dicom:uid:{uid}", effective)


def fhir_ref(resource_type: str, resource_id: str, effective: date | None = None) -> SourceRef:
    return SourceRef(SourceKind.FHIR, f"{resource_type}/{resource_id}", effective)


class NoteSeverity(StrEnum):
    INFO = "info"
    """Nothing lost: e.g. a unit was converted, a conflict was reconciled."""
    WARNING = "warning"
    """One resource or item was skipped; the rest was used."""
    ERROR = "error"
    """A whole source could not be read (outage, timeout): absence of data means nothing."""


class NoteCode(StrEnum):
    """Machine-readable reasons for an ingestion note (stable: dashboards group by them)."""

    MALFORMED = "malformed"
    MISSING_VALUE = "missing-value"
    UNKNOWN_CODE = "unknown-code"
    UNIT_MISMATCH = "unit-mismatch"
    UNIT_CONVERTED = "unit-converted"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    OUT_OF_RANGE = "out-of-range"
    ENTERED_IN_ERROR = "entered-in-error"
    UPSTREAM_UNAVAILABLE = "upstream-unavailable"
    UPSTREAM_REJECTED = "upstream-rejected"
    DEADLINE_EXCEEDED = "deadline-exceeded"
    UNSUPPORTED = "unsupported"
    CODE_NORMALISED = "code-normalised"
    """A legacy or alternative code was mapped to the current one (e.g. SNOMED-RT SRT → SCT in DICOM SRs)."""


@value_type
class IngestionNote:
    """One thing ingestion could not use as-is, with the reason."""

    severity: NoteSeverity
    code: NoteCode
    source: str
    message: str

    def __post_init__(self) -> None:
        if not isinstance(self.severity, NoteSeverity):
            raise TypeError('Argument "severity" must be a NoteSeverity.')
        if not isinstance(self.code, NoteCode):
            raise TypeError('Argument "code" must be a NoteCode.')
        require_text("source", self.source)
        require_text("message", self.message)

    def to_json(self) -> dict[str, str]:
        return {"severity": self.severity.value, "code": self.code.value, "source": self.source,
                "message": self.message}
