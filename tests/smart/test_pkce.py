"""PKCE S256 (RFC 7636) and the state value (SMART App Launch 2.2: >= 122 bits, checked, constant-time)."""

from __future__ import annotations

import pytest

from risk.smart.pkce import (
    MIN_STATE_BITS,
    PkcePair,
    new_pkce,
    new_state,
    s256_challenge,
    state_entropy_bits,
    states_match,
)


def test_rfc7636_appendix_b_vector() -> None:
    # RFC 7636 Appendix B (the worked example of the S256 transformation)
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_new_pair_is_valid_s256_and_unique() -> None:
    a, b = new_pkce(), new_pkce()
    assert a.code_challenge_method == "S256"
    assert a.code_challenge == s256_challenge(a.code_verifier)
    assert 43 <= len(a.code_verifier) <= 128
    assert a.code_verifier != b.code_verifier


@pytest.mark.parametrize("verifier", ["short", "x" * 129, "has space" + "x" * 40, "ü" * 50])
def test_bad_verifier_is_refused_naming_it(verifier: str) -> None:
    with pytest.raises(ValueError, match="code_verifier"):
        s256_challenge(verifier)


def test_plain_method_is_refused() -> None:
    v = "a" * 43
    with pytest.raises(ValueError, match="plain"):
        PkcePair(v, v, "plain")
    with pytest.raises(ValueError, match="not the S256 challenge"):
        PkcePair(v, "wrong-challenge")


def test_state_has_at_least_122_bits_and_is_unpredictable() -> None:
    states = {new_state() for _ in range(200)}
    assert len(states) == 200
    assert all(state_entropy_bits(s) >= MIN_STATE_BITS for s in states)
    assert all(len(s) >= 43 for s in states)  # 32 random bytes, base64url


def test_states_match_is_strict() -> None:
    s = new_state()
    assert states_match(s, s)
    assert not states_match(s, s[:-1] + ("A" if s[-1] != "A" else "B"))
    assert not states_match(s, None)
    assert not states_match(None, s)
    assert not states_match("", "")
