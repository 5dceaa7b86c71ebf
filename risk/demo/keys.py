"""The demo EHR's CDS client key, and the settings that register it with the service as a CDS issuer.

CDS Hooks 2.0 §"Trusting CDS Clients": every call carries a JWT signed by the client, whose public key the service
knows. The demo EHR is such a client, so ``make demo`` runs with real CDS authentication (no open mode):

    python -m risk.demo.keys --out deploy/local/state/demo-ehr [--fhir-server URL] [--iss ISS]

makes (once; later runs reuse the key) ``cds-client.private.jwks.json`` (an ES384 key, mode 0600) and writes
``demo-ehr.env`` with ``RISK_DEMO__CDS_CLIENT_JWKS_FILE`` (the private key, for the demo EHR) and
``RISK_CDS__ISSUERS`` (the issuer with the *public* key inline, and the FHIR server it may name, for the
service). Source it after ``state/stack.env`` and ``deploy/local/demo.env``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from risk.config import DemoSettings
from risk.errors import InvalidInput

PRIVATE_JWKS_NAME: Final = "cds-client.private.jwks.json"
ENV_NAME: Final = "demo-ehr.env"
ALGORITHM: Final = "ES384"
PUBLIC_MEMBERS: Final = ("kty", "crv", "x", "y", "n", "e", "kid", "alg", "use")


def new_private_jwk() -> dict[str, Any]:
    """A fresh ES384 (P-384) private JWK with a random ``kid``."""
    key = ec.generate_private_key(ec.SECP384R1())
    jwk: dict[str, Any] = ECAlgorithm.to_jwk(key, as_dict=True)
    jwk.update(kid=f"demo-ehr-{uuid.uuid4().hex[:12]}", alg=ALGORITHM, use="sig")
    return jwk


def public_jwks(private_jwks: Mapping[str, Any]) -> dict[str, Any]:
    """The public half of a JWK Set: only the public members of each key (never ``d`` or the RSA primes)."""
    keys = private_jwks.get("keys")
    if not isinstance(keys, list) or not keys:
        raise InvalidInput("demo.cds_client_jwks_file", "is not a JWK Set with at least one key")
    return {"keys": [{k: v for k, v in key.items() if k in PUBLIC_MEMBERS} for key in keys if isinstance(key, dict)]}


def ensure_private_jwks(path: Path) -> dict[str, Any]:
    """The JWK Set at ``path``, created (mode 0600) when it does not exist."""
    if path.exists():
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInput("demo.cds_client_jwks_file", f"{path} cannot be read as JSON: {exc}") from exc
        public_jwks(data)  # validates the shape
        return data
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"keys": [new_private_jwk()]}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2)
    return data


def issuer_setting(iss: str, private_jwks: Mapping[str, Any], fhir_servers: Sequence[str]) -> list[dict[str, Any]]:
    """The ``cds.issuers`` value registering the demo EHR (public keys inline)."""
    issuer: dict[str, Any] = {"iss": iss, "jwks": public_jwks(private_jwks)}
    if fhir_servers:
        issuer["fhir_servers"] = [s.rstrip("/") for s in fhir_servers]
    return [issuer]


def env_text(iss: str, private_path: Path, private_jwks: Mapping[str, Any], fhir_servers: Sequence[str]) -> str:
    """``KEY='VALUE'`` lines for ``set -a; source FILE`` (JSON has no single quotes, so quoting is safe)."""
    issuers = json.dumps(issuer_setting(iss, private_jwks, fhir_servers), separators=(",", ":"))
    lines = [
        "# Written by `python -m risk.demo.keys`: the demo EHR's CDS client key and its registration as a CDS issuer.",
        f"RISK_DEMO__CDS_CLIENT_ISS='{iss}'",
        f"RISK_DEMO__CDS_CLIENT_JWKS_FILE='{private_path.resolve()}'",
        f"RISK_CDS__ISSUERS='{issuers}'",
    ]
    for value in (iss, str(private_path.resolve()), issuers):
        if "'" in value:
            raise InvalidInput("iss", "must not contain a single quote")
    return "\n".join(lines) + "\n"


def write_demo_keys(out: Path, *, iss: str, fhir_servers: Sequence[str] = ()) -> Path:
    """Create the key (once) and (re)write the env file; returns the env file's path."""
    if not iss.strip():
        raise InvalidInput("iss", "must not be empty")
    private_path = out / PRIVATE_JWKS_NAME
    jwks = ensure_private_jwks(private_path)
    env_path = out / ENV_NAME
    env_path.write_text(env_text(iss, private_path, jwks, fhir_servers))
    return env_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m risk.demo.keys", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the key and demo-ehr.env")
    parser.add_argument("--iss", default=DemoSettings().cds_client_iss, help="the demo EHR's CDS issuer")
    parser.add_argument("--fhir-server", action="append", default=[], metavar="URL",
                        help="a FHIR base URL the demo EHR may name as fhirServer (repeatable; none: any)")
    args = parser.parse_args(argv)
    try:
        env_path = write_demo_keys(args.out, iss=args.iss, fhir_servers=[s for s in args.fhir_server if s])
    except InvalidInput as exc:
        print(f"risk.demo.keys: invalid input: {exc}", file=sys.stderr)
        return 2
    print(f"demo EHR CDS client: iss {args.iss}, settings in {env_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
