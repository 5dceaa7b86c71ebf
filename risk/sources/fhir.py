"""The EHR's FHIR R4 data behind one Protocol, with three implementations (the dicomweb-client pattern).

- :class:`~risk.sources.fhir_rest.RestFhirSource`: a FHIR server over HTTP with a bearer token; paging by
  ``next`` links, or by ``_count``/``_offset`` when the server emits none; per-call timeouts, retries
  with exponential backoff on 429/503/504 (honouring ``Retry-After``), a total :class:`Deadline`.
- :class:`~risk.sources.fhir_file.FileFhirSource`: a folder of FHIR JSON (Bundles, resources, NDJSON):
  the embedded default and the unit tests.
- :class:`~risk.sources.fhir_prefetch.PrefetchFhirSource`: a CDS Hooks prefetch dictionary, answering the
  templates it satisfies and sending the rest to a fallback source (interop.md §1.4).

Every implementation raises only :class:`~risk.errors.UpstreamUnavailable` (could not be read: outage,
timeout, deadline) or :class:`~risk.errors.UpstreamRejected` (the server refused: 4xx); never an httpx
error. :func:`fetch_patient_resources` runs the snapshot's queries (the same strings as the CDS prefetch
templates, :data:`PREFETCH_TEMPLATES`) and turns failures into notes and a :class:`SourceStatus`, so an
outage is never mistaken for "no data".
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode

from risk.config import FhirSettings
from risk.deadline import Deadline
from risk.domain.provenance import IngestionNote, NoteCode, NoteSeverity
from risk.domain.snapshot import SourceState, SourceStatus
from risk.errors import InvalidInput, UpstreamRejected, UpstreamUnavailable
from risk.features.rules import OBSERVATION_RULES

log = logging.getLogger(__name__)

Resource = dict[str, Any]

PATIENT_ID_TOKEN: Final = "{{context.patientId}}"


def _observation_codes() -> str:
    return ",".join(f"{r.code.system}|{r.code.code}" for r in OBSERVATION_RULES)


PREFETCH_TEMPLATES: Final[Mapping[str, str]] = {
    "patient": f"Patient/{PATIENT_ID_TOKEN}",
    "observations": f"Observation?subject=Patient/{PATIENT_ID_TOKEN}&code={_observation_codes()}",
    "conditions": f"Condition?subject=Patient/{PATIENT_ID_TOKEN}",
    "familyHistory": f"FamilyMemberHistory?patient={PATIENT_ID_TOKEN}",
    "imagingStudies": f"ImagingStudy?subject=Patient/{PATIENT_ID_TOKEN}&_include=ImagingStudy:endpoint",
}
"""The queries a snapshot needs, as CDS Hooks prefetch templates (CDS discovery advertises these).

Observations are searched by the codes of risk/features/rules.py (a token OR list, within the prefetch
query subset of interop.md §1.4); Conditions are fetched whole, because ICD-10-CM categories (C00-C96)
cannot be listed as tokens. ImagingStudies come with their Endpoints (``_include``) for the DICOMweb
address. Observation, Condition and ImagingStudy are searched by ``subject=Patient/<id>``, which FHIR R4
defines as the same search as ``patient=<id>`` (that parameter is ``subject.where(resolve() is Patient)``)
but which servers can answer from the reference alone: on the local Medplum server 15 ms instead of 2.5 s
for a patient's Observations (``resolve()`` is evaluated per resource). FamilyMemberHistory has no
``subject`` parameter."""


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The resources of every page of a search (matches, includes and outcome entries) and any notes."""

    resources: list[Resource]
    notes: tuple[IngestionNote, ...] = ()


@runtime_checkable
class FhirSource(Protocol):
    """Read access to an EHR's FHIR R4 data."""

    name: str
    """The system name used in SourceStatus and notes (e.g. "fhir")."""

    def read(self, resource_type: str, resource_id: str, *, deadline: Deadline) -> Resource | None:
        """The resource, or None when the server says it does not exist (404/410)."""
        ...

    def search(self, resource_type: str, params: Sequence[tuple[str, str]], *, deadline: Deadline) -> SearchResult:
        """Every page of a type-level search."""
        ...

    def continue_search(self, bundle: Mapping[str, Any], *, deadline: Deadline) -> SearchResult:
        """The resources of the pages after ``bundle`` (following its ``next`` links)."""
        ...


