"""The ``risk`` command. Each subcommand lives in its own module and registers itself here."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from risk.errors import ConfigurationError, InvalidInput

# Subcommand modules; each defines ``register(subparsers)`` and sets ``func`` on its parser.
COMMAND_MODULES = (
    "risk.cli.serve",
    "risk.cli.info",
    "risk.cli.db",
    "risk.cli.calc",
    "risk.cli.synth",
    "risk.cli.imaging",
    "risk.cli.load",
    "risk.cli.features",
    "risk.cli.train",
    "risk.cli.recalibrate",
    "risk.cli.population",
    "risk.cli.cds",
)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="risk", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or EXIT_OK)
    except ConfigurationError as exc:
        print(f"risk: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InvalidInput as exc:
        print(f"risk: invalid input: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
