"""The PACS behind one Protocol: DICOMweb (QIDO-RS, WADO-RS, STOW-RS) or a folder of DICOM files.

:class:`DicomSource` is what the product needs from a PACS: find a patient's studies, their series and
instances (QIDO-RS), retrieve an SR instance and image metadata (WADO-RS), a rendered frame as PNG (the key
image of a nodule), and store our own instances (STOW-RS). Two implementations, the dicomweb-client pattern:

* :class:`DicomwebSource` talks to a PACS over HTTP with ``dicomweb_client.DICOMwebClient``: basic auth, a
  bearer token or any ``requests`` auth object; an explicit per-request timeout capped by the caller's
  :class:`~risk.deadline.Deadline`; retries with exponential backoff (honouring ``Retry-After``) on
  429/408/503/504 only; QIDO paging with ``limit``/``offset`` that stops on a short page and on a server that
  ignores ``offset``. dicomweb-client's own retrying is switched off so that backoff never outlives the
  deadline.
* :class:`DicomFolderSource` reads a folder of Part-10 files (any nesting) through its own in-memory index.
  Unreadable files are listed in :attr:`DicomFolderSource.index_problems`; an instance whose declared element
  lengths run past the end of the file (pydicom reads such a file silently, short) is refused as truncated.

Errors are the service's own (:mod:`risk.errors`), never ``requests``/``retrying`` exceptions:
``UpstreamUnavailable`` (cannot connect, timeout, 5xx, 408/429 after retries, deadline spent: absence of data
means nothing), ``UpstreamRejected`` (4xx, an undecodable or truncated instance: retrying will not help),
``NotFound`` (WADO-RS 404 for a named instance), ``InvalidInput`` (a malformed UID, before any request).
QIDO zero matches arrive as 204 (PS3.18 today) or 200 with an empty body (CP-2473): both are ``[]``.
"""

from __future__ import annotations

import functools
import io
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import pydicom
import requests
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import RE_VALID_UID, UID

from risk.config import DicomwebSettings
from risk.deadline import Deadline
from risk.errors import InvalidInput, NotFound, UpstreamRejected, UpstreamUnavailable
from risk.sources.retry_after import retry_after_s

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRIABLE_STATUS = frozenset({408, 429, 503, 504})
"""Request Timeout, Too Many Requests, Service Unavailable, Gateway Timeout: transient by definition."""
QIDO_PAGE_SIZE = 200
QIDO_MAX_PAGES = 50
"""At most 10,000 matches per query: more means a query that matched far more than one patient."""
PNG_MEDIA_TYPE = "image/png"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LUNG_WINDOW = (-600.0, 1500.0)
"""(centre, width) in HU used to render a CT frame when the caller and the image name no window."""

# DICOM JSON tags read from QIDO-RS results (PS3.18 Table 6.7.1-2/2a/2b).
_TAG_STUDY_UID = "0020000D"
_TAG_SERIES_UID = "0020000E"
_TAG_SOP_UID = "00080018"
_TAG_SOP_CLASS = "00080016"
_TAG_PATIENT_ID = "00100020"
_TAG_STUDY_DATE = "00080020"
_TAG_MODALITIES = "00080061"
_TAG_MODALITY = "00080060"
_TAG_STUDY_DESCRIPTION = "00081030"
_TAG_ACCESSION = "00080050"
_TAG_SERIES_NUMBER = "00200011"
_TAG_INSTANCE_NUMBER = "00200013"
_TAG_FAILED_SOP_SEQUENCE = "00081198"
_TAG_REFERENCED_SOP_SEQUENCE = "00081199"
_TAG_REFERENCED_SOP_UID = "00081155"
_TAG_FAILURE_REASON = "00081197"


# --- What a source returns ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StudyRecord:
    """One QIDO-RS study match."""

    study_instance_uid: str
    patient_id: str | None
    study_date: date | None
    modalities: tuple[str, ...]
    description: str | None = None
    accession_number: str | None = None


@dataclass(frozen=True, slots=True)
class SeriesRecord:
    study_instance_uid: str
    series_instance_uid: str
    modality: str | None
    series_number: int | None = None


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str | None
    instance_number: int | None = None


@dataclass(frozen=True, slots=True)
class StoreResult:
    """Outcome of a STOW-RS request: which SOP instances were stored and which failed, with the reason."""

    stored: tuple[str, ...]
    failed: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failed


