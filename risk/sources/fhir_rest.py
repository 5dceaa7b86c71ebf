"""RestFhirSource: a FHIR R4 server over HTTP (httpx), behind the FhirSource Protocol.

Resilience, all explicit:

- every request has a timeout: ``timeout_s``, capped by what is left of the caller's :class:`Deadline`;
- 429, 503 and 504 responses and transport failures (connect errors, timeouts) are retried up to
  ``retries`` times with exponential backoff ``backoff_s × 2^attempt``; a ``Retry-After`` header (seconds
  or an HTTP date) replaces the computed wait; a wait that would overrun the deadline is not started;
- other 5xx → :class:`UpstreamUnavailable`; 4xx → :class:`UpstreamRejected` (with the OperationOutcome
  text); a body that is not a FHIR JSON object → :class:`UpstreamUnavailable`. httpx errors never leak.

Paging: ``next`` links are followed (only to the server's own origin, so the bearer token is never sent
elsewhere). A server that emits no ``next`` link (the local Medplum router without its wrapper's links)
is paged with ``_count``/``_offset`` while pages come back full; paging stops when a page is short or
empty, when ``Bundle.total`` is reached, or when a page repeats only resources already seen (a server
that ignores ``_offset``; noted), and after ``max_pages`` (noted).

The bearer token is a string or a zero-argument callable returning one (the seam for SMART Backend
Services token refresh, a later issue); it is read before every request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import orjson

from risk.config import FhirSettings
from risk.deadline import Deadline
from risk.domain.provenance import IngestionNote, NoteCode, NoteSeverity
from risk.errors import UpstreamRejected, UpstreamUnavailable
from risk.sources.fhir import Resource, SearchResult, bundle_resources, next_link
from risk.sources.retry_after import retry_after_s

log = logging.getLogger(__name__)

RETRYABLE_STATUS: Final = frozenset({429, 503, 504})
NOT_FOUND_STATUS: Final = frozenset({404, 410})
FHIR_JSON: Final = "application/fhir+json"

TokenProvider = Callable[[], str]


class RestFhirSource:
    """A FHIR server at ``base_url`` (e.g. ``http://127.0.0.1:18080/fhir/R4``)."""

    def __init__(self, base_url: str, *, token: str | TokenProvider | None = None, timeout_s: float = 5.0,
                 retries: int = 3, backoff_s: float = 0.2, page_size: int = 200, max_pages: int = 500,
                 max_retry_after_s: float = 30.0, name: str = "fhir", client: httpx.Client | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f'Argument "base_url" must be an http(s) URL, got {base_url!r}.')
        if timeout_s <= 0:
            raise ValueError(f'Argument "timeout_s" must be positive, got {timeout_s!r}.')
        if retries < 0:
            raise ValueError(f'Argument "retries" must be >= 0, got {retries!r}.')
        if backoff_s < 0:
            raise ValueError(f'Argument "backoff_s" must be >= 0, got {backoff_s!r}.')
        if page_size < 1:
            raise ValueError(f'Argument "page_size" must be >= 1, got {page_size!r}.')
        self.base_url = base_url.rstrip("/")
        self.name = name
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.page_size = page_size
        self.max_pages = max_pages
        self.max_retry_after_s = max_retry_after_s
        self._token = token
        origin = urlsplit(self.base_url)
        self._origin = (origin.scheme, origin.netloc)
        self._client = client or httpx.Client(headers={"Accept": FHIR_JSON}, follow_redirects=False)
        self._owns_client = client is None

    @classmethod
    def from_settings(cls, settings: FhirSettings, *, token: str | TokenProvider | None = None) -> RestFhirSource:
        if settings.base_url is None:
            raise ValueError('Argument "settings.base_url" is required for a REST FHIR source.')
        return cls(str(settings.base_url), token=token or settings.bearer_token, timeout_s=settings.timeout_s,
                   retries=settings.retries, backoff_s=settings.backoff_s, page_size=settings.page_size)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> RestFhirSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RestFhirSource({self.base_url!r})"

    # --- FhirSource ------------------------------------------------------------------------------
    def read(self, resource_type: str, resource_id: str, *, deadline: Deadline) -> Resource | None:
        response = self._get(f"{self.base_url}/{resource_type}/{resource_id}", None, deadline, allow_missing=True)
        if response.status_code in NOT_FOUND_STATUS:
            return None
        resource = self._json(response)
        if resource.get("resourceType") != resource_type:
            raise UpstreamUnavailable(self.name, f"read {resource_type}/{resource_id} returned a "
                                                 f"{resource.get('resourceType')!r}")
        return resource

    def search(self, resource_type: str, params: Sequence[tuple[str, str]], *, deadline: Deadline) -> SearchResult:
        query = list(params)
        if not any(k == "_count" for k, _ in query):
            query.append(("_count", str(self.page_size)))
        count = int(next(v for k, v in query if k == "_count"))
        url = f"{self.base_url}/{resource_type}"
        bundle = self._bundle(self._get(url, query, deadline))
        resources = bundle_resources(bundle)
        notes: list[IngestionNote] = []
        if next_link(bundle) is not None:
            rest = self.continue_search(bundle, deadline=deadline)
            return SearchResult(resources + rest.resources, rest.notes)
        # No next link: page with _offset while pages come back full (or Bundle.total says more remain).
        seen = {_identity(r) for r in resources}
        matched = _match_count(bundle)
        total = bundle.get("total") if isinstance(bundle.get("total"), int) else None
        offset = 0
        pages = 1
        base_query = [(k, v) for k, v in query if k != "_offset"]
        while True:
            offset += matched
            more = offset < total if total is not None else matched >= count
            if not more or matched == 0:
                break
            if pages >= self.max_pages:
                notes.append(self._note(NoteCode.UNSUPPORTED, url, f"stopped after {pages} pages"))
                break
            page = self._bundle(self._get(url, [*base_query, ("_offset", str(offset))], deadline))
            pages += 1
            fresh = [r for r in bundle_resources(page) if _identity(r) not in seen]
            if not fresh and bundle_resources(page):
                notes.append(self._note(NoteCode.UNSUPPORTED, url,
                                        "the server repeated a page for _offset: it may not support offset paging"))
                break
            seen.update(_identity(r) for r in fresh)
            resources.extend(fresh)
            matched = _match_count(page)
        return SearchResult(resources, tuple(notes))

    def continue_search(self, bundle: Mapping[str, Any], *, deadline: Deadline) -> SearchResult:
        resources: list[Resource] = []
        notes: list[IngestionNote] = []
        url = next_link(bundle)
        visited: set[str] = set()
        pages = 0
        while url is not None:
            if url in visited:
                notes.append(self._note(NoteCode.MALFORMED, url, "a next link points back to a page already read"))
                break
            if not self._same_origin(url):
                notes.append(self._note(NoteCode.UNSUPPORTED, url,
                                        "next link to another server not followed (the token stays here)"))
                break
            if pages >= self.max_pages:
                notes.append(self._note(NoteCode.UNSUPPORTED, url, f"stopped after {pages} more pages"))
                break
            visited.add(url)
            page = self._bundle(self._get(url, None, deadline))
            pages += 1
            resources.extend(bundle_resources(page))
            url = next_link(page)
        return SearchResult(resources, tuple(notes))

    # --- HTTP ------------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        if self._token is None:
            return {}
        token = self._token() if callable(self._token) else self._token
        return {"Authorization": f"Bearer {token}"}

    def _get(self, url: str, params: Sequence[tuple[str, str]] | None, deadline: Deadline, *,
             allow_missing: bool = False) -> httpx.Response:
        attempt = 0
        while True:
            if deadline.expired:
                raise UpstreamUnavailable(self.name, f"deadline of {deadline.budget_s:g}s exceeded before GET {url}")
            timeout = deadline.timeout(self.timeout_s)
            retry_after: float | None = None
            try:
                response = self._client.get(url, params=list(params) if params else None, headers=self._headers(),
                                            timeout=timeout)
            except httpx.TimeoutException:
                problem = f"GET {url} timed out after {timeout:.3g}s"
            except httpx.HTTPError as exc:
                problem = f"GET {url} failed: {type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if 200 <= status < 300 or (allow_missing and status in NOT_FOUND_STATUS):
                    return response
                if status not in RETRYABLE_STATUS:
                    detail = f"HTTP {status} for GET {url}: {_outcome_text(response)}"
                    if status >= 500:
                        raise UpstreamUnavailable(self.name, detail, status_code=status)
                    raise UpstreamRejected(self.name, detail, status_code=status)
                problem = f"HTTP {status} for GET {url}"
                retry_after = retry_after_s(response.headers.get("Retry-After"))
            if attempt >= self.retries:
                raise UpstreamUnavailable(self.name, f"{problem} (gave up after {attempt + 1} attempts)")
            wait = retry_after if retry_after is not None else self.backoff_s * (2 ** attempt)
            if wait > self.max_retry_after_s or wait >= deadline.remaining_s:
                raise UpstreamUnavailable(self.name, f"{problem}; retrying in {wait:.3g}s would exceed the deadline")
            log.info("fhir retry %d/%d in %.3gs: %s", attempt + 1, self.retries, wait, problem)
            time.sleep(wait)
            attempt += 1

    def _json(self, response: httpx.Response) -> Resource:
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise UpstreamUnavailable(self.name, f"{response.request.url} returned invalid JSON: {exc}") from None
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            raise UpstreamUnavailable(self.name, f"{response.request.url} did not return a FHIR resource")
        return body

    def _bundle(self, response: httpx.Response) -> Resource:
        body = self._json(response)
        if body["resourceType"] != "Bundle":
            raise UpstreamUnavailable(self.name, f"search {response.request.url} returned a {body['resourceType']}")
        return body

    def _same_origin(self, url: str) -> bool:
        parts = urlsplit(url)
        return (parts.scheme, parts.netloc) == self._origin

    def _note(self, code: NoteCode, where: str, message: str) -> IngestionNote:
        return IngestionNote(NoteSeverity.WARNING, code, where, f"{self.name}: {message}.")


def _identity(resource: Mapping[str, Any]) -> tuple[Any, Any]:
    return resource.get("resourceType"), resource.get("id") or id(resource)


def _match_count(bundle: Mapping[str, Any]) -> int:
    """Entries that are search matches (``search.mode`` "match" or absent), not includes or outcomes."""
    n = 0
    for entry in bundle.get("entry") or ():
        if isinstance(entry, dict):
            mode = (entry.get("search") or {}).get("mode") if isinstance(entry.get("search"), dict) else None
            if mode in (None, "match"):
                n += 1
    return n


def _outcome_text(response: httpx.Response) -> str:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        texts = [str(i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code"))
                 for i in body.get("issue") or () if isinstance(i, dict)]
        return "; ".join(texts) or "OperationOutcome"
    return response.reason_phrase
