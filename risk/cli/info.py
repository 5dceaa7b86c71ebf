"""``risk version`` and ``risk settings``."""

from __future__ import annotations

import argparse
import json

from risk import __version__
from risk.config import load_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("version", help="print the service version")
    p.set_defaults(func=show_version)
    s = sub.add_parser("settings", help="validate the settings and print them (secrets hidden)")
    s.set_defaults(func=show_settings)


def show_version(_args: argparse.Namespace) -> int:
    print(__version__)
    return 0


def show_settings(_args: argparse.Namespace) -> int:
    settings = load_settings()
    data = settings.model_dump(mode="json")
    for section in ("fhir", "dicomweb"):
        for key in ("bearer_token", "password"):
            if data[section].get(key):
                data[section][key] = "***"
    print(json.dumps(data, indent=2))
    return 0