@dataclass(frozen=True, slots=True)
class FhirQuery:
    """A relative FHIR read (``Patient/123``) or type-level search (``Observation?patient=123&code=a,b``)."""

    resource_type: str
    resource_id: str | None = None
    params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, relative: str) -> FhirQuery:
        return _parse_query(relative)

    @classmethod
    def _parse(cls, relative: str) -> FhirQuery:
        path, _, query = relative.partition("?")
        parts = [p for p in path.strip("/").split("/") if p]
        if not parts or not parts[0][:1].isupper() or len(parts) > 2:
            raise InvalidInput("query", f"not a relative FHIR read or search: {relative!r}")
        params = tuple(parse_qsl(query, keep_blank_values=True)) if query else ()
        if len(parts) == 2:
            if params:
                raise InvalidInput("query", f"a read takes no parameters: {relative!r}")
            return cls(parts[0], parts[1])
        return cls(parts[0], None, params)

    @property
    def key(self) -> tuple[str, str | None, tuple[tuple[str, str], ...]]:
        """Order-insensitive identity (for matching a request to a prefetch template)."""
        return (self.resource_type, self.resource_id, tuple(sorted(self.params)))

    def render(self) -> str:
        if self.resource_id is not None:
            return f"{self.resource_type}/{self.resource_id}"
        return f"{self.resource_type}?{urlencode(self.params, safe='|,:')}" if self.params else self.resource_type


@functools.lru_cache(maxsize=512)
def _parse_query(relative: str) -> FhirQuery:
    """Parsing is cached: a CDS call parses the same rendered templates in the prefetch source and the fetch."""
    return FhirQuery._parse(relative)


def render_template(template: str, context: Mapping[str, str]) -> str:
    """Substitute ``{{context.x}}`` (and user identifier) tokens; an unknown token is an InvalidInput."""
    out = template
    start = out.find("{{")
    while start >= 0:
        end = out.find("}}", start)
        if end < 0:
            raise InvalidInput("prefetch", f"unterminated token in template {template!r}")
        token = out[start + 2:end].strip()
        if token not in context:
            raise InvalidInput("prefetch", f"no value for token {{{{{token}}}}} in template {template!r}")
        value = context[token]
        out = out[:start] + value + out[end + 2:]
        start = out.find("{{", start + len(value))
    return out


def patient_context(patient_id: str) -> dict[str, str]:
    return {"context.patientId": patient_id}


def run_query(source: FhirSource, query: FhirQuery, *, deadline: Deadline) -> SearchResult:
    if query.resource_id is not None:
        resource = source.read(query.resource_type, query.resource_id, deadline=deadline)
        return SearchResult([resource] if resource is not None else [])
    return source.search(query.resource_type, query.params, deadline=deadline)


@dataclass(slots=True)
class FetchResult:
    """What :func:`fetch_patient_resources` got: resources, notes, and whether the source answered."""

    resources: list[Resource]
    notes: list[IngestionNote]
    status: SourceStatus
    failed_keys: tuple[str, ...] = ()
    not_found: tuple[str, ...] = field(default=())


