"""What a cohort load did: per channel (FHIR, DICOM) counts, time, per-file failures and any outage."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_LISTED_FAILURES = 50


@dataclass(frozen=True, slots=True)
class FileFailure:
    """One input that could not be loaded; ``path`` may carry a ``:line`` suffix (NDJSON)."""

    path: str
    reason: str


@dataclass(slots=True)
class ChannelReport:
    """One destination: the FHIR server (files are Bundles or NDJSON chunks) or the PACS (files are instances)."""

    channel: str
    target: str
    unit: str = "files"
    """What ``files_*`` count: "files" (Bundle files, DICOM files) or "chunks" (NDJSON lines posted together)."""
    files_total: int = 0
    files_loaded: int = 0
    files_skipped: int = 0
    """Already present at the destination (DICOM: SOP Instance UID found by QIDO-RS), so not sent again."""
    items_loaded: int = 0
    """FHIR: resources written (transaction entries); DICOM: instances stored."""
    seconds: float = 0.0
    failures: list[FileFailure] = field(default_factory=list)
    outage: str | None = None
    """Set when the destination stopped answering: the rest was not attempted (not the same as "no data")."""

    @property
    def ok(self) -> bool:
        return not self.failures and self.outage is None

    def summary(self) -> str:
        item = "resources" if self.channel == "FHIR" else "instances"
        text = (f"{self.channel} {self.target}: {self.files_total} {self.unit}, {self.files_loaded} loaded, "
                f"{self.files_skipped} already present, {len(self.failures)} failed; {self.items_loaded} {item} "
                f"in {self.seconds:.1f} s")
        if self.items_loaded and self.seconds > 0:
            text += f" ({self.items_loaded / self.seconds:.0f} {item}/s)"
        return text


@dataclass(slots=True)
class LoadReport:
    directory: str
    channels: list[ChannelReport] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.channels)

    def lines(self) -> list[str]:
        out = [*self.notes]
        for c in self.channels:
            out.append(c.summary())
            if c.outage:
                out.append(f"  {c.channel} UNAVAILABLE: {c.outage} (the rest was not attempted)")
            for f in c.failures[:MAX_LISTED_FAILURES]:
                out.append(f"  FAILED {f.path}: {f.reason}")
            if len(c.failures) > MAX_LISTED_FAILURES:
                out.append(f"  ... and {len(c.failures) - MAX_LISTED_FAILURES} more failures")
        out.append(f"total {self.seconds:.1f} s")
        return out
