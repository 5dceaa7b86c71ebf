"""The data behind one hook call: prefetch first, then ``fhirServer`` for what is missing (CDS Hooks 2.0 §Prefetch).

Per template key (:class:`risk.sources.fhir_prefetch.PrefetchFhirSource` classifies them):

* a resource or searchset Bundle → used as is (a Bundle's ``next`` links are followed on ``fhirServer``);
* ``null`` → "no data", never re-fetched;
* absent, or an OperationOutcome → the same template (tokens substituted) is run against ``fhirServer`` with
  ``Authorization: Bearer {fhirAuthorization.access_token}``, following paging.

**412 Precondition Failed** when required data cannot be had: a key must be fetched and the request names no
``fhirServer``, or the FHIR server refused the service (401/403). An outage or a timeout is not a 412: the cards
say what could not be checked (the snapshot's source status and notes carry it), because the rest is still
useful. Every template key is required: the assessment needs all of them.

The whole call runs under one :class:`~risk.deadline.Deadline` (``settings.cds.request_budget_s``): each FHIR
request's timeout is capped by what is left of it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool

from risk.cds.discovery import CDS_PREFETCH_TEMPLATES
from risk.cds.imaging import CachedImaging
from risk.cds.request import HookRequest
from risk.config import FhirSettings
from risk.deadline import Deadline
from risk.domain.provenance import IngestionNote, NoteCode, NoteSeverity
from risk.domain.snapshot import PatientSnapshot, SourceState, SourceStatus
from risk.errors import UpstreamRejected
from risk.extract.notes import NoteSink
from risk.extract.snapshot import ImagingOutcome, assemble_snapshot, extract_fhir, group_resources
from risk.snapshots import PACS_SYSTEM, ImagingLoader
from risk.sources.fhir import FhirSource, SearchResult, fetch_patient_resources, next_link
from risk.sources.fhir_prefetch import PrefetchFhirSource, PrefetchState
from risk.sources.fhir_rest import FHIR_JSON, RestFhirSource

log = logging.getLogger(__name__)

ACCESS_DENIED = frozenset({401, 403})


class PreconditionFailed(Exception):
    """Required data cannot be had (→ HTTP 412). ``keys`` are the prefetch keys concerned."""

    def __init__(self, keys: Sequence[str], reason: str) -> None:
        super().__init__(reason)
        self.keys = tuple(keys)
        self.reason = reason


@dataclass(slots=True)
class GatherReport:
    """What the prefetch gave and what had to be fetched (for the audit event and the response headers)."""

    satisfied: tuple[str, ...] = ()
    null: tuple[str, ...] = ()
    fetched: tuple[str, ...] = ()
    denied: list[str] = field(default_factory=list)


class _DenialRecorder:
    """Wraps the fallback source and records 401/403 answers (then re-raises them)."""

    def __init__(self, inner: FhirSource) -> None:
        self.inner = inner
        self.name = inner.name
        self.denied: list[str] = []

    def read(self, resource_type: str, resource_id: str, *, deadline: Deadline) -> dict[str, Any] | None:
        try:
            return self.inner.read(resource_type, resource_id, deadline=deadline)
        except UpstreamRejected as exc:
            self._record(exc, resource_type)
            raise

    def search(self, resource_type: str, params: Sequence[tuple[str, str]], *, deadline: Deadline) -> SearchResult:
        try:
            return self.inner.search(resource_type, params, deadline=deadline)
        except UpstreamRejected as exc:
            self._record(exc, resource_type)
            raise

    def continue_search(self, bundle: Mapping[str, Any], *, deadline: Deadline) -> SearchResult:
        try:
            return self.inner.continue_search(bundle, deadline=deadline)
        except UpstreamRejected as exc:
            self._record(exc, str(bundle.get("resourceType")))
            raise

    def _record(self, exc: UpstreamRejected, what: str) -> None:
        if exc.status_code in ACCESS_DENIED:
            self.denied.append(what)


class FhirClientPool:
    """One shared httpx client (connection pool) for the FHIR servers hook calls name."""

    def __init__(self, settings: FhirSettings) -> None:
        self.settings = settings
        self.client = httpx.Client(headers={"Accept": FHIR_JSON}, follow_redirects=False,
                                   limits=httpx.Limits(max_connections=64, max_keepalive_connections=16))

    def source(self, base_url: str, token: str | None) -> RestFhirSource:
        s = self.settings
        return RestFhirSource(base_url, token=token, timeout_s=s.timeout_s, retries=s.retries, backoff_s=s.backoff_s,
                              page_size=s.page_size, client=self.client)

    def close(self) -> None:
        self.client.close()


def prefetch_source(request: HookRequest, pool: FhirClientPool | None,
                    templates: Mapping[str, str] = CDS_PREFETCH_TEMPLATES
                    ) -> tuple[PrefetchFhirSource, _DenialRecorder | None]:
    fallback: _DenialRecorder | None = None
    if request.fhir_server is not None and pool is not None:
        token = request.fhir_authorization.access_token if request.fhir_authorization is not None else None
        fallback = _DenialRecorder(pool.source(request.fhir_server, token))
    source = PrefetchFhirSource(request.prefetch, request.token_values(), templates=templates,
                                fallback=fallback)
    return source, fallback


def needs_network(source: PrefetchFhirSource, prefetch: Mapping[str, Any] | None) -> bool:
    """True when answering will call the FHIR server: keys to fetch, or a prefetched page with a ``next`` link."""
    if source.keys_to_fetch:
        return True
    for key, state in source.states.items():
        if state is PrefetchState.SATISFIED and prefetch is not None:
            value = prefetch.get(key)
            if isinstance(value, dict) and next_link(value) is not None:
                return True
    return False


async def gather_snapshot(request: HookRequest, source: PrefetchFhirSource, fallback: _DenialRecorder | None, *,
                          as_of: date, deadline: Deadline, imaging: ImagingLoader | None = None,
                          templates: Mapping[str, str] = CDS_PREFETCH_TEMPLATES
                          ) -> tuple[PatientSnapshot, GatherReport]:
    """The patient's snapshot from prefetch + fhirServer; raises :class:`PreconditionFailed` (→ 412).

    The async form of :func:`risk.snapshots.build_snapshot` (same steps, same functions): work that calls the
    network (FHIR queries, a PACS lookup that is not in the imaging cache) runs in the threadpool; parsing and
    mapping a complete prefetch, and an imaging-cache hit, run inline (no thread hop on the hot path).
    """
    report = GatherReport(
        satisfied=tuple(k for k, s in source.states.items() if s is PrefetchState.SATISFIED),
        null=tuple(k for k, s in source.states.items() if s is PrefetchState.NO_DATA),
        fetched=source.keys_to_fetch)
    if source.keys_to_fetch and fallback is None:
        raise PreconditionFailed(source.keys_to_fetch,
                                 "prefetch keys missing or failed and no fhirServer to fetch them from: "
                                 + ", ".join(source.keys_to_fetch))
    pid = request.patient_id
    if needs_network(source, request.prefetch):
        fetch = await run_in_threadpool(partial(fetch_patient_resources, source, pid, deadline=deadline,
                                                templates=templates, max_workers=4))
    else:
        fetch = fetch_patient_resources(source, pid, deadline=deadline, templates=templates, max_workers=1)
    if fallback is not None and fallback.denied:
        report.denied = list(fallback.denied)
        raise PreconditionFailed(source.keys_to_fetch, "the FHIR server refused access (401/403) to "
                                 + ", ".join(sorted(set(fallback.denied))))
    notes = NoteSink()
    notes.extend(list(source.notes))
    notes.extend(fetch.notes)
    records = group_resources(fetch.resources, pid, notes)
    fhir = extract_fhir(records, as_of)
    statuses = [fetch.status]
    outcome: ImagingOutcome | None = None
    if imaging is not None:
        mrns = fhir.medical_record_numbers
        uids = [s.study_instance_uid for s in fhir.imaging_studies]
        if not mrns and not uids and fetch.status.state is not SourceState.OK:
            statuses.append(SourceStatus(PACS_SYSTEM, SourceState.UNAVAILABLE,
                                         "no identifiers to search the PACS with: the FHIR server did not answer"))
        else:
            call = partial(imaging, dicom_patient_ids=mrns, study_uids=uids, as_of=as_of, deadline=deadline)
            try:
                if isinstance(imaging, CachedImaging) and imaging.has(mrns, uids, as_of):
                    outcome = call()
                else:
                    outcome = await run_in_threadpool(call)
            except Exception as exc:  # the ingestion boundary: the PACS part is lost, not the snapshot
                log.exception("imaging pipeline failed for a hook call")
                notes.notes.append(IngestionNote(NoteSeverity.ERROR, NoteCode.UPSTREAM_UNAVAILABLE, PACS_SYSTEM,
                                                 f"imaging could not be loaded ({type(exc).__name__}); absence of "
                                                 "nodules means nothing."))
                statuses.append(SourceStatus(PACS_SYSTEM, SourceState.UNAVAILABLE, type(exc).__name__))
    snapshot = assemble_snapshot(pid, as_of, fhir, imaging=outcome, source_status=statuses, notes=notes.notes)
    return snapshot, report
