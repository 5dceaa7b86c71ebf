"""Collecting ingestion notes: what could not be used as-is, and why (never an exception)."""

from __future__ import annotations

from risk.domain.provenance import IngestionNote, NoteCode, NoteSeverity


class NoteSink:
    """An append-only list of :class:`IngestionNote` with one helper per severity."""

    __slots__ = ("notes",)

    def __init__(self) -> None:
        self.notes: list[IngestionNote] = []

    def info(self, code: NoteCode, source: str, message: str) -> None:
        self.notes.append(IngestionNote(NoteSeverity.INFO, code, source, message))

    def warning(self, code: NoteCode, source: str, message: str) -> None:
        self.notes.append(IngestionNote(NoteSeverity.WARNING, code, source, message))

    def error(self, code: NoteCode, source: str, message: str) -> None:
        self.notes.append(IngestionNote(NoteSeverity.ERROR, code, source, message))

    def extend(self, notes: tuple[IngestionNote, ...] | list[IngestionNote]) -> None:
        self.notes.extend(notes)

    def __len__(self) -> int:
        return len(self.notes)