@runtime_checkable
class DicomSource(Protocol):
    """What the product needs from a PACS. Every method takes the caller's deadline."""

    @property
    def system(self) -> str:
        """A human-readable name of the source, used in notes and errors (no credentials)."""
        ...

    def search_studies(self, *, patient_id: str | None = None, study_instance_uid: str | None = None,
                       deadline: Deadline | None = None) -> list[StudyRecord]: ...

    def search_series(self, study_instance_uid: str, *, modality: str | None = None,
                      deadline: Deadline | None = None) -> list[SeriesRecord]: ...

    def search_instances(self, study_instance_uid: str, series_instance_uid: str, *,
                         deadline: Deadline | None = None) -> list[InstanceRecord]: ...

    def retrieve_instance(self, study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str, *,
                          deadline: Deadline | None = None) -> Dataset: ...

    def retrieve_instance_metadata(self, study_instance_uid: str, series_instance_uid: str,
                                   sop_instance_uid: str, *, deadline: Deadline | None = None) -> Dataset: ...

    def retrieve_series_metadata(self, study_instance_uid: str, series_instance_uid: str, *,
                                 deadline: Deadline | None = None) -> list[Dataset]: ...

    def retrieve_rendered_frame(self, study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str,
                                *, frame_number: int = 1, window: tuple[float, float] | None = None,
                                deadline: Deadline | None = None) -> bytes:
        """The frame rendered as PNG bytes; ``window`` is (centre, width) in the image's output units."""
        ...

    def store_instances(self, datasets: Sequence[Dataset], *, deadline: Deadline | None = None) -> StoreResult: ...


def open_dicom_source(settings: DicomwebSettings) -> DicomSource | None:
    """The configured PACS: DICOMweb when ``url`` is set, else the folder ``file_dir``, else None."""
    if settings.url is not None:
        return DicomwebSource.from_settings(settings)
    if settings.file_dir is not None:
        return DicomFolderSource(settings.file_dir)
    return None


# --- DICOMweb -------------------------------------------------------------------------------------------------
class _TimeoutSession(requests.Session):
    """A ``requests`` session whose timeout is set per call (per thread) by the source, capped by a deadline.

    dicomweb-client fixes one timeout at construction; the deadline of each request differs.
    """

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    @contextmanager
    def timeout(self, seconds: float) -> Iterator[None]:
        previous = getattr(self._local, "timeout", None)
        self._local.timeout = seconds
        try:
            yield
        finally:
            self._local.timeout = previous

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        timeout = getattr(self._local, "timeout", None)
        if timeout is not None:
            kwargs["timeout"] = timeout
        return super().request(method, url, *args, **kwargs)


