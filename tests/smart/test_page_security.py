"""CSP, cookie policy, CSRF and Origin checks."""

from __future__ import annotations

import pytest

from risk.smart.page_security import CookiePolicy, content_security_policy, csrf_valid, same_origin, security_headers


def test_csp_is_strict_and_frame_ancestors_configurable() -> None:
    csp = content_security_policy(["'self'", "https://ehr.example.org"])
    directives = dict(d.split(" ", 1) for d in csp.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert directives["frame-ancestors"] == "'self' https://ehr.example.org"
    assert directives["form-action"] == "'self'" and directives["base-uri"] == "'none'"
    assert "frame-ancestors 'none'" in content_security_policy([])


def test_security_headers_forbid_caching_and_referrers() -> None:
    h = security_headers(["'self'"])
    assert h["Cache-Control"] == "no-store" and h["Referrer-Policy"] == "same-origin"
    assert h["X-Content-Type-Options"] == "nosniff"


def test_cookie_policy() -> None:
    secure = CookiePolicy(secure=True, same_site="none", max_age_s=60)
    assert secure.name.startswith("__Host-")
    kw = secure.set_cookie_kwargs()
    assert kw["httponly"] is True and kw["secure"] is True and kw["samesite"] == "none" and kw["path"] == "/"
    assert not CookiePolicy(secure=False, same_site="lax", max_age_s=60).name.startswith("__Host-")
    with pytest.raises(ValueError, match="SameSite=None"):
        CookiePolicy(secure=False, same_site="none", max_age_s=60)


def test_csrf_and_origin() -> None:
    assert csrf_valid("abc", "abc")
    assert not csrf_valid("abc", "abd") and not csrf_valid("abc", None) and not csrf_valid(None, None)
    assert same_origin(None, "http://127.0.0.1:18700")
    assert same_origin("http://127.0.0.1:18700", "http://127.0.0.1:18700/")
    assert not same_origin("https://evil.example", "http://127.0.0.1:18700")
    assert not same_origin("null", "http://127.0.0.1:18700")
