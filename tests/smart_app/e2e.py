"""Support for the SMART app's end-to-end tests: the app as a real uvicorn process, Chromium, a simulated EHR.

The stack itself comes from the root ``tests/conftest.py`` (``stack``, ``fhir_token``). The app under test runs on
``RISK_TEST_APP_URL`` (default http://127.0.0.1:18700, the redirect URI the authorization server knows).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.conftest import Stack

ROOT = Path(__file__).resolve().parents[2]
APP_URL = os.environ.get("RISK_TEST_APP_URL", "http://127.0.0.1:18700").rstrip("/")
ARTIFACTS = ROOT / "test-artifacts" / "smart_app"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps"]
EHR_ORIGIN = "http://127.0.0.1:18701"
"""The simulated EHR's origin (a page Playwright serves by routing): same site as the app, another origin."""


def fhir_get(stack: Stack, token: str, path: str) -> dict[str, Any]:
    r = httpx.get(f"{stack.fhir_base_url}/{path}", headers={"Authorization": f"Bearer {token}",
                                                            "Accept": "application/fhir+json"}, timeout=10)
    r.raise_for_status()
    data: dict[str, Any] = r.json()
    return data


def smart_configuration(stack: Stack) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{stack.fhir_base_url}/.well-known/smart-configuration", timeout=5).json()
    return data


def fusion_version() -> str | None:
    """The newest shipped fusion-model artifact, if any (the app under test loads it; so does the comparison)."""
    from fusion_models.errors import ArtifactInvalid
    from fusion_models.registry import SHIPPED_REGISTRY, Registry

    try:
        artifacts = Registry(SHIPPED_REGISTRY).list()
    except (ArtifactInvalid, ValueError, OSError):
        return None
    return artifacts[-1].version if artifacts else None


def app_env(stack: Stack) -> dict[str, str]:
    return {k: v for k, v in stack.env.items() if k.startswith("RISK_")}


def launch_param(patient: str, *, practitioner: str = "pulmo-1", **extra: Any) -> str:
    body = {"patient": patient, "practitioner": practitioner, **extra}
    return base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()


def launch_url(stack: Stack, patient: str, **extra: Any) -> str:
    return f"{APP_URL}/app/launch?" + urlencode({"iss": stack.fhir_base_url,
                                                 "launch": launch_param(patient, **extra)})


class AppProcess:
    """``uvicorn --factory risk.app:create_app`` on the app URL's port, with the stack's settings."""

    def __init__(self, stack: Stack, workdir: Path, extra_env: Mapping[str, str] | None = None) -> None:
        self.stack = stack
        self.workdir = workdir
        self.db_path = workdir / "app.db"
        port = APP_URL.rsplit(":", 1)[1]
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir),
            **app_env(stack),
            "RISK_PUBLIC_BASE_URL": APP_URL, "RISK_PORT": port,
            "RISK_STORE__URL": f"sqlite:///{self.db_path}",
            "RISK_SMART__SECURE_COOKIES": "false",
            "RISK_SMART__FRAME_ANCESTORS": json.dumps(["'self'", EHR_ORIGIN]),
            # the shared test FHIR server can be slow under a parallel suite: generous limits, so a page shows
            # the whole record rather than a (correctly reported) partial one
            "RISK_FHIR__TIMEOUT_S": "30", "RISK_SMART__PAGE_BUDGET_S": "180",
            **({"RISK_MODELS__VERSION": v} if (v := fusion_version()) else {}),
            **(extra_env or {}),
        }
        self.log_path = workdir / "app.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        port = APP_URL.rsplit(":", 1)[1]
        try:
            httpx.get(APP_URL + "/health", timeout=1)
            pytest.fail(f"port {port} is already in use: another service runs at {APP_URL}")
        except httpx.HTTPError:
            pass
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "risk.app:create_app", "--host", "127.0.0.1",
             "--port", port], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the app exited at start-up:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(APP_URL + "/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        pytest.fail(f"the app did not become ready in 60 s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text()[-n:] if self.log_path.exists() else ""


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run deploy/local/install-system.sh (never `playwright install`)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(target: Any, name: str) -> Path:
    """Save a PNG of a page or element under test-artifacts/smart_app/ (kept for people to look at)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    kwargs = {"full_page": True} if hasattr(target, "goto") else {}
    target.screenshot(path=str(path), **kwargs)
    return path


def ehr_page_html(src: str, *, width: int = 1024, height: int = 768) -> str:
    """A minimal EHR chart page that embeds the app in an iframe of the given size."""
    return (f"<!doctype html><html><head><title>EHR</title></head><body>"
            f"<header>EHR chart (simulated)</header>"
            f'<iframe id="app" title="Lung cancer risk app" src="{escape(src)}" width="{width}" height="{height}">'
            "</iframe></body></html>")


@contextmanager
def ehr_server(origin: str = EHR_ORIGIN) -> Iterator[str]:
    """A real loopback HTTP server playing the EHR: ``GET /chart?src=<launch URL>`` embeds the app in an iframe.

    (A page Playwright fulfils itself counts as a public address, and Chromium's local-network-access checks
    then block its iframe from loading a loopback app; a real loopback server is what an EHR on the LAN is.)
    """
    port = int(origin.rsplit(":", 1)[1])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            src = parse_qs(parts.query).get("src", [""])[0]
            body = ehr_page_html(src).encode()
            self.send_response(200 if parts.path == "/chart" else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield origin
    finally:
        server.shutdown()
        server.server_close()


def ehr_chart_url(origin: str, src: str) -> str:
    return f"{origin}/chart?" + urlencode({"src": src})


def copy_db(src: Path, dst_dir: Path) -> Path:
    dst = dst_dir / f"copy-{uuid.uuid4().hex[:6]}.db"
    shutil.copy(src, dst)
    return dst