class DicomwebSource:
    """A PACS over DICOMweb (dicomweb-client), with explicit timeouts, bounded retries and owned errors."""

    def __init__(self, url: str, *, username: str | None = None, password: str | None = None,
                 bearer_token: str | None = None, auth: requests.auth.AuthBase | None = None,
                 timeout_s: float = 20.0, retries: int = 3, backoff_s: float = 0.5,
                 page_size: int = QIDO_PAGE_SIZE, stow_timeout_s: float = 120.0) -> None:
        if timeout_s <= 0:
            raise ValueError(f'Argument "timeout_s" must be positive, got {timeout_s!r}.')
        if retries < 0:
            raise ValueError(f'Argument "retries" must not be negative, got {retries!r}.')
        if backoff_s < 0:
            raise ValueError(f'Argument "backoff_s" must not be negative, got {backoff_s!r}.')
        if (username is None) != (password is None):
            raise ValueError('Arguments "username" and "password" go together.')
        if sum(x is not None for x in (username, bearer_token, auth)) > 1:
            raise ValueError('Give one of "username"/"password", "bearer_token" or "auth".')
        self.url = url.rstrip("/")
        self._timeout_s = timeout_s
        self._stow_timeout_s = max(timeout_s, stow_timeout_s)
        """STOW-RS bodies can be large: the timeout must cover the whole upload (Weasis #899)."""
        self._retries = retries
        self._backoff_s = backoff_s
        self._page_size = page_size
        self._session = _TimeoutSession()
        if username is not None and password is not None:
            self._session.auth = (username, password)
        elif auth is not None:
            self._session.auth = auth
        headers = {"Authorization": f"Bearer {bearer_token}"} if bearer_token else None
        self._headers: dict[str, str] = dict(headers or {})
        try:
            self._client = DICOMwebClient(url=self.url, session=self._session, headers=headers, timeout=timeout_s)
        except ValueError as exc:
            raise InvalidInput("dicomweb.url", str(exc)) from exc
        # Retries are ours (deadline-aware); dicomweb-client's would sleep 1, 2, 4 ... s regardless.
        self._client.set_http_retry_params(retry=False)

    @classmethod
    def from_settings(cls, settings: DicomwebSettings) -> DicomwebSource:
        if settings.url is None:
            raise InvalidInput("dicomweb.url", "is not set")
        return cls(str(settings.url), username=settings.username, password=settings.password,
                   bearer_token=settings.bearer_token, timeout_s=settings.timeout_s, retries=settings.retries,
                   backoff_s=settings.backoff_s)

    @property
    def system(self) -> str:
        return f"PACS (DICOMweb) {self.url}"

    # QIDO-RS
    def search_studies(self, *, patient_id: str | None = None, study_instance_uid: str | None = None,
                       deadline: Deadline | None = None) -> list[StudyRecord]:
        filters: dict[str, str] = {}
        if patient_id is not None:
            filters["PatientID"] = _require_text("patient_id", patient_id)
        if study_instance_uid is not None:
            filters["StudyInstanceUID"] = _require_uid("study_instance_uid", study_instance_uid)
        fields = ["StudyDate", "ModalitiesInStudy", "StudyDescription", "AccessionNumber", "PatientID"]
        found = self._search("QIDO-RS studies", lambda limit, offset: self._client.search_for_studies(
            search_filters=filters, fields=fields, limit=limit, offset=offset), _TAG_STUDY_UID, deadline)
        return [_study_record(item) for item in found if _json_first(item, _TAG_STUDY_UID)]

    def search_series(self, study_instance_uid: str, *, modality: str | None = None,
                      deadline: Deadline | None = None) -> list[SeriesRecord]:
        study = _require_uid("study_instance_uid", study_instance_uid)
        filters = {"Modality": modality} if modality else {}
        found = self._search("QIDO-RS series", lambda limit, offset: self._client.search_for_series(
            study_instance_uid=study, search_filters=filters, limit=limit, offset=offset),
            _TAG_SERIES_UID, deadline)
        records = [_series_record(item, study) for item in found if _json_first(item, _TAG_SERIES_UID)]
        # Some servers ignore a series-level Modality filter: apply it here as well.
        return [r for r in records if modality is None or r.modality == modality]

    def search_instances(self, study_instance_uid: str, series_instance_uid: str, *,
                         deadline: Deadline | None = None) -> list[InstanceRecord]:
        study = _require_uid("study_instance_uid", study_instance_uid)
        series = _require_uid("series_instance_uid", series_instance_uid)
        found = self._search("QIDO-RS instances", lambda limit, offset: self._client.search_for_instances(
            study_instance_uid=study, series_instance_uid=series, limit=limit, offset=offset),
            _TAG_SOP_UID, deadline)
        return [_instance_record(item, study, series) for item in found if _json_first(item, _TAG_SOP_UID)]

    # WADO-RS
    def retrieve_instance(self, study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str, *,
                          deadline: Deadline | None = None) -> Dataset:
        study, series, sop = _require_uids(study_instance_uid, series_instance_uid, sop_instance_uid)
        operation = f"WADO-RS instance {sop}"
        try:
            return self._call(operation, lambda: self._client.retrieve_instance(study, series, sop), deadline)
        except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, IndexError) as exc:
            raise UpstreamRejected(self.system, f"{operation} could not be decoded: {exc}") from exc

    def retrieve_instance_metadata(self, study_instance_uid: str, series_instance_uid: str,
                                   sop_instance_uid: str, *, deadline: Deadline | None = None) -> Dataset:
        study, series, sop = _require_uids(study_instance_uid, series_instance_uid, sop_instance_uid)
        operation = f"WADO-RS metadata of instance {sop}"
        item = self._call(operation, lambda: self._client.retrieve_instance_metadata(study, series, sop), deadline)
        return _dataset_from_json(item, self.system, operation)

    def retrieve_series_metadata(self, study_instance_uid: str, series_instance_uid: str, *,
                                 deadline: Deadline | None = None) -> list[Dataset]:
        study = _require_uid("study_instance_uid", study_instance_uid)
        series = _require_uid("series_instance_uid", series_instance_uid)
        operation = f"WADO-RS metadata of series {series}"
        items = self._call(operation, lambda: self._client.retrieve_series_metadata(study, series), deadline)
        return [_dataset_from_json(item, self.system, operation) for item in items]

    def retrieve_rendered_frame(self, study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str,
                                *, frame_number: int = 1, window: tuple[float, float] | None = None,
                                deadline: Deadline | None = None) -> bytes:
        study, series, sop = _require_uids(study_instance_uid, series_instance_uid, sop_instance_uid)
        if frame_number < 1:
            raise InvalidInput("frame_number", f"must be >= 1, got {frame_number}")
        url = f"{self.url}/studies/{study}/series/{series}/instances/{sop}/frames/{frame_number}/rendered"
        if window is not None:
            # Literal commas (RFC 3986 allows them in a query): dicomweb-client sends %2C, which Orthanc 1.10's
            # DICOMweb plugin does not decode (400 Bad Request).
            url += f"?window={window[0]:g},{window[1]:g},linear"
        operation = f"WADO-RS rendered frame {frame_number} of {sop_instance_uid}"

        def fetch() -> bytes:
            response = self._session.get(url, headers={"Accept": PNG_MEDIA_TYPE, **self._headers})
            response.raise_for_status()
            return response.content

        png = self._call(operation, fetch, deadline)
        if not isinstance(png, bytes | bytearray) or not bytes(png).startswith(PNG_SIGNATURE):
            raise UpstreamRejected(self.system, f"{operation}: the answer is not a PNG image")
        return bytes(png)

    # STOW-RS
    def store_instances(self, datasets: Sequence[Dataset], *, deadline: Deadline | None = None) -> StoreResult:
        if not datasets:
            return StoreResult(stored=())
        for i, ds in enumerate(datasets):
            _require_uid(f"datasets[{i}].SOPInstanceUID", str(ds.get("SOPInstanceUID", "")))
        response = self._call("STOW-RS", lambda: self._client.store_instances(list(datasets)), deadline,
                              timeout_s=self._stow_timeout_s)
        return _store_result(response.to_json_dict() if isinstance(response, Dataset) else response)

    # plumbing
    def _search(self, operation: str, page: Callable[[int, int], list[dict[str, Any]]], key_tag: str,
                deadline: Deadline | None) -> list[dict[str, Any]]:
        """All matches, paged with limit/offset; stops on a short page or a page with nothing new."""
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for number in range(QIDO_MAX_PAGES):
            offset = number * self._page_size
            items = self._call(operation, functools.partial(page, self._page_size, offset), deadline)
            new = [i for i in items if _json_first(i, key_tag) not in seen]
            for item in new:
                seen.add(str(_json_first(item, key_tag)))
            out.extend(new)
            if len(items) < self._page_size or not new:
                return out
        logger.warning("%s: stopped after %d pages (%d matches)", operation, QIDO_MAX_PAGES, len(out))
        return out

    def _call(self, operation: str, fn: Callable[[], T], deadline: Deadline | None, *,
              timeout_s: float | None = None) -> T:
        budget = deadline if deadline is not None else Deadline.unlimited()
        attempt = 0
        while True:
            if budget.expired:
                raise UpstreamUnavailable(self.system, f"{operation}: deadline exceeded before an answer")
            timeout = budget.timeout(timeout_s or self._timeout_s)
            retry_after: float | None = None
            status: int | None = None
            try:
                with self._session.timeout(timeout):
                    return fn()
            except requests.HTTPError as exc:
                response = exc.response
                status = response.status_code if response is not None else None
                retry_after = retry_after_s(response.headers.get("Retry-After") if response is not None else None)
                error: Exception = _http_error(self.system, operation, status, response)
                cause: BaseException = exc
            except requests.Timeout as exc:
                error, cause = UpstreamUnavailable(self.system, f"{operation}: no answer within {timeout:.1f} s"), exc
            except requests.ConnectionError as exc:
                error, cause = UpstreamUnavailable(self.system, f"{operation}: cannot connect ({_reason(exc)})"), exc
            except requests.RequestException as exc:
                error, cause = UpstreamUnavailable(self.system, f"{operation}: {_reason(exc)}"), exc
            if status not in RETRIABLE_STATUS or attempt >= self._retries:
                raise error from cause
            wait = max(retry_after or 0.0, self._backoff_s * 2**attempt)
            if wait >= budget.remaining_s:
                raise error from cause
            logger.info("%s: HTTP %s, retry %d in %.2f s", operation, status, attempt + 1, wait)
            time.sleep(wait)
            attempt += 1


