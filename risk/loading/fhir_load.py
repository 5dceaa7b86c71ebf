"""Loads FHIR transaction Bundles (or Bulk-style NDJSON) into a FHIR R4 server.

Each unit is posted as a ``transaction`` (or ``batch``) Bundle. Units are idempotent when their entries are ``PUT
[type]/[id]`` (what ``risk synth`` writes and what NDJSON loading builds), so a re-run overwrites with the same
content. Servers cap transactions: Medplum's fhir-router refuses more than 50 update entries (8 when an
entry is conditional), so larger Bundles whose entries do not refer to each other by ``urn:uuid`` are split
into transactions of at most that size; a Bundle that does use ``urn:uuid`` references is sent whole.

One bad file is reported and the rest go on; an outage (no answer, 5xx after retries) stops the channel with
"unavailable", since nothing after it could land either.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from risk.errors import UpstreamRejected, UpstreamUnavailable
from risk.loading.report import ChannelReport, FileFailure
from risk.sources.retry_after import retry_after_s

MAX_TRANSACTION_ENTRIES = 50
"""Medplum fhir-router ``maxUpdates``: update (PUT) entries allowed in one transaction."""
MAX_STRICT_TRANSACTION_ENTRIES = 8
"""Medplum: entries allowed in a transaction that holds a conditional create/update (serializable isolation)."""
RETRIABLE_STATUS = frozenset({408, 429, 502, 503, 504})
SYSTEM = "FHIR server"

TokenProvider = Callable[[], str]
Bundle = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Unit:
    """One thing to post (a Bundle file, or a chunk of NDJSON lines) and the name failures are reported under."""

    name: str
    load: Callable[[], list[Bundle]]
    """Builds the transaction Bundle(s); raises ValueError for bad input (reported against ``name``)."""


class FhirTransactionClient:
    """Posts transaction Bundles to a FHIR base URL with a bearer token, explicit timeouts and bounded retries."""

    def __init__(self, base_url: str, *, token: str | TokenProvider | None = None, timeout_s: float = 60.0,
                 retries: int = 3, backoff_s: float = 0.5, http: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout_s = timeout_s
        self._retries = retries
        self._backoff_s = backoff_s
        self._http = http or httpx.Client(timeout=timeout_s, limits=httpx.Limits(max_connections=16))
        self._owns_http = http is None

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def post_transaction(self, bundle: Bundle) -> int:
        """Posts one transaction (or batch) Bundle; returns the number of entries the server applied.

        A batch with failed entries raises :class:`UpstreamRejected` naming how many failed (the others stay)."""
        body = json.dumps(bundle).encode()
        attempt = 0
        refreshed = False
        while True:
            headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json",
                       **self._auth_header()}
            try:
                response = self._http.post(self.base_url, content=body, headers=headers, timeout=self._timeout_s)
            except httpx.TimeoutException as exc:
                error: Exception = UpstreamUnavailable(SYSTEM, f"no answer within {self._timeout_s} s")
                cause: BaseException = exc
                status: int | None = None
                retry_after = None
            except httpx.HTTPError as exc:
                error = UpstreamUnavailable(SYSTEM, f"cannot reach {self.base_url}: {exc}")
                cause, status, retry_after = exc, None, None
            else:
                if response.status_code == 200:
                    return _applied_entries(response)
                if response.status_code == 401 and not refreshed and callable(self._token):
                    invalidate = getattr(self._token, "invalidate", None)
                    if invalidate is not None:
                        invalidate()
                        refreshed = True
                        continue
                status = response.status_code
                retry_after = retry_after_s(response.headers.get("retry-after"))
                text = _outcome_text(response)
                if status in RETRIABLE_STATUS or status >= 500:
                    error = UpstreamUnavailable(SYSTEM, f"HTTP {status}: {text}", status_code=status)
                else:
                    hint = " (the server wants a token: set RISK_SMART_BACKEND__* as in deploy/local/state/stack.env)" \
                        if status == 401 and self._token is None else ""
                    raise UpstreamRejected(SYSTEM, f"HTTP {status}: {text}{hint}", status_code=status)
                cause = httpx.HTTPStatusError(text, request=response.request, response=response)
            if attempt >= self._retries:
                raise error from cause
            time.sleep(max(retry_after or 0.0, self._backoff_s * 2**attempt))
            attempt += 1

    def _auth_header(self) -> dict[str, str]:
        if self._token is None:
            return {}
        token = self._token() if callable(self._token) else self._token
        return {"Authorization": f"Bearer {token}"}


def transaction_chunks(bundle: Bundle) -> list[Bundle]:
    """The transaction(s) to post for one Bundle: itself, or PUT-style chunks within the server's limits."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise ValueError("not a FHIR Bundle (resourceType must be 'Bundle')")
    if bundle.get("type") not in ("transaction", "batch"):
        raise ValueError(f"Bundle.type is {bundle.get('type')!r}: only transaction or batch Bundles are loaded")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise ValueError("Bundle.entry is not a list")
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("request"), dict) or not e["request"].get("method"):
            raise ValueError(f"Bundle.entry[{i}].request.method is missing")
    if bundle["type"] == "batch":  # entries stand alone: no size limit, each reported by the server
        return [bundle]
    strict = any(e["request"].get("ifNoneExist") or "?" in str(e["request"].get("url", "")) for e in entries)
    limit = MAX_STRICT_TRANSACTION_ENTRIES if strict else MAX_TRANSACTION_ENTRIES
    if len(entries) <= limit or _uses_local_references(entries):
        return [bundle]
    return [{"resourceType": "Bundle", "type": "transaction", **({"meta": bundle["meta"]} if "meta" in bundle else {}),
             "entry": entries[i:i + limit]} for i in range(0, len(entries), limit)]


