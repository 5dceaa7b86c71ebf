"""The service's own exception types: callers never depend on a third-party library's errors.

Mapping at the edges: ``InvalidInput`` → HTTP 422 / exit status 2; ``UpstreamUnavailable`` →
"could not be checked" in a card, or 412/503 when nothing can be said; ``OutOfScope`` → an
explicit abstention ("cannot score: reason"), never a number.
"""

from __future__ import annotations


class RiskServiceError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(RiskServiceError):
    """A setting is missing or invalid; ``setting`` names it."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


class InvalidInput(RiskServiceError, ValueError):
    """Input that a caller must fix; ``field`` names the offending field (dotted path)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class UpstreamUnavailable(RiskServiceError):
    """An external system (PACS, FHIR server, authorization server) could not be reached in time.

    Distinct from "no data": the system did not answer, so absence of evidence means nothing.
    """

    def __init__(self, system: str, message: str, *, status_code: int | None = None) -> None:
        super().__init__(f"{system} unavailable: {message}")
        self.system = system
        self.status_code = status_code


class UpstreamRejected(RiskServiceError):
    """An external system answered with an error that retrying will not fix (4xx other than 408/429)."""

    def __init__(self, system: str, message: str, *, status_code: int | None = None) -> None:
        super().__init__(f"{system} rejected the request: {message}")
        self.system = system
        self.status_code = status_code


class OutOfScope(RiskServiceError):
    """The inputs lie outside what a model or guideline covers; the reason is shown to clinicians."""

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(f"{model}: {reason}")
        self.model = model
        self.reason = reason


class NotFound(RiskServiceError):
    """A named thing (model version, patient, study) does not exist."""