def _http_error(system: str, operation: str, status: int | None, response: Any) -> Exception:
    detail = ""
    if response is not None:
        try:
            detail = (response.text or "")[:200].strip()
        except Exception:  # a streamed or binary body: the status says enough
            detail = ""
    message = f"{operation}: HTTP {status}" + (f" ({detail})" if detail else "")
    if status is None or status in RETRIABLE_STATUS or status >= 500:
        return UpstreamUnavailable(system, message, status_code=status)
    if status == 404 and operation.startswith("WADO-RS"):
        return NotFound(f"{system}: {message}")
    if status in (401, 403):
        return UpstreamRejected(system, f"{message}: check the PACS credentials", status_code=status)
    return UpstreamRejected(system, message, status_code=status)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:197] + "..."


# --- Folder of DICOM files ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Indexed:
    path: Path
    patient_id: str | None
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str | None
    modality: str | None
    study_date: date | None
    study_description: str | None
    accession_number: str | None
    series_number: int | None
    instance_number: int | None


_INDEX_TAGS = ["PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality",
               "StudyDate", "StudyDescription", "AccessionNumber", "SeriesNumber", "InstanceNumber"]


class DicomFolderSource:
    """A folder of DICOM Part-10 files (any nesting) served like a PACS, for the embedded default and tests.

    The index is built on first use (``refresh()`` rebuilds it). ``writable=True`` lets ``store_instances`` write
    ``<folder>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``.
    """

    def __init__(self, folder: Path | str, *, writable: bool = False) -> None:
        self.folder = Path(folder)
        self.writable = writable
        self._lock = threading.Lock()
        self._instances: dict[str, _Indexed] | None = None
        self._problems: list[tuple[Path, str]] = []

    @property
    def system(self) -> str:
        return f"DICOM folder {self.folder}"

    @property
    def index_problems(self) -> tuple[tuple[Path, str], ...]:
        """Files that could not be indexed, with the reason (after the index has been built)."""
        self._index()
        return tuple(self._problems)

    def refresh(self) -> None:
        with self._lock:
            self._instances = None
        self._index()

    def search_studies(self, *, patient_id: str | None = None, study_instance_uid: str | None = None,
                       deadline: Deadline | None = None) -> list[StudyRecord]:
        if patient_id is not None:
            _require_text("patient_id", patient_id)
        if study_instance_uid is not None:
            _require_uid("study_instance_uid", study_instance_uid)
        studies: dict[str, list[_Indexed]] = {}
        for entry in self._index().values():
            if patient_id is not None and entry.patient_id != patient_id:
                continue
            if study_instance_uid is not None and entry.study_instance_uid != study_instance_uid:
                continue
            studies.setdefault(entry.study_instance_uid, []).append(entry)
        out = []
        for uid, entries in sorted(studies.items()):
            first = entries[0]
            modalities = tuple(sorted({e.modality for e in entries if e.modality}))
            out.append(StudyRecord(study_instance_uid=uid, patient_id=first.patient_id, study_date=first.study_date,
                                   modalities=modalities, description=first.study_description,
                                   accession_number=first.accession_number))
        return out

    def search_series(self, study_instance_uid: str, *, modality: str | None = None,
                      deadline: Deadline | None = None) -> list[SeriesRecord]:
        _require_uid("study_instance_uid", study_instance_uid)
        series: dict[str, SeriesRecord] = {}
        for entry in self._index().values():
            if entry.study_instance_uid != study_instance_uid:
                continue
            if modality is not None and entry.modality != modality:
                continue
            series.setdefault(entry.series_instance_uid, SeriesRecord(
                study_instance_uid=entry.study_instance_uid, series_instance_uid=entry.series_instance_uid,
                modality=entry.modality, series_number=entry.series_number))
        return sorted(series.values(), key=lambda s: (s.series_number or 0, s.series_instance_uid))

    def search_instances(self, study_instance_uid: str, series_instance_uid: str, *,
                         deadline: Deadline | None = None) -> list[InstanceRecord]:
        _require_uid("study_instance_uid", study_instance_uid)
        _require_uid("series_instance_uid", series_instance_uid)
        found = [InstanceRecord(study_instance_uid=e.study_instance_uid, series_instance_uid=e.series_instance_uid,
                                sop_instance_uid=e.sop_instance_uid, sop_class_uid=e.sop_class_uid,
                                instance_number=e.instance_number)
                 for e in self._index().values()
                 if e.study_instance_uid == study_instance_uid and e.series_instance_uid == series_instance_uid]
        return sorted(found, key=lambda i: (i.instance_number or 0, i.sop_instance_uid))

    def retrieve_instance(self, study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str, *,
                          deadline: Deadline | None = None) -> Dataset:
        entry = self._entry(study_instance_uid, series_instance_uid, sop_instance_uid)
        try:
            raw = entry.path.read_bytes()
        except OSError as exc:
            raise UpstreamUnavailable(self.system, f"cannot read {entry.path}: {exc.strerror}") from exc
        try:
            return read_part10(raw)
        except TruncatedDicomError as exc:
            raise UpstreamRejected(self.system, f"instance {sop_instance_uid} ({entry.path.name}) is truncated: "
                                                f"{exc}") from exc
        except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, IndexError) as exc:
            raise UpstreamRejected(self.system, f"instance {sop_instance_uid} ({entry.path.name}) could not be "
                                                f"decoded: {exc}") from exc

    def retrieve_instance_metadata(self, study_instance_uid: str, series_instance_uid: str,
                                   sop_instance_uid: str, *, deadline: Deadline | None = None) -> Dataset:
        entry = self._entry(study_instance_uid, series_instance_uid, sop_instance_uid)
        return self._read_header(entry)

    def retrieve_series_metadata(self, study_instance_uid: str, series_instance_uid: str, *,
                                 deadline: Deadline | None = None) -> list[Dataset]:
        _require_uid("study_instance_uid", study_instance_uid)
        _require_uid("series_instance_uid", series_instance_uid)
        entries = [e for e in self._index().values()
                   if e.study_instance_uid == study_instance_uid and e.series_instance_uid == series_instance_uid]
        if not entries:
            raise NotFound(f"{self.system}: series {series_instance_uid} of study {study_instance_uid}")
        return [self._read_header(e) for e in sorted(entries, key=lambda e: (e.instance_number or 0,
                                                                             e.sop_instance_uid))]

    def retrieve_rendered_frame(self, study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str,
                                *, frame_number: int = 1, window: tuple[float, float] | None = None,
                                deadline: Deadline | None = None) -> bytes:
        if frame_number < 1:
            raise InvalidInput("frame_number", f"must be >= 1, got {frame_number}")
        dataset = self.retrieve_instance(study_instance_uid, series_instance_uid, sop_instance_uid)
        try:
            return render_png(dataset, frame_number=frame_number, window=window)
        except (AttributeError, ValueError, NotImplementedError, RuntimeError) as exc:
            raise UpstreamRejected(self.system, f"frame {frame_number} of {sop_instance_uid} cannot be rendered: "
                                                f"{exc}") from exc

    def store_instances(self, datasets: Sequence[Dataset], *, deadline: Deadline | None = None) -> StoreResult:
        if not self.writable:
            raise UpstreamRejected(self.system, "the folder source is read-only (writable=False)")
        stored: list[str] = []
        failed: list[tuple[str, str]] = []
        index = self._index()
        for i, ds in enumerate(datasets):
            uids = [str(ds.get(k, "")) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
            try:
                _require_uids(uids[0], uids[1], uids[2], field=f"datasets[{i}]")
                path = self.folder / uids[0] / uids[1] / f"{uids[2]}.dcm"
                path.parent.mkdir(parents=True, exist_ok=True)
                _ensure_file_meta(ds)
                ds.save_as(path, enforce_file_format=True)
                entry = _index_entry(path, ds)
            except (InvalidInput, OSError, ValueError, AttributeError, TypeError) as exc:
                failed.append((uids[2] or f"datasets[{i}]", str(exc)))
                continue
            with self._lock:
                index[entry.sop_instance_uid] = entry
            stored.append(entry.sop_instance_uid)
        return StoreResult(stored=tuple(stored), failed=tuple(failed))

    # plumbing
    def _index(self) -> dict[str, _Indexed]:
        with self._lock:
            if self._instances is not None:
                return self._instances
            if not self.folder.is_dir():
                raise UpstreamUnavailable(self.system, "the folder does not exist")
            instances: dict[str, _Indexed] = {}
            problems: list[tuple[Path, str]] = []
            for path in sorted(p for p in self.folder.rglob("*") if p.is_file()):
                if path.name.startswith(".") or path.suffix.lower() in (".json", ".md", ".txt", ".parquet"):
                    continue
                try:
                    header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_INDEX_TAGS)
                    entry = _index_entry(path, header)
                except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, AttributeError) as exc:
                    problems.append((path, f"{type(exc).__name__}: {exc}"))
                    continue
                if entry.sop_instance_uid in instances:
                    problems.append((path, f"duplicate SOP Instance UID {entry.sop_instance_uid} "
                                           f"(also {instances[entry.sop_instance_uid].path.name}); first kept"))
                    continue
                instances[entry.sop_instance_uid] = entry
            self._instances, self._problems = instances, problems
            return instances

    def _entry(self, study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str) -> _Indexed:
        _require_uids(study_instance_uid, series_instance_uid, sop_instance_uid)
        entry = self._index().get(sop_instance_uid)
        if (entry is None or entry.study_instance_uid != study_instance_uid
                or entry.series_instance_uid != series_instance_uid):
            raise NotFound(f"{self.system}: instance {sop_instance_uid} of series {series_instance_uid}")
        return entry

    def _read_header(self, entry: _Indexed) -> Dataset:
        try:
            return pydicom.dcmread(entry.path, stop_before_pixels=True)
        except (InvalidDicomError, EOFError, OSError, ValueError) as exc:
            raise UpstreamRejected(self.system, f"header of {entry.path.name} could not be read: {exc}") from exc