def fetch_patient_resources(source: FhirSource, patient_id: str, *, deadline: Deadline,
                            templates: Mapping[str, str] = PREFETCH_TEMPLATES,
                            max_workers: int = 4) -> FetchResult:
    """Run every template for one patient; a failed query is an ERROR note, never an exception.

    The queries run concurrently (``max_workers`` threads; 1 runs them in order). Status: OK when every
    query answered, UNAVAILABLE when none did, PARTIAL otherwise.
    """
    context = patient_context(patient_id)
    queries = {key: FhirQuery.parse(render_template(t, context)) for key, t in templates.items()}

    def one(item: tuple[str, FhirQuery]) -> tuple[str, SearchResult | Exception]:
        key, query = item
        try:
            return key, run_query(source, query, deadline=deadline)
        except UpstreamRejected as exc:
            # A server that refuses _include (400) still answers the search itself; the referenced resources
            # (e.g. an ImagingStudy's Endpoint) are then only resolved when contained.
            plain = tuple(p for p in query.params if p[0] != "_include")
            if exc.status_code != 400 or len(plain) == len(query.params):
                return key, exc
            try:
                result = run_query(source, FhirQuery(query.resource_type, None, plain), deadline=deadline)
            except (UpstreamUnavailable, UpstreamRejected) as again:
                return key, again
            note = IngestionNote(NoteSeverity.INFO, NoteCode.UNSUPPORTED, f"{source.name}:{key}",
                                 f"{source.name} refused _include ({exc}); searched without it.")
            return key, SearchResult(result.resources, (*result.notes, note))
        except UpstreamUnavailable as exc:
            return key, exc

    if max_workers > 1 and len(queries) > 1:
        with ThreadPoolExecutor(max_workers=min(max_workers, len(queries)),
                                thread_name_prefix="fhir-fetch") as pool:
            outcomes = list(pool.map(one, queries.items()))
    else:
        outcomes = [one(item) for item in queries.items()]

    resources: list[Resource] = []
    notes: list[IngestionNote] = []
    failed: list[str] = []
    not_found: list[str] = []
    for key, outcome in outcomes:
        query = queries[key]
        if isinstance(outcome, Exception):
            failed.append(key)
            notes.append(_failure_note(source.name, key, query, outcome, deadline))
            continue
        resources.extend(outcome.resources)
        notes.extend(outcome.notes)
        if query.resource_id is not None and not outcome.resources:
            not_found.append(key)
            notes.append(IngestionNote(NoteSeverity.WARNING, NoteCode.MISSING_VALUE, query.render(),
                                       f"{source.name}: {query.render()} does not exist."))
    if not failed:
        state, detail = SourceState.OK, None
    elif len(failed) == len(queries):
        state, detail = SourceState.UNAVAILABLE, f"no query answered ({', '.join(failed)})"
    else:
        state, detail = SourceState.PARTIAL, f"failed: {', '.join(failed)}"
    return FetchResult(resources, notes, SourceStatus(source.name, state, detail), tuple(failed), tuple(not_found))


def _failure_note(system: str, key: str, query: FhirQuery, exc: Exception, deadline: Deadline) -> IngestionNote:
    if isinstance(exc, UpstreamRejected):
        code = NoteCode.UPSTREAM_REJECTED
    elif deadline.expired:
        code = NoteCode.DEADLINE_EXCEEDED
    else:
        code = NoteCode.UPSTREAM_UNAVAILABLE
    return IngestionNote(NoteSeverity.ERROR, code, f"{system}:{key}",
                         f"{query.resource_type} could not be read ({exc}); absence of data means nothing.")


def open_fhir_source(settings: FhirSettings, *, token: str | Callable[[], str] | None = None) -> FhirSource | None:
    """The configured EHR: a FHIR server (``fhir.base_url``), else a folder (``fhir.bundle_dir``), else None."""
    if settings.base_url is not None:
        from risk.sources.fhir_rest import RestFhirSource

        return RestFhirSource.from_settings(settings, token=token)
    if settings.bundle_dir is not None:
        from risk.sources.fhir_file import FileFhirSource

        return FileFhirSource(settings.bundle_dir)
    return None


def bundle_resources(bundle: Mapping[str, Any]) -> list[Resource]:
    """The ``entry[].resource`` objects of a Bundle (entries without one are skipped)."""
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return []
    return [e["resource"] for e in entries if isinstance(e, dict) and isinstance(e.get("resource"), dict)]


def next_link(bundle: Mapping[str, Any]) -> str | None:
    for link in bundle.get("link") or ():
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None

