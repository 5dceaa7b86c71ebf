"""A private instance of the local stack (Orthanc, the FHIR server, the SMART AS) for the population tests.

The shared stack's FHIR server holds whatever other test modules loaded; a system-level Bulk export of it would not
be this cohort. So these tests start their own instance (deploy/local/stack.sh with ``STACK_STATE_DIR`` and other
ports, as its README describes), register the worklist's redirect URI with its authorization server, and stop it
afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "deploy" / "local" / "stack.sh"
PORTS = {"STACK_ORTHANC_PORT": "38042", "STACK_FHIR_PORT": "38080", "STACK_AS_PORT": "38445"}
APP_PORT = 18733
APP_URL = f"http://127.0.0.1:{APP_PORT}"


@dataclass(frozen=True)
class OwnStack:
    state: Path
    env: dict[str, str]

    @property
    def risk_env(self) -> dict[str, str]:
        return {k: v for k, v in self.env.items() if k.startswith("RISK_")}


def _parse(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


@contextmanager
def own_stack(state: Path) -> Iterator[OwnStack]:
    env = {**os.environ, "STACK_STATE_DIR": str(state), **PORTS,
           "STACK_APP_REDIRECT_URIS": f"{APP_URL}/worklist/callback", "STACK_READY_TIMEOUT_S": "60"}
    up = subprocess.run(["bash", str(STACK), "up"], env=env, capture_output=True, text=True, timeout=180)
    if up.returncode != 0:
        subprocess.run(["bash", str(STACK), "down"], env=env, capture_output=True, timeout=120)
        pytest.fail(f"could not start a private stack:\n{up.stdout[-2000:]}\n{up.stderr[-2000:]}")
    try:
        yield OwnStack(state=state, env=_parse(state / "stack.env"))
    finally:
        subprocess.run(["bash", str(STACK), "down"], env=env, capture_output=True, timeout=120)


class App:
    """The service as a real uvicorn process on APP_URL."""

    def __init__(self, env: Mapping[str, str], workdir: Path) -> None:
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir), **env,
                    "RISK_PUBLIC_BASE_URL": APP_URL, "RISK_PORT": str(APP_PORT)}
        self.log = workdir / "app.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> App:
        try:
            httpx.get(APP_URL + "/health", timeout=1)
            pytest.fail(f"port {APP_PORT} is already in use")
        except httpx.HTTPError:
            pass
        fh = self.log.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "risk.app:create_app",
                                      "--host", "127.0.0.1", "--port", str(APP_PORT)], cwd=ROOT, env=self.env,
                                     stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the app exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(APP_URL + "/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.3)
        self.__exit__()
        pytest.fail(f"the app did not start:\n{self.log.read_text()[-3000:]}")

    def __exit__(self, *_exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            self.proc = None
