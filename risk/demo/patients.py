"""The demo EHR's patient list: one page of Patients at a time, from a FHIR server or a folder of FHIR JSON.

:class:`PatientDirectory` is the Protocol; :class:`FhirPatientDirectory` searches a FHIR R4 server
(``GET [base]/Patient?_count=N&_sort=_id``, optionally ``name=`` and the synthetic-data ``_tag``) with a bearer
token (SMART Backend Services in the demo), and pages with the server's own ``next``/``previous`` links, carried
between pages as an opaque cursor (the link's query string; only links to the same ``[base]/Patient`` are
accepted, so the token never leaves the server). :class:`FilePatientDirectory` does the same over
:class:`~risk.sources.fhir_file.FileFhirSource` (the embedded default and the unit tests).

An interactive page makes one attempt per request (timeout ``timeout_s``; the person reloads): a server that does
not answer is :class:`~risk.errors.UpstreamUnavailable`, one that refuses is
:class:`~risk.errors.UpstreamRejected`, never an empty list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Final, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx

from risk import codes
from risk.deadline import Deadline
from risk.errors import InvalidInput, UpstreamRejected, UpstreamUnavailable
from risk.sources.fhir import bundle_resources
from risk.sources.fhir_file import FileFhirSource

FHIR_ID: Final = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
MR_TYPE: Final = codes.IDENTIFIER_TYPE_MRN
SYSTEM: Final = "FHIR server"
MAX_QUERY_TEXT: Final = 64

TokenProvider = Callable[[], str]


def check_patient_id(value: str) -> str:
    """A FHIR logical id (``[A-Za-z0-9-.]{1,64}``), else InvalidInput naming ``patient_id``."""
    if not FHIR_ID.match(value):
        raise InvalidInput("patient_id", "must be a FHIR id (letters, digits, '-' and '.', at most 64)")
    return value


@dataclass(frozen=True, slots=True)
class PatientRow:
    """What the list and the chart banner show of a Patient."""

    patient_id: str
    name: str
    birth_date: date | None
    age_years: int | None
    sex: str | None
    """``Patient.gender`` (administrative gender), as recorded."""
    mrn: str | None
    synthetic: bool


@dataclass(frozen=True, slots=True)
class PatientQuery:
    name: str | None = None
    """Text matched against the patient's names (FHIR ``name`` search: starts-with, case-insensitive)."""
    synthetic_only: bool = True
    """Only resources tagged as synthetic data (the demo cohort): ``_tag`` = SYNTHETIC_DATA_TAG."""
    count: int = 25
    cursor: str | None = None

    def __post_init__(self) -> None:
        if self.name is not None and len(self.name) > MAX_QUERY_TEXT:
            raise InvalidInput("q", f"must be at most {MAX_QUERY_TEXT} characters")
        if not 1 <= self.count <= 1000:
            raise InvalidInput("count", "must be between 1 and 1000")


@dataclass(frozen=True, slots=True)
class PatientPage:
    rows: tuple[PatientRow, ...]
    total: int | None
    next_cursor: str | None = None
    previous_cursor: str | None = None
    first_index: int = 1
    """1-based position of the first row in the whole result (for "21-40 of 208")."""


@runtime_checkable
class PatientDirectory(Protocol):
    """Where the demo EHR finds its patients."""

    def page(self, query: PatientQuery, *, deadline: Deadline) -> PatientPage:
        ...

    def read(self, patient_id: str, *, deadline: Deadline) -> PatientRow | None:
        """The patient, or None when the source says it does not exist."""
        ...


# --- Patient JSON → row -------------------------------------------------------------------------------------
def patient_row(resource: Mapping[str, Any], today: date) -> PatientRow:
    """The row of one Patient resource (tolerant: missing parts are None, never an error)."""
    birth = _birth_date(resource.get("birthDate"))
    age = None
    if birth is not None:
        age = today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
    gender = resource.get("gender")
    return PatientRow(patient_id=str(resource.get("id")), name=display_name(resource), birth_date=birth,
                      age_years=age, sex=gender if isinstance(gender, str) else None, mrn=_mrn(resource),
                      synthetic=_is_synthetic(resource))