def _uses_local_references(entries: Sequence[dict[str, Any]]) -> bool:
    local = [e["fullUrl"] for e in entries if str(e.get("fullUrl", "")).startswith("urn:uuid:")]
    if not local:
        return False
    text = json.dumps([e.get("resource") for e in entries])
    return any(f'"{u}"' in text for u in local)


def bundle_file_unit(path: Path) -> Unit:
    def load() -> list[Bundle]:
        try:
            bundle = json.loads(path.read_bytes())
        except OSError as exc:
            raise ValueError(f"cannot read: {exc.strerror}") from exc
        except ValueError as exc:
            raise ValueError(f"not JSON: {exc}") from exc
        return transaction_chunks(bundle)
    return Unit(str(path), load)


def ndjson_units(paths: Sequence[Path], chunk_size: int = MAX_TRANSACTION_ENTRIES,
                 failures: list[FileFailure] | None = None) -> Iterator[Unit]:
    """Transactions of ``PUT [type]/[id]`` entries, ``chunk_size`` resources each, from NDJSON files.

    Lines that are not a resource with an id go to ``failures`` (``path:line``) and are skipped: a resource
    without an id could only be POSTed, which a re-run would duplicate.
    """
    sink = failures if failures is not None else []
    for path in paths:
        batch: list[dict[str, Any]] = []
        first_line = number = 1
        try:
            with path.open("rb") as f:
                for number, raw in enumerate(f, start=1):
                    if not raw.strip():
                        continue
                    try:
                        resource = json.loads(raw)
                    except ValueError as exc:
                        sink.append(FileFailure(f"{path}:{number}", f"not JSON: {exc}"))
                        continue
                    if not isinstance(resource, dict) or not resource.get("resourceType") or not resource.get("id"):
                        sink.append(FileFailure(f"{path}:{number}", "not a resource with resourceType and id"))
                        continue
                    if not batch:
                        first_line = number
                    batch.append({"resource": resource,
                                  "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}})
                    if len(batch) >= chunk_size:
                        yield _ndjson_unit(path, first_line, number, batch)
                        batch = []
                if batch:
                    yield _ndjson_unit(path, first_line, number, batch)
        except OSError as exc:
            sink.append(FileFailure(str(path), f"cannot read: {exc.strerror}"))


def _ndjson_unit(path: Path, first: int, last: int, entries: list[dict[str, Any]]) -> Unit:
    bundle: Bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    return Unit(f"{path}:{first}-{last}", lambda: [bundle])


class FhirLoader:
    """Posts units with ``workers`` threads and fills a :class:`ChannelReport`."""

    def __init__(self, client: FhirTransactionClient, *, workers: int = 2) -> None:
        if workers < 1:
            raise ValueError(f'Argument "workers" must be at least 1, got {workers!r}.')
        self.client = client
        self.workers = workers

    def load(self, units: Iterator[Unit] | Sequence[Unit], report: ChannelReport,
             progress: Callable[[ChannelReport], None] | None = None) -> ChannelReport:
        started = time.monotonic()
        lock = threading.Lock()
        stop = threading.Event()

        def run(unit: Unit) -> None:
            if stop.is_set():
                return
            try:
                bundles = unit.load()
                applied = sum(self.client.post_transaction(b) for b in bundles)
            except UpstreamUnavailable as exc:
                with lock:
                    if not stop.is_set():
                        report.outage = str(exc)
                    stop.set()
                return
            except (ValueError, UpstreamRejected) as exc:
                with lock:
                    report.failures.append(FileFailure(unit.name, str(exc)))
                return
            with lock:
                report.files_loaded += 1
                report.items_loaded += applied
                if progress is not None:
                    progress(report)

        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="fhir-load") as pool:
            pending = []
            for unit in units:
                if stop.is_set():
                    break
                report.files_total += 1
                pending.append(pool.submit(run, unit))
                if len(pending) >= 4 * self.workers:  # bounded queue: NDJSON can be millions of lines
                    pending[0].result()
                    pending.pop(0)
            for f in pending:
                f.result()
        report.seconds = time.monotonic() - started
        return report


def _applied_entries(response: httpx.Response) -> int:
    try:
        body = response.json()
    except ValueError as exc:
        raise UpstreamRejected(SYSTEM, "transaction response is not JSON") from exc
    entries = body.get("entry") or [] if isinstance(body, dict) else []
    failed = [e.get("response", {}).get("status", "") for e in entries
              if not str(e.get("response", {}).get("status", "")).startswith("2")]
    if failed:
        raise UpstreamRejected(SYSTEM, f"{len(failed)} of {len(entries)} entries failed ({failed[0]})")
    return len(entries)


def _outcome_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        texts = [i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code", "")
                 for i in body.get("issue") or [] if isinstance(i, dict)]
        return "; ".join(t for t in texts if t) or "OperationOutcome without text"
    return str(body)[:200]
