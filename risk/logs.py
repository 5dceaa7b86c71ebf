"""Logging set-up with a redaction filter: no bearer tokens, JWTs or patient data in the logs.

Code logs identifiers it needs for operations (hookInstance, request ids, resource counts); the filter
is a second line of defence that masks anything that looks like a token.
"""

from __future__ import annotations

import logging
import re

_TOKEN_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),  # compact JWS
    re.compile(r"(?i)(access_token|refresh_token|id_token|client_assertion|code_verifier|password)"
               r"([\"']?\s*[:=]\s*[\"']?)[^\"'&\s,}]+"),
)


def redact(text: str) -> str:
    text = _TOKEN_PATTERNS[0].sub(r"\1[redacted]", text)
    text = _TOKEN_PATTERNS[1].sub("[redacted-jwt]", text)
    return _TOKEN_PATTERNS[2].sub(r"\1\2[redacted]", text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def configure_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if not any(isinstance(f, RedactingFilter) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
    root.setLevel(level)
