"""``fhirUser``: relative (``Practitioner/123``) or absolute (``https://ehr/fhir/Practitioner/123``).

SMART App Launch 2.2 §"Scopes for requesting identity data": the claim is a FHIR resource URL of type
Patient, Practitioner, PractitionerRole, RelatedPerson or Person, and MAY be absolute or relative. Both
forms are normalised to one :class:`FhirUser` (client-js issue #105 had to special-case the absolute form).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

FHIR_USER_TYPES = ("Patient", "Practitioner", "PractitionerRole", "RelatedPerson", "Person")
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@dataclass(frozen=True, slots=True)
class FhirUser:
    resource_type: str
    id: str
    base_url: str | None
    """The FHIR base the claim named (absolute form), else None."""

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.id}"

    def same_server(self, fhir_base: str) -> bool:
        return self.base_url is None or _norm_base(self.base_url) == _norm_base(fhir_base)


def _norm_base(url: str) -> str:
    return url.rstrip("/")


def parse_fhir_user(value: str) -> FhirUser:
    """Parse the ``fhirUser`` claim; raises ValueError naming the claim when it is not a user reference."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError('Claim "fhirUser" must be a non-empty string.')
    text = value.strip()
    base: str | None = None
    path = text
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f'Claim "fhirUser" is not an http(s) URL or a relative reference: {text!r}.')
        segments = [s for s in parts.path.split("/") if s]
        if len(segments) < 2:
            raise ValueError(f'Claim "fhirUser" does not end in ResourceType/id: {text!r}.')
        # drop a trailing _history/<vid>
        if len(segments) >= 4 and segments[-2] == "_history":
            segments = segments[:-2]
        base = f"{parts.scheme}://{parts.netloc}/" + "/".join(segments[:-2])
        path = "/".join(segments[-2:])
    segs = path.split("/")
    if len(segs) != 2:
        raise ValueError(f'Claim "fhirUser" must be ResourceType/id: {text!r}.')
    rtype, rid = segs
    if rtype not in FHIR_USER_TYPES:
        raise ValueError(f'Claim "fhirUser" names a {rtype!r}; expected one of {", ".join(FHIR_USER_TYPES)}.')
    if not _ID_RE.match(rid):
        raise ValueError(f'Claim "fhirUser" has an invalid FHIR id: {rid!r}.')
    return FhirUser(rtype, rid, base.rstrip("/") if base else None)