def _index_entry(path: Path, ds: Dataset) -> _Indexed:
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if not ds.get(keyword):
            raise ValueError(f'no "{keyword}"')
    return _Indexed(
        path=path, patient_id=_text(ds.get("PatientID")), study_instance_uid=str(ds.StudyInstanceUID),
        series_instance_uid=str(ds.SeriesInstanceUID), sop_instance_uid=str(ds.SOPInstanceUID),
        sop_class_uid=_text(ds.get("SOPClassUID")), modality=_text(ds.get("Modality")),
        study_date=parse_da(ds.get("StudyDate")), study_description=_text(ds.get("StudyDescription")),
        accession_number=_text(ds.get("AccessionNumber")), series_number=_int(ds.get("SeriesNumber")),
        instance_number=_int(ds.get("InstanceNumber")),
    )


def _ensure_file_meta(ds: Dataset) -> None:
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = FileMetaDataset()
        ds.file_meta = meta
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "TransferSyntaxUID" not in meta:
        meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian


# --- Part-10 reading and rendering ----------------------------------------------------------------------------
class TruncatedDicomError(ValueError):
    """An element's declared length runs past the end of the data: the object was cut short."""


def read_part10(raw: bytes) -> Dataset:
    """Read a DICOM Part-10 byte string, refusing truncated data.

    pydicom reads a file cut inside a defined-length sequence without complaint and returns fewer items (an SR
    would lose its last measurement groups silently), so the top-level elements' declared lengths are checked
    against the bytes actually present. Undefined-length sequences cut short make pydicom raise by itself.
    """
    dataset = pydicom.dcmread(io.BytesIO(raw))
    _check_not_truncated(raw)
    return dataset