def display_name(resource: Mapping[str, Any]) -> str:
    names = [n for n in resource.get("name") or () if isinstance(n, dict)]
    names.sort(key=lambda n: n.get("use") != "official")
    for name in names:
        if isinstance(name.get("text"), str) and name["text"].strip():
            return str(name["text"]).strip()
        given = " ".join(g for g in name.get("given") or () if isinstance(g, str))
        family = name.get("family") if isinstance(name.get("family"), str) else ""
        text = f"{given} {family}".strip()
        if text:
            return text
    return "(no name recorded)"


def _birth_date(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value[:10]) if len(value) >= 10 else None
    except ValueError:
        return None


def _mrn(resource: Mapping[str, Any]) -> str | None:
    for ident in resource.get("identifier") or ():
        if not isinstance(ident, dict) or not isinstance(ident.get("value"), str):
            continue
        codings = (ident.get("type") or {}).get("coding") or ()
        if any(isinstance(c, dict) and c.get("system") == MR_TYPE.system and c.get("code") == MR_TYPE.code
               for c in codings):
            return str(ident["value"])
    return None


def _is_synthetic(resource: Mapping[str, Any]) -> bool:
    tag = codes.SYNTHETIC_DATA_TAG
    return any(isinstance(t, dict) and t.get("system") == tag.system and t.get("code") == tag.code
               for t in (resource.get("meta") or {}).get("tag") or ())


# --- a FHIR server ---------------------------------------------------------------------------------------------
class FhirPatientDirectory:
    """Patients of a FHIR R4 server, a page per request."""

    def __init__(self, base_url: str, *, token: str | TokenProvider | None = None, timeout_s: float = 10.0,
                 client: httpx.Client | None = None, today: Callable[[], date] = date.today) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f'Argument "base_url" must be an http(s) URL, got {base_url!r}.')
        if timeout_s <= 0:
            raise ValueError(f'Argument "timeout_s" must be positive, got {timeout_s!r}.')
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._token = token
        self._client = client or httpx.Client(follow_redirects=False)
        self._owns_client = client is None
        self._today = today

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def page(self, query: PatientQuery, *, deadline: Deadline) -> PatientPage:
        url = f"{self.base_url}/Patient"
        if query.cursor is not None:
            params = self._cursor_params(query.cursor)
        else:
            params = [("_count", str(query.count)), ("_sort", "_id")]
            if query.name:
                params.append(("name", query.name))
            if query.synthetic_only:
                params.append(("_tag", f"{codes.SYNTHETIC_DATA_TAG.system}|{codes.SYNTHETIC_DATA_TAG.code}"))
        bundle = self._get(url, params, deadline)
        if bundle.get("resourceType") != "Bundle":
            raise UpstreamUnavailable(SYSTEM, f"Patient search returned a {bundle.get('resourceType')!r}")
        today = self._today()
        rows = tuple(patient_row(r, today) for r in bundle_resources(bundle)
                     if r.get("resourceType") == "Patient" and isinstance(r.get("id"), str))
        total = bundle.get("total") if isinstance(bundle.get("total"), int) else None
        offset = next((v for k, v in params if k == "_offset"), "0")
        return PatientPage(rows=rows, total=total, next_cursor=self._link_cursor(bundle, "next"),
                           previous_cursor=self._link_cursor(bundle, "previous") or self._link_cursor(bundle, "prev"),
                           first_index=int(offset) + 1 if offset.isdigit() else 1)

    def read(self, patient_id: str, *, deadline: Deadline) -> PatientRow | None:
        check_patient_id(patient_id)
        resource = self._get(f"{self.base_url}/Patient/{patient_id}", None, deadline, allow_missing=True)
        if not resource:
            return None
        if resource.get("resourceType") != "Patient":
            raise UpstreamUnavailable(SYSTEM, f"read Patient/{patient_id} returned a {resource.get('resourceType')!r}")
        return patient_row(resource, self._today())

    # cursors: the query string of the server's own paging links, accepted only for [base]/Patient
    def _link_cursor(self, bundle: Mapping[str, Any], relation: str) -> str | None:
        for link in bundle.get("link") or ():
            if isinstance(link, dict) and link.get("relation") == relation and isinstance(link.get("url"), str):
                parts = urlsplit(link["url"])
                base = urlsplit(self.base_url)
                if (parts.scheme, parts.netloc) == (base.scheme, base.netloc) \
                        and parts.path.rstrip("/") == base.path.rstrip("/") + "/Patient" and parts.query:
                    return parts.query
        return None

    @staticmethod
    def _cursor_params(cursor: str) -> list[tuple[str, str]]:
        params = parse_qsl(cursor, keep_blank_values=True)
        if not params or len(cursor) > 2000 or any(k in ("_include", "_revinclude") for k, _ in params):
            raise InvalidInput("cursor", "is not a page of this patient list")
        return params

    def _get(self, url: str, params: list[tuple[str, str]] | None, deadline: Deadline, *,
             allow_missing: bool = False) -> dict[str, Any]:
        headers = {"Accept": "application/fhir+json"}
        if self._token is not None:
            token = self._token() if callable(self._token) else self._token
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = self._client.get(url, params=tuple(params) if params else None, headers=headers,
                                        timeout=deadline.timeout(self.timeout_s))
        except httpx.TimeoutException as exc:
            raise UpstreamUnavailable(SYSTEM, f"no answer from {self.base_url} within {self.timeout_s} s") from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(SYSTEM, f"{self.base_url}: {type(exc).__name__}: {exc}") from exc
        if allow_missing and response.status_code in (404, 410):
            return {}
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise UpstreamUnavailable(SYSTEM, f"HTTP {response.status_code}", status_code=response.status_code)
        if response.status_code != 200:
            raise UpstreamRejected(SYSTEM, f"HTTP {response.status_code} for {urlsplit(url).path}",
                                   status_code=response.status_code)
        try:
            data = response.json()
        except ValueError as exc:
            raise UpstreamUnavailable(SYSTEM, "the answer is not JSON") from exc
        if not isinstance(data, dict):
            raise UpstreamUnavailable(SYSTEM, "the answer is not a JSON object")
        return data


