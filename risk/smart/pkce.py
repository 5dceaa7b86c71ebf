"""PKCE (RFC 7636, S256 only) and the OAuth ``state`` value.

SMART App Launch 2.2: "All SMART apps SHALL support Proof Key for Code Exchange (PKCE)"; servers SHALL
support S256 and SHALL NOT support ``plain``, so this module has no ``plain``. ``state`` SHALL be
unpredictable with "at least 122 bits of entropy" and tied to the user's session (see
:mod:`smart_app.store`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

CODE_CHALLENGE_METHOD = "S256"
VERIFIER_BYTES = 64
"""64 random bytes → an 86-character verifier (RFC 7636 allows 43-128 characters)."""
STATE_BYTES = 32
"""256 bits of entropy, well above the 122 bits SMART requires."""
MIN_STATE_BITS = 122

_VERIFIER_RE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def s256_challenge(code_verifier: str) -> str:
    """``BASE64URL(SHA256(ASCII(code_verifier)))`` (RFC 7636 §4.2)."""
    if not isinstance(code_verifier, str) or not _VERIFIER_RE.match(code_verifier):
        raise ValueError('Argument "code_verifier" must be 43-128 characters of [A-Za-z0-9-._~] (RFC 7636 §4.1).')
    return _b64url(hashlib.sha256(code_verifier.encode("ascii")).digest())


@dataclass(frozen=True, slots=True)
class PkcePair:
    """A code verifier (kept server-side) and its S256 challenge (sent to the authorize endpoint)."""

    code_verifier: str
    code_challenge: str
    code_challenge_method: str = CODE_CHALLENGE_METHOD

    def __post_init__(self) -> None:
        if self.code_challenge_method != CODE_CHALLENGE_METHOD:
            raise ValueError('Argument "code_challenge_method" must be "S256"; "plain" is not allowed by SMART.')
        if not hmac.compare_digest(s256_challenge(self.code_verifier), self.code_challenge):
            raise ValueError('Argument "code_challenge" is not the S256 challenge of "code_verifier".')


def new_pkce() -> PkcePair:
    verifier = _b64url(secrets.token_bytes(VERIFIER_BYTES))
    return PkcePair(code_verifier=verifier, code_challenge=s256_challenge(verifier))


def new_state() -> str:
    """An unpredictable ``state`` (256 bits, base64url)."""
    return _b64url(secrets.token_bytes(STATE_BYTES))


def state_entropy_bits(state: str) -> int:
    """Upper bound of the entropy a base64url ``state`` can carry (6 bits per character)."""
    return 6 * len(state)


def states_match(expected: str | None, received: str | None) -> bool:
    """Constant-time comparison; a missing value never matches."""
    if not expected or not received:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), received.encode("utf-8"))