def _check_not_truncated(raw: bytes) -> None:
    from pydicom.filereader import _read_file_meta_info, data_element_generator, read_preamble

    fp = io.BytesIO(raw)
    read_preamble(fp, True)
    meta = _read_file_meta_info(fp)
    syntax = UID(str(meta.get("TransferSyntaxUID", pydicom.uid.ExplicitVRLittleEndian)))
    if syntax.is_deflated or not syntax.is_transfer_syntax:
        return
    for element in data_element_generator(fp, syntax.is_implicit_VR, syntax.is_little_endian, defer_size=None):
        length = getattr(element, "length", None)
        value = getattr(element, "value", None)
        if (length is not None and length != 0xFFFFFFFF and isinstance(value, bytes | bytearray)
                and len(value) < length):
            raise TruncatedDicomError(f"element {element.tag} declares {length} bytes, {len(value)} present")


def render_png(dataset: Dataset, *, frame_number: int = 1, window: tuple[float, float] | None = None) -> bytes:
    """Render one frame as an 8-bit greyscale PNG: modality LUT (rescale), then a linear window.

    The window is the caller's, else the image's first Window Center/Width, else the lung window.
    """
    from PIL import Image
    from pydicom.pixels import apply_modality_lut

    pixels = dataset.pixel_array
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frame_number > frames:
        raise ValueError(f"frame {frame_number} requested, the image has {frames}")
    if frames > 1:
        pixels = pixels[frame_number - 1]
    values = apply_modality_lut(pixels, dataset).astype("float64")
    centre, width = window or _dataset_window(dataset) or LUNG_WINDOW
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    low = centre - width / 2.0
    scaled = ((values - low) / width * 255.0).clip(0, 255).astype("uint8")
    if dataset.get("PhotometricInterpretation") == "MONOCHROME1":
        scaled = 255 - scaled
    out = io.BytesIO()
    Image.fromarray(scaled, mode="L").save(out, format="PNG")
    return out.getvalue()


