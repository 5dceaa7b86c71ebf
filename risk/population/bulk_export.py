"""FHIR Bulk Data ``$export`` client (Bulk Data Access STU3, reference/interop.md §3.11).

:meth:`BulkExportClient.export` runs the whole exchange and leaves a folder that
:class:`risk.sources.bulk.BulkExport` reads (NDJSON files plus a ``manifest.json`` whose ``output[].url`` are the
local file names):

1. **Kick-off**: ``GET [base]/$export`` (or ``Patient/$export``, ``Group/[id]/$export``) with ``_type``,
   ``_since``, ``_typeFilter``, headers ``Accept: application/fhir+json`` and ``Prefer: respond-async`` (required in
   Bulk Data 1.0/2.0, a SHOULD in STU3: always sent). ``202`` + ``Content-Location`` is the status URL; ``429`` is
   retried after its ``Retry-After``; another 4xx is :class:`UpstreamRejected` with the OperationOutcome's text.
2. **Polling** the status URL: ``202`` (in progress, optional ``X-Progress``) → wait ``Retry-After`` (seconds or an
   HTTP date) when given, else exponential backoff (``poll_initial_s`` doubling up to ``poll_max_s``); ``200`` →
   the manifest; 4xx/5xx with a *transient* OperationOutcome issue code (or 429/503/504) → retried; any other
   error fails the export. The whole wait is bounded by ``max_wait_s``; on failure or interrupt the export is
   cancelled (``DELETE`` status URL) so the server can free it.
3. **Download** of every ``output`` and ``error`` file, streamed to disk, with the access token when the manifest
   says ``requiresAccessToken`` — but only to the FHIR server's own origin or an origin listed in
   ``token_origins``: a manifest pointing elsewhere would otherwise receive the token.

Authentication is a zero-argument token provider (``risk.loading.backend_auth.BackendServicesAuth``: SMART Backend
Services, a signed RS384/ES384 client assertion with ``jti``, ``exp`` ≤ 5 min, ``aud`` = token URL; tokens are
re-minted before they expire). It is asked for a token on every request, and a ``401`` makes the client drop the
cached token (``invalidate()``) and retry once with a fresh one, so a long export outlives its 5-minute tokens.

Every network wait has an explicit timeout; retries are bounded and logged; httpx errors never escape (they
become :class:`UpstreamUnavailable`).
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol
from urllib.parse import urlencode, urlsplit

import httpx
import orjson

from risk.errors import InvalidInput, UpstreamRejected, UpstreamUnavailable
from risk.sources.retry_after import retry_after_s

log = logging.getLogger(__name__)

SYSTEM: Final = "FHIR Bulk Data"
DEFAULT_TYPES: Final = ("Patient", "Observation", "Condition", "FamilyMemberHistory", "ImagingStudy",
                        "ServiceRequest", "Appointment")
"""What population scoring and the closed loop read."""
NDJSON: Final = "application/fhir+ndjson"
TRANSIENT_ISSUE_CODES: Final = frozenset({"transient", "lock-error", "no-store", "exception", "timeout",
                                          "incomplete", "throttled"})
"""OperationOutcome issue codes of the ``transient`` family (FHIR R4 issue-type): the export may be retried."""
_RETRY_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
_FILE_NAME: Final = re.compile(r"[^A-Za-z0-9_.-]")
MANIFEST_FILE: Final = "manifest.json"


class TokenProvider(Protocol):
    """Returns a bearer token (minting a new one when the cached one is about to expire)."""

    def __call__(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """What to export. ``level``: ``system`` (``[base]/$export``), ``patient`` or ``group`` (needs ``group_id``)."""

    level: Literal["system", "patient", "group"] = "system"
    types: tuple[str, ...] = DEFAULT_TYPES
    group_id: str | None = None
    since: datetime | None = None
    type_filters: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.level not in ("system", "patient", "group"):
            raise InvalidInput("level", f"must be system, patient or group, got {self.level!r}")
        if self.level == "group" and not (self.group_id and re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", self.group_id)):
            raise InvalidInput("group_id", f"a group export needs a FHIR id, got {self.group_id!r}")
        for t in self.types:
            if not re.fullmatch(r"[A-Z][A-Za-z]{1,63}", t):
                raise InvalidInput("types", f"{t!r} is not a FHIR resource type name")
        if self.since is not None and self.since.tzinfo is None:
            raise InvalidInput("since", "must be a timezone-aware instant")

    def path(self) -> str:
        if self.level == "patient":
            return "Patient/$export"
        if self.level == "group":
            return f"Group/{self.group_id}/$export"
        return "$export"

    def query(self) -> str:
        params: list[tuple[str, str]] = [("_outputFormat", NDJSON)]
        if self.types:
            params.append(("_type", ",".join(self.types)))
        if self.since is not None:
            params.append(("_since", self.since.astimezone(UTC).isoformat().replace("+00:00", "Z")))
        params.extend(("_typeFilter", f) for f in self.type_filters)
        return urlencode(params, safe=",/:$")


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    type: str
    url: str
    count: int | None = None


@dataclass(frozen=True, slots=True)
class ExportManifest:
    transaction_time: str
    request: str
    requires_access_token: bool
    output: tuple[ManifestEntry, ...]
    error: tuple[ManifestEntry, ...] = ()
    deleted: tuple[ManifestEntry, ...] = ()

    @classmethod
    def parse(cls, body: Any) -> ExportManifest:
        if not isinstance(body, dict):
            raise UpstreamRejected(SYSTEM, "the completed export's manifest is not a JSON object")
        for key in ("transactionTime", "request", "requiresAccessToken", "output"):
            if key not in body:
                raise UpstreamRejected(SYSTEM, f"the export manifest has no {key!r} (required)")
        return cls(transaction_time=str(body["transactionTime"]), request=str(body["request"]),
                   requires_access_token=bool(body["requiresAccessToken"]),
                   output=_entries(body.get("output"), "output"), error=_entries(body.get("error"), "error"),
                   deleted=_entries(body.get("deleted"), "deleted"))


def _entries(value: Any, name: str) -> tuple[ManifestEntry, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise UpstreamRejected(SYSTEM, f"the export manifest's {name!r} is not a list")
    out = []
    for i, e in enumerate(value):
        if not isinstance(e, dict) or not isinstance(e.get("type"), str) or not isinstance(e.get("url"), str):
            raise UpstreamRejected(SYSTEM, f"the export manifest's {name}[{i}] has no type and url")
        count = e.get("count")
        out.append(ManifestEntry(type=e["type"], url=e["url"], count=count if isinstance(count, int) else None))
    return tuple(out)


@dataclass(slots=True)
class ExportResult:
    """The downloaded export: the folder (a :class:`risk.sources.bulk.BulkExport` root) and what happened."""

    folder: Path
    manifest: ExportManifest
    files: dict[str, list[Path]] = field(default_factory=dict)
    error_outcomes: list[dict[str, Any]] = field(default_factory=list)
    bytes_downloaded: int = 0
    polls: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


class BulkExportClient:
    """One FHIR server's Bulk Data endpoint. ``http`` may be injected (tests, shared pools); it is then not closed."""

    def __init__(self, base_url: str, *, token: TokenProvider | None = None, http: httpx.Client | None = None,
                 timeout_s: float = 30.0, retries: int = 3, backoff_s: float = 1.0, poll_initial_s: float = 1.0,
                 poll_max_s: float = 60.0, max_wait_s: float = 6 * 3600.0, token_origins: Sequence[str] = (),
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 progress: Callable[[str], None] | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise InvalidInput("fhir.base_url", f"must be an http(s) URL, got {base_url!r}")
        for name, value in (("timeout_s", timeout_s), ("poll_initial_s", poll_initial_s),
                            ("poll_max_s", poll_max_s), ("max_wait_s", max_wait_s)):
            if not value > 0:
                raise InvalidInput(name, f"must be positive, got {value!r}")
        if retries < 0:
            raise InvalidInput("retries", f"must be >= 0, got {retries!r}")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._http = http or httpx.Client(timeout=timeout_s, follow_redirects=False)
        self._owns_http = http is None
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.poll_initial_s = poll_initial_s
        self.poll_max_s = poll_max_s
        self.max_wait_s = max_wait_s
        self._origins = {_origin(self.base_url), *(_origin(o) for o in token_origins)}
        self._sleep = sleep
        self._clock = clock
        self._progress = progress

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> BulkExportClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- the exchange ---------------------------------------------------------------------------------------
    def export(self, request: ExportRequest, dest: Path) -> ExportResult:
        """Kick off, wait for, and download one export into ``dest`` (created; must be empty or absent)."""
        dest = Path(dest)
        if dest.exists() and any(dest.iterdir()):
            raise InvalidInput("dest", f"{dest} is not empty")
        started = self._clock()
        status_url = self.kick_off(request)
        kicked = self._clock()
        try:
            manifest, polls = self.wait(status_url)
        except BaseException:
            self.cancel(status_url)
            raise
        ready = self._clock()
        result = self.download(manifest, dest)
        result.polls = polls
        result.seconds = {"kick_off": kicked - started, "wait": ready - kicked, "download": self._clock() - ready}
        self.delete_quietly(status_url)
        return result

    def kick_off(self, request: ExportRequest) -> str:
        url = f"{self.base_url}/{request.path()}?{request.query()}"
        response = self._request("GET", url, headers={"Accept": "application/fhir+json",
                                                      "Prefer": "respond-async"}, what="kick-off")
        if response.status_code != 202:
            raise UpstreamRejected(SYSTEM, f"kick-off answered HTTP {response.status_code} instead of 202 Accepted"
                                   f"{_outcome_text(response)}", status_code=response.status_code)
        location = response.headers.get("content-location")
        if not location:
            raise UpstreamRejected(SYSTEM, "kick-off answered 202 without a Content-Location (status URL)")
        log.info("bulk export started: %s", location)
        return location

    def wait(self, status_url: str) -> tuple[ExportManifest, int]:
        """Poll until the manifest is ready: (manifest, number of polls)."""
        deadline = self._clock() + self.max_wait_s
        delay = self.poll_initial_s
        polls = 0
        while True:
            polls += 1
            response = self._request("GET", status_url, headers={"Accept": "application/json"}, what="status",
                                     retry_status=frozenset())
            status = response.status_code
            if status == 200:
                try:
                    body = orjson.loads(response.content)
                except orjson.JSONDecodeError as exc:
                    raise UpstreamRejected(SYSTEM, f"the export manifest is not JSON: {exc}") from exc
                return ExportManifest.parse(body), polls
            if status == 202:
                progress = response.headers.get("x-progress")
                if progress and self._progress is not None:
                    self._progress(progress[:100])
                wait_s = retry_after_s(response.headers.get("retry-after"))
                if wait_s is None:
                    wait_s = delay
                    delay = min(delay * 2, self.poll_max_s)
            elif status in _RETRY_STATUS or _transient(response):
                wait_s = retry_after_s(response.headers.get("retry-after")) or delay
                delay = min(delay * 2, self.poll_max_s)
                log.warning("bulk export status HTTP %s (transient); retrying in %.1f s", status, wait_s)
            else:
                raise UpstreamRejected(SYSTEM, f"the export failed: HTTP {status}{_outcome_text(response)}",
                                       status_code=status)
            wait_s = min(max(wait_s, 0.0), self.poll_max_s)
            if self._clock() + wait_s > deadline:
                raise UpstreamUnavailable(SYSTEM, f"the export was not ready within {self.max_wait_s:g} s "
                                          f"({polls} polls)")
            self._sleep(wait_s)

    def download(self, manifest: ExportManifest, dest: Path) -> ExportResult:
        dest.mkdir(parents=True, exist_ok=True)
        result = ExportResult(folder=dest, manifest=manifest)
        local_output: list[dict[str, Any]] = []
        local_error: list[dict[str, Any]] = []
        counters: dict[str, int] = {}
        for kind, entries, sink in (("output", manifest.output, local_output), ("error", manifest.error, local_error)):
            for entry in entries:
                number = counters.get(entry.type, 0)
                counters[entry.type] = number + 1
                name = f"{_FILE_NAME.sub('_', entry.type)}.{number:03d}.ndjson"
                target = dest / ("errors" if kind == "error" else "") / name
                target.parent.mkdir(parents=True, exist_ok=True)
                result.bytes_downloaded += self._fetch_file(entry.url, target, manifest.requires_access_token)
                relative = target.relative_to(dest).as_posix()
                sink.append({"type": entry.type, "url": relative, **({"count": entry.count}
                                                                      if entry.count is not None else {})})
                if kind == "output":
                    result.files.setdefault(entry.type, []).append(target)
                else:
                    result.error_outcomes.extend(_outcomes(target))
        local = {"transactionTime": manifest.transaction_time, "request": manifest.request,
                 "requiresAccessToken": False, "output": local_output, "error": local_error,
                 "extension": {"downloadedFrom": self.base_url,
                               "downloadedAt": datetime.now(UTC).isoformat()}}
        (dest / MANIFEST_FILE).write_bytes(orjson.dumps(local, option=orjson.OPT_INDENT_2))
        if result.error_outcomes:
            log.warning("bulk export reported %d error OperationOutcome(s)", len(result.error_outcomes))
        return result

    def cancel(self, status_url: str) -> None:
        """Ask the server to stop and delete the export (best effort)."""
        self.delete_quietly(status_url)

    def delete_quietly(self, status_url: str) -> None:
        try:
            self._http.request("DELETE", status_url, headers=self._auth_headers(status_url, required=False),
                               timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            log.info("bulk export DELETE %s failed: %s", status_url, exc)

    # --- plumbing -----------------------------------------------------------------------------------------------
    def _auth_headers(self, url: str, *, required: bool) -> dict[str, str]:
        if self._token is None:
            return {}
        if _origin(url) not in self._origins:
            if required:
                raise UpstreamRejected(SYSTEM, f"the manifest needs the access token for {_origin(url)}, which is "
                                       "not the FHIR server's origin; list it in token_origins to allow it")
            return {}
        return {"Authorization": f"Bearer {self._token()}"}

    def _request(self, method: str, url: str, *, headers: Mapping[str, str], what: str,
                 retry_status: frozenset[int] = _RETRY_STATUS) -> httpx.Response:
        attempt = 0
        refreshed = False
        delay = self.backoff_s
        while True:
            try:
                response = self._http.request(method, url, headers={**headers,
                                                                    **self._auth_headers(url, required=True)},
                                              timeout=self.timeout_s)
            except httpx.TimeoutException as exc:
                failure: Exception = UpstreamUnavailable(SYSTEM, f"{what}: no answer within {self.timeout_s:g} s")
                cause: BaseException = exc
            except httpx.HTTPError as exc:
                failure = UpstreamUnavailable(SYSTEM, f"{what} {url}: {type(exc).__name__}: {exc}")
                cause = exc
            else:
                if response.status_code == 401 and self._token is not None and not refreshed:
                    refreshed = True
                    invalidate = getattr(self._token, "invalidate", None)
                    if callable(invalidate):
                        invalidate()
                    log.info("%s: 401, retrying once with a new token", what)
                    continue
                if response.status_code == 401:
                    raise UpstreamRejected(SYSTEM, f"{what}: the access token was refused (HTTP 401)"
                                           f"{_outcome_text(response)}", status_code=401)
                if response.status_code == 403:
                    raise UpstreamRejected(SYSTEM, f"{what}: forbidden (HTTP 403){_outcome_text(response)}",
                                           status_code=403)
                if response.status_code not in retry_status:
                    return response
                if attempt >= self.retries:
                    raise UpstreamUnavailable(SYSTEM, f"{what}: HTTP {response.status_code} after {attempt + 1} "
                                              f"attempts{_outcome_text(response)}", status_code=response.status_code)
                wait_s = retry_after_s(response.headers.get("retry-after"))
                wait_s = min(self.poll_max_s, wait_s if wait_s is not None else delay)
                log.warning("%s: HTTP %s, retry %d/%d in %.1f s", what, response.status_code, attempt + 1,
                            self.retries, wait_s)
                attempt += 1
                delay *= 2
                self._sleep(wait_s)
                continue
            if attempt >= self.retries:
                raise failure from cause
            log.warning("%s failed (%s), retry %d/%d in %.1f s", what, failure, attempt + 1, self.retries, delay)
            attempt += 1
            self._sleep(delay)
            delay *= 2

    def _fetch_file(self, url: str, target: Path, requires_token: bool) -> int:
        attempt = 0
        delay = self.backoff_s
        while True:
            headers = {"Accept": NDJSON, **(self._auth_headers(url, required=True) if requires_token else {})}
            partial = target.with_suffix(target.suffix + ".part")
            try:
                with self._http.stream("GET", url, headers=headers, timeout=self.timeout_s) as response:
                    if response.status_code == 200:
                        size = 0
                        with partial.open("wb") as fh:
                            for chunk in response.iter_bytes(1 << 20):
                                fh.write(chunk)
                                size += len(chunk)
                        shutil.move(partial, target)
                        return size
                    response.read()
                    status = response.status_code
                    if status not in _RETRY_STATUS or attempt >= self.retries:
                        raise UpstreamRejected(SYSTEM, f"download of {url}: HTTP {status}{_outcome_text(response)}",
                                               status_code=status)
                    wait_s = retry_after_s(response.headers.get("retry-after")) or delay
            except httpx.HTTPError as exc:
                partial.unlink(missing_ok=True)
                if attempt >= self.retries:
                    raise UpstreamUnavailable(SYSTEM, f"download of {url}: {type(exc).__name__}: {exc}") from exc
                wait_s = delay
            attempt += 1
            delay *= 2
            log.warning("download of %s failed, retry %d/%d in %.1f s", url, attempt, self.retries, wait_s)
            self._sleep(min(wait_s, self.poll_max_s))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def _json(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except (orjson.JSONDecodeError, httpx.ResponseNotRead):
        return None


def _transient(response: httpx.Response) -> bool:
    body = _json(response)
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return False
    issues = [i for i in body.get("issue") or [] if isinstance(i, dict)]
    return bool(issues) and all(i.get("code") in TRANSIENT_ISSUE_CODES for i in issues)


def _outcome_text(response: httpx.Response) -> str:
    body = _json(response)
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        texts = [str(i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code"))
                 for i in body.get("issue") or [] if isinstance(i, dict)]
        if texts:
            return ": " + "; ".join(texts)[:300]
    return ""


def _outcomes(path: Path) -> list[dict[str, Any]]:
    out = []
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                try:
                    value = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(value, dict):
                    out.append(value)
    return out
