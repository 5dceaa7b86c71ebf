"""Browser-facing security of the app: Content-Security-Policy, cookies, CSRF.

* CSP: nothing but our own scripts, styles and images (``'self'``; ``data:`` images for inline charts),
  no plugins, no base-URI changes, forms only to ourselves, and ``frame-ancestors`` from
  ``settings.smart.frame_ancestors`` so the EHR's origins (and only they) may embed the app in an iframe.
* Cookies: the session cookie is ``HttpOnly``, ``Secure`` (switchable only for http loopback tests),
  ``SameSite`` (``Lax`` by default; ``None`` when the EHR embeds the app cross-site, which then needs
  ``Secure``), ``Path=/``; it uses the ``__Host-`` prefix whenever it is ``Secure``.
* CSRF: a synchronizer token per session, in every form as a hidden field, compared in constant time on
  every POST; the ``Origin`` header, when sent, must be our own origin.
* Pages carry ``Cache-Control: no-store`` (they hold PHI) and ``Referrer-Policy: same-origin`` (no referrer
  leaves the app; ``no-referrer`` would make browsers send ``Origin: null`` on our own form posts).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

SameSite = Literal["lax", "strict", "none"]

SESSION_COOKIE_SECURE = "__Host-lungrisk_app"
SESSION_COOKIE_PLAIN = "lungrisk_app"
CSRF_FIELD = "csrf_token"


def content_security_policy(frame_ancestors: Iterable[str]) -> str:
    ancestors = " ".join(frame_ancestors) or "'none'"
    directives = [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "object-src 'none'",
        f"frame-ancestors {ancestors}",
    ]
    return "; ".join(directives)


def security_headers(frame_ancestors: Iterable[str]) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(frame_ancestors),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
        "Cross-Origin-Opener-Policy": "same-origin-allow-popups",
        "Cross-Origin-Resource-Policy": "same-origin",
    }


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    secure: bool
    same_site: SameSite
    max_age_s: int

    def __post_init__(self) -> None:
        if self.same_site == "none" and not self.secure:
            raise ValueError('SameSite=None cookies must be Secure: set "secure_cookies" or another "cookie_samesite".')

    @property
    def name(self) -> str:
        return SESSION_COOKIE_SECURE if self.secure else SESSION_COOKIE_PLAIN

    def set_cookie_kwargs(self) -> dict[str, object]:
        return {"key": self.name, "max_age": self.max_age_s, "path": "/", "secure": self.secure,
                "httponly": True, "samesite": self.same_site}

    def delete_cookie_kwargs(self) -> dict[str, object]:
        return {"key": self.name, "path": "/", "secure": self.secure, "httponly": True, "samesite": self.same_site}


def csrf_valid(expected: str | None, received: str | None) -> bool:
    if not expected or not received:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), received.encode("utf-8"))


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(header_origin: str | None, public_base_url: str) -> bool:
    """True when no Origin was sent (older browsers, same-origin GET) or it is our own origin."""
    if header_origin is None or header_origin == "":
        return True
    return header_origin.lower().rstrip("/") == origin_of(public_base_url)