# --- a folder -------------------------------------------------------------------------------------------------
class FilePatientDirectory:
    """Patients of a folder of FHIR JSON (Bundles, resources, NDJSON); the cursor is an offset."""

    def __init__(self, source: FileFhirSource, *, today: Callable[[], date] = date.today) -> None:
        self.source = source
        self._today = today

    def page(self, query: PatientQuery, *, deadline: Deadline) -> PatientPage:
        offset = 0
        if query.cursor is not None:
            if not query.cursor.isdigit():
                raise InvalidInput("cursor", "is not a page of this patient list")
            offset = int(query.cursor)
        today = self._today()
        rows = [patient_row(r, today) for r in self.source.search("Patient", [], deadline=deadline).resources]
        rows.sort(key=lambda r: r.patient_id)
        if query.synthetic_only:
            rows = [r for r in rows if r.synthetic]
        if query.name:
            needle = query.name.casefold()
            rows = [r for r in rows if any(w.startswith(needle) for w in r.name.casefold().split())
                    or r.name.casefold().startswith(needle)]
        chosen = rows[offset:offset + query.count]
        after = offset + query.count
        return PatientPage(rows=tuple(chosen), total=len(rows),
                           next_cursor=str(after) if after < len(rows) else None,
                           previous_cursor=str(max(0, offset - query.count)) if offset > 0 else None,
                           first_index=offset + 1)

    def read(self, patient_id: str, *, deadline: Deadline) -> PatientRow | None:
        check_patient_id(patient_id)
        resource = self.source.read("Patient", patient_id, deadline=deadline)
        return patient_row(resource, self._today()) if resource is not None else None


def cursor_query(query: PatientQuery, cursor: str) -> str:
    """The demo page's own query string for another page of the same list."""
    params = {"cursor": cursor}
    if query.name:
        params["q"] = query.name
    if not query.synthetic_only:
        params["all"] = "1"
    return urlencode(params)