def _dataset_window(dataset: Dataset) -> tuple[float, float] | None:
    centre, width = dataset.get("WindowCenter"), dataset.get("WindowWidth")
    if centre is None or width is None:
        return None
    def first(value: Any) -> float:
        return float(value[0]) if isinstance(value, Sequence) and not isinstance(value, str) else float(value)

    try:
        return first(centre), first(width)
    except (TypeError, ValueError, IndexError):
        return None


# --- Small helpers --------------------------------------------------------------------------------------------
def parse_da(value: Any) -> date | None:
    """A DICOM DA (YYYYMMDD, or the old YYYY.MM.DD) as a date; None when absent or malformed."""
    text = str(value or "").strip().replace(".", "")
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def _json_first(item: dict[str, Any], tag: str) -> Any:
    element = item.get(tag)
    if not isinstance(element, dict):
        return None
    values = element.get("Value")
    return values[0] if isinstance(values, list) and values else None


def _json_all(item: dict[str, Any], tag: str) -> list[Any]:
    element = item.get(tag)
    values = element.get("Value") if isinstance(element, dict) else None
    return list(values) if isinstance(values, list) else []


def _study_record(item: dict[str, Any]) -> StudyRecord:
    return StudyRecord(
        study_instance_uid=str(_json_first(item, _TAG_STUDY_UID)), patient_id=_text(_json_first(item, _TAG_PATIENT_ID)),
        study_date=parse_da(_json_first(item, _TAG_STUDY_DATE)),
        modalities=tuple(str(m) for m in _json_all(item, _TAG_MODALITIES) if m),
        description=_text(_json_first(item, _TAG_STUDY_DESCRIPTION)),
        accession_number=_text(_json_first(item, _TAG_ACCESSION)),
    )


