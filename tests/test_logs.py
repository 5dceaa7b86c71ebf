"""No tokens in the logs: the redaction filter masks bearer tokens, JWTs and token fields."""

from __future__ import annotations

import logging

import pytest

from risk.logs import RedactingFilter, redact

JWT = "eyJhbGciOiJFUzM4NCJ9.eyJpc3MiOiJodHRwczovL2VociJ9.c2lnbmF0dXJl"


@pytest.mark.parametrize("text", [
    f"Authorization: Bearer {JWT}",
    f"token={JWT}",
    '{"access_token": "opaque-123", "x": 1}',
    "refresh_token=abc.def&client_id=x",
    "code_verifier=verifier-value",
])
def test_redact_masks_secrets(text: str) -> None:
    cleaned = redact(text)
    for secret in (JWT, "opaque-123", "abc.def", "verifier-value"):
        assert secret not in cleaned


def test_filter_rewrites_records(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redact")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="test.redact"):
        logger.info("calling FHIR with Bearer %s", JWT)
    assert JWT not in caplog.text and "[redacted]" in caplog.text
