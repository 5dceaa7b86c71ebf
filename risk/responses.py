"""JSON responses serialised with orjson (returning dicts from FastAPI routes costs ~3 ms per request in
``jsonable_encoder``: shared/reference/performance.md §1). Use :class:`JSONBytesResponse` on every route."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class JSONBytesResponse(Response):
    """``application/json`` rendered with orjson (dates, dataclasses and numpy values supported)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return orjson.dumps(content, option=ORJSON_OPTIONS)


class FhirJSONResponse(JSONBytesResponse):
    media_type = "application/fhir+json"
