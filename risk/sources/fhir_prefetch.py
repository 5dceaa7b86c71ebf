"""PrefetchFhirSource: a CDS Hooks prefetch dictionary as a FhirSource (CDS Hooks 2.0, interop.md §1.4).

For each template key the prefetch is classified (``states``):

- SATISFIED: a resource (read templates) or a Bundle (search templates) → answered from the prefetch;
  ``next`` links in a prefetched Bundle are followed through the fallback server ("the service must
  follow next links using fhirServer + token");
- NO_DATA: the value is ``null`` → "no data", never refetched;
- MISSING: the key is absent (the client chose not to satisfy it) → fetched from the fallback;
- FAILED: an OperationOutcome, a Bundle carrying an error/fatal OperationOutcome, or a value of the wrong
  shape → noted and fetched from the fallback.

``satisfied_keys`` and ``keys_to_fetch`` tell a CDS service exactly what it got; with no fallback
(no ``fhirServer``/``fhirAuthorization``) a query for a key it must fetch raises UpstreamUnavailable,
which the service turns into 412 Precondition Failed when the data is required.

A request matches a template when the resource type, id and the multiset of parameters are equal after
token substitution, so the snapshot queries (the same templates) are answered from the prefetch; any
other request goes to the fallback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from risk.deadline import Deadline
from risk.domain.provenance import IngestionNote, NoteCode, NoteSeverity
from risk.errors import UpstreamUnavailable
from risk.sources.fhir import (
    PREFETCH_TEMPLATES,
    FhirQuery,
    FhirSource,
    Resource,
    SearchResult,
    bundle_resources,
    next_link,
    render_template,
)


class PrefetchState(StrEnum):
    SATISFIED = "satisfied"
    NO_DATA = "no_data"
    MISSING = "missing"
    FAILED = "failed"


class PrefetchFhirSource:
    """Answers the prefetch templates it was given data for; everything else goes to ``fallback``."""

    def __init__(self, prefetch: Mapping[str, Any] | None, context: Mapping[str, str], *,
                 templates: Mapping[str, str] = PREFETCH_TEMPLATES, fallback: FhirSource | None = None,
                 name: str | None = None) -> None:
        self.name = name or (fallback.name if fallback is not None else "fhir")
        self.fallback = fallback
        self.notes: list[IngestionNote] = []
        self._queries: dict[str, FhirQuery] = {}
        self._key_of: dict[tuple[Any, ...], str] = {}
        self.states: dict[str, PrefetchState] = {}
        self._values: dict[str, Any] = {}
        given = prefetch or {}
        for key, template in templates.items():
            query = FhirQuery.parse(render_template(template, context))
            self._queries[key] = query
            self._key_of[query.key] = key
            self.states[key] = self._classify(key, query, given)

    @property
    def satisfied_keys(self) -> tuple[str, ...]:
        """Keys the client answered (with data or with ``null``): not to be fetched again."""
        return tuple(k for k, s in self.states.items() if s in (PrefetchState.SATISFIED, PrefetchState.NO_DATA))

    @property
    def keys_to_fetch(self) -> tuple[str, ...]:
        """Keys absent or failed: the service must fetch them from the FHIR server (or answer 412)."""
        return tuple(k for k, s in self.states.items() if s in (PrefetchState.MISSING, PrefetchState.FAILED))

    def _classify(self, key: str, query: FhirQuery, given: Mapping[str, Any]) -> PrefetchState:
        if key not in given:
            return PrefetchState.MISSING
        value = given[key]
        if value is None:
            return PrefetchState.NO_DATA
        if not isinstance(value, dict):
            return self._failed(key, NoteCode.MALFORMED, "is not a JSON object")
        rtype = value.get("resourceType")
        if rtype == "OperationOutcome":
            return self._failed(key, NoteCode.UPSTREAM_REJECTED, f"is an OperationOutcome ({_issues(value)})")
        expected = query.resource_type if query.resource_id is not None else "Bundle"
        if rtype != expected:
            return self._failed(key, NoteCode.MALFORMED, f"is a {rtype!r}, expected a {expected}")
        if expected == "Bundle":
            for resource in bundle_resources(value):
                if resource.get("resourceType") == "OperationOutcome" and _has_error(resource):
                    return self._failed(key, NoteCode.UPSTREAM_REJECTED,
                                        f"carries an error OperationOutcome ({_issues(resource)})")
        self._values[key] = value
        return PrefetchState.SATISFIED

    def _failed(self, key: str, code: NoteCode, why: str) -> PrefetchState:
        self.notes.append(IngestionNote(NoteSeverity.WARNING, code, f"prefetch:{key}",
                                        f"prefetch {key!r} {why}; fetched from the FHIR server instead."))
        return PrefetchState.FAILED

    # --- FhirSource ------------------------------------------------------------------------------
    def read(self, resource_type: str, resource_id: str, *, deadline: Deadline) -> Resource | None:
        key = self._key_of.get(FhirQuery(resource_type, resource_id).key)
        if key is not None and self.states[key] is PrefetchState.SATISFIED:
            return dict(self._values[key])
        if key is not None and self.states[key] is PrefetchState.NO_DATA:
            return None
        return self._require_fallback(key, f"{resource_type}/{resource_id}").read(
            resource_type, resource_id, deadline=deadline)

    def search(self, resource_type: str, params: Sequence[tuple[str, str]], *, deadline: Deadline) -> SearchResult:
        query = FhirQuery(resource_type, None, tuple(params))
        key = self._key_of.get(query.key)
        if key is not None and self.states[key] is PrefetchState.NO_DATA:
            return SearchResult([])
        if key is not None and self.states[key] is PrefetchState.SATISFIED:
            bundle = self._values[key]
            resources = bundle_resources(bundle)
            if next_link(bundle) is None:
                return SearchResult(resources)
            if self.fallback is None:
                note = IngestionNote(NoteSeverity.ERROR, NoteCode.UPSTREAM_UNAVAILABLE, f"prefetch:{key}",
                                     f"prefetch {key!r} has more pages but there is no FHIR server to read them; "
                                     "the data is incomplete.")
                return SearchResult(resources, (note,))
            more = self.fallback.continue_search(bundle, deadline=deadline)
            return SearchResult(resources + more.resources, more.notes)
        return self._require_fallback(key, query.render()).search(resource_type, params, deadline=deadline)

    def continue_search(self, bundle: Mapping[str, Any], *, deadline: Deadline) -> SearchResult:
        if self.fallback is None:
            return SearchResult([])
        return self.fallback.continue_search(bundle, deadline=deadline)

    def _require_fallback(self, key: str | None, what: str) -> FhirSource:
        if self.fallback is None:
            why = f"prefetch {key!r} was {self.states[key].value}" if key is not None else f"{what} is not prefetched"
            raise UpstreamUnavailable(self.name, f"{why} and there is no FHIR server to fetch it from")
        return self.fallback


def _has_error(outcome: Mapping[str, Any]) -> bool:
    return any(isinstance(i, dict) and i.get("severity") in ("error", "fatal") for i in outcome.get("issue") or ())


def _issues(outcome: Mapping[str, Any]) -> str:
    texts = [str(i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code"))
             for i in outcome.get("issue") or () if isinstance(i, dict)]
    return "; ".join(texts) or "no detail"
