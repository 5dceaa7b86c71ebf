"""Errors the app shows as a page: each has a stable code, an HTTP status, a title and what to do next.

Tokens, codes and PHI never appear in the message. Upstream failures from :mod:`risk.errors`
(``UpstreamUnavailable``/``UpstreamRejected``) are turned into :class:`AppError` at the route boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

RELAUNCH = "Close this window and open the app again from the patient's chart in the EHR."


@dataclass(frozen=True, slots=True)
class _Spec:
    status: int
    title: str
    hint: str


class ErrorCode(StrEnum):
    MISSING_LAUNCH_PARAMETER = "missing-launch-parameter"
    ISSUER_NOT_ALLOWED = "issuer-not-allowed"
    DISCOVERY_FAILED = "discovery-failed"
    NO_SESSION = "no-session"
    STATE_MISMATCH = "state-mismatch"
    MISSING_PKCE_VERIFIER = "missing-pkce-verifier"
    AUTHORIZATION_DENIED = "authorization-denied"
    AUTHORIZATION_FAILED = "authorization-failed"
    TOKEN_EXCHANGE_FAILED = "token-exchange-failed"
    INVALID_TOKEN_RESPONSE = "invalid-token-response"
    TOKEN_EXPIRED = "token-expired"
    SCOPE_DENIED = "scope-denied"
    NO_PATIENT_CONTEXT = "no-patient-context"
    CSRF_FAILED = "csrf-failed"
    FHIR_UNAVAILABLE = "fhir-unavailable"
    FHIR_REJECTED = "fhir-rejected"
    NOT_FOUND = "not-found"
    INTERNAL = "internal-error"

    @property
    def spec(self) -> _Spec:
        return _SPECS[self]


_SPECS: dict[ErrorCode, _Spec] = {
    ErrorCode.MISSING_LAUNCH_PARAMETER: _Spec(400, "The launch request is incomplete", RELAUNCH),
    ErrorCode.ISSUER_NOT_ALLOWED: _Spec(
        400, "This EHR is not registered with the app",
        "Ask the app's administrator to add this FHIR server to the allowed issuers."),
    ErrorCode.DISCOVERY_FAILED: _Spec(
        502, "The EHR's SMART configuration could not be used",
        "Try again in a minute; if it persists, tell the EHR team (their .well-known/smart-configuration)."),
    ErrorCode.NO_SESSION: _Spec(401, "No active session", RELAUNCH),
    ErrorCode.STATE_MISMATCH: _Spec(
        400, "The sign-in response does not belong to this browser session",
        "For your safety the app stopped. " + RELAUNCH),
    ErrorCode.MISSING_PKCE_VERIFIER: _Spec(
        400, "The sign-in cannot be completed securely (PKCE verifier missing)",
        "For your safety the app stopped. " + RELAUNCH),
    ErrorCode.AUTHORIZATION_DENIED: _Spec(
        403, "Access was not granted",
        "The EHR did not grant the access the app needs. Ask your EHR administrator about the app's permissions."),
    ErrorCode.AUTHORIZATION_FAILED: _Spec(400, "The EHR could not authorize the app", RELAUNCH),
    ErrorCode.TOKEN_EXCHANGE_FAILED: _Spec(
        400, "The EHR refused to complete the sign-in", RELAUNCH),
    ErrorCode.INVALID_TOKEN_RESPONSE: _Spec(502, "The EHR's sign-in response is not usable", RELAUNCH),
    ErrorCode.TOKEN_EXPIRED: _Spec(401, "Your session with the EHR has expired", RELAUNCH),
    ErrorCode.SCOPE_DENIED: _Spec(
        403, "The EHR did not grant permission for this action",
        "Your launch was granted read access only. Ask your EHR administrator if you need to save results."),
    ErrorCode.NO_PATIENT_CONTEXT: _Spec(400, "No patient was selected", RELAUNCH),
    ErrorCode.CSRF_FAILED: _Spec(
        403, "The form could not be verified", "Reload the page and try again."),
    ErrorCode.FHIR_UNAVAILABLE: _Spec(
        503, "The EHR's FHIR server is not answering",
        "Nothing was concluded from missing data. Try again in a minute."),
    ErrorCode.FHIR_REJECTED: _Spec(502, "The EHR's FHIR server rejected the request", "Try again; if it persists, "
                                   "tell the EHR team."),
    ErrorCode.NOT_FOUND: _Spec(404, "Not found", "Go back to the overview."),
    ErrorCode.INTERNAL: _Spec(500, "Something went wrong in the app",
                              "Try again; if it persists, tell the app's support team the time it happened."),
}


class AppError(Exception):
    """An error shown to the user as a page (HTML) with ``code.spec.status``."""

    def __init__(self, code: ErrorCode, detail: str = "") -> None:
        super().__init__(f"{code.value}: {detail}" if detail else code.value)
        self.code = code
        self.detail = detail

    @property
    def status_code(self) -> int:
        return self.code.spec.status
