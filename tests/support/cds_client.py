"""The project's own CDS Hooks 2.0 client harness (no CDS client is published on PyPI or npm).

* :class:`ClientKeys` — an ES384 (and an RS384) key pair of a test CDS client, with its public JWK Set.
* :class:`JwksServer` — serves that JWK Set over real HTTP on loopback (``http://127.0.0.1:<port>/jwks.json``);
  keys can be rotated while it runs, and it counts the requests it served.
* :class:`JwtSigner` — signs CDS client JWTs as the spec asks (header ``alg``/``kid``/``typ``/``jku``; claims
  ``iss``, ``aud`` = the endpoint URL, ``exp``, ``iat``, ``jti``, optional ``tenant``); every claim and header can
  be overridden to build the bad-token cases.
* :class:`CdsClient` — discovery, hook calls and feedback over any httpx client (in-process ASGI or a real
  server), with a fresh JWT per call, and :func:`resolve_prefetch`, which fills a service's prefetch templates
  from a FHIR server the way an EHR would (following ``next`` links, then packing the pages into one searchset).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://ehr.test.lungrisk/cds-client"


def _b64(n: int, length: int | None = None) -> str:
    raw = n.to_bytes(length or (n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def ec_public_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-384", "kid": kid, "use": "sig", "alg": "ES384",
            "x": _b64(numbers.x, 48), "y": _b64(numbers.y, 48)}


def rsa_public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS384", "n": _b64(numbers.n), "e": _b64(numbers.e)}


@dataclass
class ClientKeys:
    """The CDS client's signing keys (generated per test session)."""

    ec_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))
    rsa_key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    ec_kid: str = field(default_factory=lambda: f"ec-{uuid.uuid4().hex[:8]}")
    rsa_kid: str = field(default_factory=lambda: f"rsa-{uuid.uuid4().hex[:8]}")

    def jwks(self) -> dict[str, Any]:
        return {"keys": [ec_public_jwk(self.ec_key, self.ec_kid), rsa_public_jwk(self.rsa_key, self.rsa_kid)]}


class JwksServer:
    """A JWK Set served over HTTP on 127.0.0.1 (a real server, in a thread)."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self.jwks: Mapping[str, Any] = jwks
        self.requests = 0
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                body = json.dumps(outer.jwks).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/jwks.json"

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class JwtSigner:
    keys: ClientKeys
    iss: str = ISSUER
    jku: str | None = None
    tenant: str | None = None
    lifetime_s: int = 300

    def token(self, aud: str | list[str], *, alg: str = "ES384", kid: str | None = None,
              headers: Mapping[str, Any] | None = None, claims: Mapping[str, Any] | None = None,
              drop: tuple[str, ...] = (), key: Any = None) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {"iss": self.iss, "aud": aud, "exp": now + self.lifetime_s, "iat": now,
                                   "jti": str(uuid.uuid4())}
        if self.tenant is not None:
            payload["tenant"] = self.tenant
        payload.update(claims or {})
        for name in drop:
            payload.pop(name, None)
        header: dict[str, Any] = {"typ": "JWT", "kid": kid or (self.keys.rsa_kid if alg.startswith("RS")
                                                                   else self.keys.ec_kid)}
        if self.jku is not None:
            header["jku"] = self.jku
        header.update(headers or {})
        if alg == "none":
            return _unsigned(header, payload)
        signing_key = key if key is not None else (self.keys.rsa_key if alg.startswith("RS") else self.keys.ec_key)
        return jwt.encode(payload, signing_key, algorithm=alg, headers=header)


def _unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({**header, 'alg': 'none'})}.{part(payload)}."


class CdsClient:
    """A CDS client: calls the service at ``base_url`` with a fresh JWT each time."""

    def __init__(self, http: httpx.Client, base_url: str, signer: JwtSigner | None) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.signer = signer

    def _headers(self, url: str, token: str | None = None) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if token is None and self.signer is not None:
            token = self.signer.token(url)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def discovery(self, *, token: str | None = None) -> httpx.Response:
        url = f"{self.base_url}/cds-services"
        return self.http.get(url, headers=self._headers(url, token))

    def call(self, service_id: str, body: Mapping[str, Any], *, token: str | None = None) -> httpx.Response:
        url = f"{self.base_url}/cds-services/{service_id}"
        return self.http.post(url, content=json.dumps(body), headers=self._headers(url, token))

    def feedback(self, service_id: str, items: list[dict[str, Any]], *, token: str | None = None) -> httpx.Response:
        url = f"{self.base_url}/cds-services/{service_id}/feedback"
        return self.http.post(url, content=json.dumps({"feedback": items}), headers=self._headers(url, token))


def hook_request(hook: str, patient_id: str, *, prefetch: Mapping[str, Any] | None = None,
                 fhir_server: str | None = None, access_token: str | None = None,
                 context: Mapping[str, Any] | None = None, user: str = "Practitioner/dr-1") -> dict[str, Any]:
    """A CDS Hooks 2.0 request body (no null or empty values)."""
    body: dict[str, Any] = {"hookInstance": str(uuid.uuid4()), "hook": hook,
                            "context": {"userId": user, "patientId": patient_id, **(context or {})}}
    if fhir_server is not None:
        body["fhirServer"] = fhir_server
    if access_token is not None:
        body["fhirAuthorization"] = {"access_token": access_token, "token_type": "Bearer", "expires_in": 300,
                                     "scope": "system/*.rs", "subject": "lungrisk-cds", "patient": patient_id}
    if prefetch is not None:
        body["prefetch"] = dict(prefetch)
    return body


def resolve_prefetch(templates: Mapping[str, str], tokens: Mapping[str, str], fhir_base: str,
                     http: httpx.Client, *, access_token: str | None = None, follow_pages: bool = True,
                     page_size: int | None = None) -> dict[str, Any]:
    """Fill prefetch templates from a FHIR server, as an EHR would: a read gives the resource (or ``null`` when
    it does not exist), a search gives a searchset Bundle (all pages when ``follow_pages``, else the first page
    with its ``next`` link kept)."""
    headers = {"Accept": "application/fhir+json"}
    if access_token:
        headers["Authorization"] = f"Bearer {access_token}"
    out: dict[str, Any] = {}
    for key, template in templates.items():
        query = template
        for token, value in tokens.items():
            query = query.replace("{{" + token + "}}", value)
        if page_size is not None and "?" in query:
            query += f"&_count={page_size}"
        response = http.get(f"{fhir_base.rstrip('/')}/{query}", headers=headers)
        if "?" not in query:
            out[key] = response.json() if response.status_code == 200 else None
            continue
        response.raise_for_status()
        bundle = response.json()
        if follow_pages:
            entries = list(bundle.get("entry") or [])
            nxt = _next(bundle)
            while nxt is not None:
                page = http.get(nxt, headers=headers)
                page.raise_for_status()
                entries.extend(page.json().get("entry") or [])
                nxt = _next(page.json())
            bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(entries)}
            if entries:
                bundle["entry"] = entries
        out[key] = bundle
    return out


def _next(bundle: Mapping[str, Any]) -> str | None:
    for link in bundle.get("link") or ():
        if link.get("relation") == "next":
            return str(link["url"])
    return None
