"""The launch route against a real (loopback) discovery endpoint: the redirect to the authorization server and
the session it leaves behind (state, PKCE verifier, cookie flags). No authorization server needed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from risk.app import create_app
from risk.config import load_settings
from risk.smart.pkce import s256_challenge
from smart_app.store import SessionPhase
from tests.smart_app.builders import smart_of


@pytest.fixture
def smart_server() -> Iterator[str]:
    """A loopback FHIR base whose /.well-known/smart-configuration answers (nothing else is needed here)."""
    holder: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            base = holder["base"]
            if self.path != "/fhir/R4/.well-known/smart-configuration":
                self.send_response(404)
                self.end_headers()
                return
            body = json.dumps({
                "issuer": base, "authorization_endpoint": f"{base}/auth", "token_endpoint": f"{base}/token",
                "jwks_uri": f"{base}/jwks", "capabilities": ["launch-ehr", "launch-standalone", "client-public"],
                "code_challenge_methods_supported": ["S256"], "grant_types_supported": ["authorization_code"],
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")  # SHALL be honoured "regardless of Accept"/type
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["base"] = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield holder["base"] + "/fhir/R4"
    finally:
        server.shutdown()
        server.server_close()


def _client(tmp_path: Path, fhir: str, **smart: Any) -> TestClient:
    settings = load_settings(store={"url": f"sqlite:///{tmp_path}/r.db"}, fhir={"base_url": fhir},
                             public_base_url="https://app.example.org", smart=smart)
    return TestClient(create_app(settings), base_url="https://app.example.org")


def test_ehr_launch_redirects_with_pkce_state_aud_and_a_secure_cookie(tmp_path: Path, smart_server: str) -> None:
    with _client(tmp_path, smart_server, cookie_samesite="none") as c:
        r = c.get("/app/launch", params={"iss": smart_server, "launch": "opaque-123"}, follow_redirects=False)
        assert r.status_code == 302
        loc = urlsplit(r.headers["location"])
        q = {k: v[0] for k, v in parse_qs(loc.query).items()}
        assert f"{loc.scheme}://{loc.netloc}{loc.path}" == smart_server.rsplit("/fhir", 1)[0] + "/auth"
        assert q["response_type"] == "code" and q["client_id"] == "lungrisk-app"
        assert q["redirect_uri"] == "https://app.example.org/app/callback"
        assert q["aud"] == smart_server and q["launch"] == "opaque-123"
        assert q["code_challenge_method"] == "S256"
        assert q["scope"].split()[0] == "launch" and "launch/patient" not in q["scope"].split()
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("__Host-lungrisk_app=")
        for flag in ("HttpOnly", "Secure", "Path=/", "SameSite=none"):
            assert flag.lower() in cookie.lower(), flag
        value = cookie.split(";", 1)[0].split("=", 1)[1]
        sess = smart_of(c).store.get(value)
        assert sess is not None and sess.phase is SessionPhase.AUTHORIZING
        assert sess.state == q["state"] and len(q["state"]) >= 43  # >= 122 bits, tied to this cookie
        assert sess.code_verifier is not None and s256_challenge(sess.code_verifier) == q["code_challenge"]
        assert sess.code_verifier not in r.headers["location"]  # the verifier never leaves the server


def test_standalone_launch_asks_for_a_patient(tmp_path: Path, smart_server: str) -> None:
    with _client(tmp_path, smart_server) as c:
        r = c.get("/app/launch", follow_redirects=False)  # no iss: the configured FHIR server
        q = {k: v[0] for k, v in parse_qs(urlsplit(r.headers["location"]).query).items()}
        assert "launch" not in q and "launch/patient" in q["scope"].split() and "launch" not in q["scope"].split()
        assert q["aud"] == smart_server


def test_each_launch_gets_its_own_state_and_verifier(tmp_path: Path, smart_server: str) -> None:
    with _client(tmp_path, smart_server) as c:
        a = c.get("/app/launch", params={"iss": smart_server, "launch": "x"}, follow_redirects=False)
        b = c.get("/app/launch", params={"iss": smart_server, "launch": "x"}, follow_redirects=False)
        qa, qb = (parse_qs(urlsplit(r.headers["location"]).query) for r in (a, b))
        assert qa["state"] != qb["state"] and qa["code_challenge"] != qb["code_challenge"]