def _series_record(item: dict[str, Any], study: str) -> SeriesRecord:
    return SeriesRecord(study_instance_uid=str(_json_first(item, _TAG_STUDY_UID) or study),
                        series_instance_uid=str(_json_first(item, _TAG_SERIES_UID)),
                        modality=_text(_json_first(item, _TAG_MODALITY)),
                        series_number=_int(_json_first(item, _TAG_SERIES_NUMBER)))


def _instance_record(item: dict[str, Any], study: str, series: str) -> InstanceRecord:
    return InstanceRecord(study_instance_uid=str(_json_first(item, _TAG_STUDY_UID) or study),
                          series_instance_uid=str(_json_first(item, _TAG_SERIES_UID) or series),
                          sop_instance_uid=str(_json_first(item, _TAG_SOP_UID)),
                          sop_class_uid=_text(_json_first(item, _TAG_SOP_CLASS)),
                          instance_number=_int(_json_first(item, _TAG_INSTANCE_NUMBER)))


def _store_result(body: dict[str, Any]) -> StoreResult:
    stored = tuple(str(_json_first(i, _TAG_REFERENCED_SOP_UID)) for i in _json_all(body, _TAG_REFERENCED_SOP_SEQUENCE)
                   if isinstance(i, dict) and _json_first(i, _TAG_REFERENCED_SOP_UID))
    failed = tuple((str(_json_first(i, _TAG_REFERENCED_SOP_UID) or "?"),
                    f"failure reason {_json_first(i, _TAG_FAILURE_REASON)}")
                   for i in _json_all(body, _TAG_FAILED_SOP_SEQUENCE) if isinstance(i, dict))
    return StoreResult(stored=stored, failed=failed)


def _dataset_from_json(item: Any, system: str, operation: str) -> Dataset:
    if not isinstance(item, dict):
        raise UpstreamRejected(system, f"{operation}: expected a DICOM JSON object, got {type(item).__name__}")
    try:
        return Dataset.from_json(item, bulk_data_uri_handler=lambda _tag, _vr, _uri: None)
    except (ValueError, KeyError, TypeError) as exc:
        raise UpstreamRejected(system, f"{operation}: malformed DICOM JSON: {exc}") from exc


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip()) if value not in (None, "") else None
    except ValueError:
        return None


def _require_text(field: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, "must be a non-empty string")
    return value


def _require_uid(field: str, value: str) -> str:
    if not isinstance(value, str) or len(value) > 64 or not RE_VALID_UID.match(value):
        raise InvalidInput(field, f"is not a valid DICOM UID: {value!r}")
    return value


def _require_uids(study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str,
                  *, field: str = "") -> tuple[str, str, str]:
    prefix = f"{field}." if field else ""
    return (_require_uid(f"{prefix}study_instance_uid", study_instance_uid),
            _require_uid(f"{prefix}series_instance_uid", series_instance_uid),
            _require_uid(f"{prefix}sop_instance_uid", sop_instance_uid))
