"""FileFhirSource: FHIR JSON on disk (Bundles, single resources, NDJSON) behind the FhirSource Protocol.

The embedded default (no EHR to install) and the unit tests. The folder is indexed on first use:
``*.json`` files may hold a Bundle (any type: transaction, collection, searchset) or one resource;
``*.ndjson`` files hold one resource per line. ``urn:uuid:`` references of transaction Bundles are
rewritten to ``Type/id`` (as a FHIR server does when it processes the transaction). Files or lines that
cannot be read are skipped, logged and kept in ``load_notes`` (they belong to no one patient, so they
are not copied onto every snapshot).

Supported searches: ``patient`` / ``subject`` (``123`` or ``Patient/123``), ``code`` and ``category``
(comma-separated tokens, ``system|code`` or ``code``), ``_id``, ``identifier`` (``system|value``), and
``_include=ImagingStudy:endpoint``; ``_count``, ``_offset``, ``_sort`` and ``_total`` are accepted and
ignored (results come in one page). Any other parameter is refused (UpstreamRejected) so a query that a
folder cannot answer is never mistaken for "no data".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import orjson

from risk.deadline import Deadline
from risk.domain.provenance import IngestionNote, NoteCode, NoteSeverity
from risk.errors import UpstreamRejected
from risk.extract.fhirjson import codings, reference_id
from risk.sources.fhir import Resource, SearchResult

log = logging.getLogger(__name__)

PATIENT_REFERENCE_FIELDS: Final = ("subject", "patient")
IGNORED_PARAMS: Final = frozenset({"_count", "_offset", "_sort", "_total", "_summary", "_elements"})


class FileFhirSource:
    """FHIR resources read from ``root`` (a folder, searched recursively, or one file)."""

    def __init__(self, root: str | Path, *, name: str = "fhir") -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise ValueError(f'Argument "root" must exist, got {str(self.root)!r}.')
        self.name = name
        self._lock = threading.Lock()
        self._by_id: dict[tuple[str, str], Resource] | None = None
        self._by_patient: dict[tuple[str, str], list[Resource]] = {}
        self.load_notes: list[IngestionNote] = []

    def __repr__(self) -> str:
        return f"FileFhirSource({str(self.root)!r})"

    # --- FhirSource ------------------------------------------------------------------------------
    def read(self, resource_type: str, resource_id: str, *, deadline: Deadline) -> Resource | None:
        return self._index().get((resource_type, resource_id))

    def search(self, resource_type: str, params: Sequence[tuple[str, str]], *, deadline: Deadline) -> SearchResult:
        by_id = self._index()
        filters: dict[str, list[str]] = {}
        includes: list[str] = []
        for key, value in params:
            if key in IGNORED_PARAMS:
                continue
            if key == "_include":
                if value != "ImagingStudy:endpoint":
                    raise UpstreamRejected(self.name, f"_include={value} is not supported by the file source")
                includes.append(value)
                continue
            if key not in ("patient", "subject", "code", "category", "_id", "identifier"):
                raise UpstreamRejected(self.name, f"search parameter {key!r} is not supported by the file source")
            filters.setdefault(key, []).append(value)
        patient = filters.pop("patient", []) + filters.pop("subject", [])
        if patient:
            pid = patient[-1].rsplit("/", 1)[-1]
            candidates = list(self._by_patient.get((resource_type, pid), ()))
            if resource_type == "Patient" and (resource_type, pid) in by_id:
                candidates.append(by_id[(resource_type, pid)])
        else:
            candidates = [r for (t, _i), r in by_id.items() if t == resource_type]
        matches = [r for r in candidates if all(_matches(r, k, v) for k, vs in filters.items() for v in vs)]
        included: list[Resource] = []
        if includes:
            seen: set[str] = set()
            for study in matches:
                for ref in study.get("endpoint") or ():
                    rid = reference_id(ref, "Endpoint")
                    if rid and rid not in seen and ("Endpoint", rid) in by_id:
                        seen.add(rid)
                        included.append(by_id[("Endpoint", rid)])
        return SearchResult(matches + included)

    def continue_search(self, bundle: Mapping[str, Any], *, deadline: Deadline) -> SearchResult:
        return SearchResult([])

    def patient_ids(self) -> list[str]:
        """Every Patient id in the folder (sorted)."""
        return sorted(i for t, i in self._index() if t == "Patient")

    # --- Index -----------------------------------------------------------------------------------
    def _index(self) -> dict[tuple[str, str], Resource]:
        if self._by_id is None:
            with self._lock:
                if self._by_id is None:
                    self._load()
        assert self._by_id is not None
        return self._by_id

    def _load(self) -> None:
        by_id: dict[tuple[str, str], Resource] = {}
        files = [self.root] if self.root.is_file() else sorted(
            p for p in self.root.rglob("*") if p.suffix in (".json", ".ndjson") and p.is_file())
        for path in files:
            for resource in self._resources_in(path):
                rtype, rid = resource.get("resourceType"), resource.get("id")
                if isinstance(rtype, str) and isinstance(rid, str) and rid:
                    by_id[(rtype, rid)] = resource
                else:
                    self._note(path, "a resource without resourceType or id; skipped")
        by_patient: dict[tuple[str, str], list[Resource]] = {}
        for (rtype, _rid), resource in by_id.items():
            for name in PATIENT_REFERENCE_FIELDS:
                pid = reference_id(resource.get(name), "Patient")
                if pid is not None:
                    by_patient.setdefault((rtype, pid), []).append(resource)
                    break
        self._by_patient = by_patient
        self._by_id = by_id

    def _resources_in(self, path: Path) -> Iterator[Resource]:
        try:
            data = path.read_bytes()
        except OSError as exc:
            self._note(path, f"cannot be read: {exc.strerror}")
            return
        if path.suffix == ".ndjson":
            for number, line in enumerate(data.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    resource = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    self._note(path, f"line {number} is not JSON ({exc}); skipped")
                    continue
                if isinstance(resource, dict):
                    yield resource
            return
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            self._note(path, f"is not JSON ({exc}); skipped")
            return
        if not isinstance(body, dict):
            self._note(path, "is not a FHIR resource; skipped")
        elif body.get("resourceType") == "Bundle":
            yield from _bundle_entries(body)
        else:
            yield body

    def _note(self, path: Path, message: str) -> None:
        log.warning("%s: %s %s", self.name, path, message)
        self.load_notes.append(IngestionNote(NoteSeverity.WARNING, NoteCode.MALFORMED, str(path),
                                             f"{self.name}: {path.name} {message}."))


def _bundle_entries(bundle: Mapping[str, Any]) -> Iterator[Resource]:
    """Entries of any Bundle, with ``urn:uuid`` references rewritten to ``Type/id``."""
    entries = [e for e in bundle.get("entry") or () if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    aliases: dict[str, str] = {}
    for entry in entries:
        resource = entry["resource"]
        full_url = entry.get("fullUrl")
        rtype = resource.get("resourceType")
        rid = resource.get("id")
        request = entry.get("request")
        if not rid and isinstance(request, dict) and isinstance(request.get("url"), str):
            parts = request["url"].split("?", 1)[0].split("/")
            if len(parts) == 2 and parts[0] == rtype:
                rid = parts[1]
                resource["id"] = rid
        if isinstance(full_url, str) and full_url.startswith("urn:uuid:") and rid:
            aliases[full_url] = f"{rtype}/{rid}"
    for entry in entries:
        resource = entry["resource"]
        if aliases:
            _rewrite_references(resource, aliases)
        yield resource


def _rewrite_references(node: Any, aliases: Mapping[str, str]) -> None:
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and ref in aliases:
            node["reference"] = aliases[ref]
        for value in node.values():
            if isinstance(value, dict | list):
                _rewrite_references(value, aliases)
    elif isinstance(node, list):
        for value in node:
            if isinstance(value, dict | list):
                _rewrite_references(value, aliases)


def _matches(resource: Mapping[str, Any], key: str, value: str) -> bool:
    if key == "_id":
        return resource.get("id") in value.split(",")
    if key == "identifier":
        idents = [(i.get("system"), i.get("value")) for i in resource.get("identifier") or () if isinstance(i, dict)]
        return any(_token_matches(s, v, token) for token in value.split(",") for s, v in idents)
    field = resource.get(key)
    concepts = field if isinstance(field, list) else [field]
    pairs = [pair for concept in concepts for pair in codings(concept)]
    return any(_token_matches(s, c, token) for token in value.split(",") for s, c in pairs)


def _token_matches(system: str | None, code: str | None, token: str) -> bool:
    if "|" in token:
        want_system, want_code = token.split("|", 1)
        return code == want_code and (not want_system or system == want_system)
    return code == token
