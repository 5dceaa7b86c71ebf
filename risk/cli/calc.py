"""``risk calc MODEL``: run a published model or guideline on JSON from stdin.

    echo '{"age": 62, ...}' | risk calc plcom2012        # one object → one result object
    risk calc brock < nodules.json                         # an array → an array of results (a batch)
    risk calc lungrads --schema                            # the input JSON Schema

Bad input (invalid JSON, a missing field, a wrong type, an out-of-range or unknown value) exits with status 2
and one line on stderr naming the field, never a traceback. In a batch every item is computed on its own:
stdout gets one entry per item, either its result or ``{"index": i, "errors": [...]}``, stderr one line per
bad item (``risk: invalid input: [3].age: ...``), and the exit status is 2 if any item failed.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from risk.errors import InvalidInput
from risk.guidelines.registry import MODEL_NAMES, get_calculator, run_raw

EXIT_INVALID = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calc", help="run a published model or guideline on JSON from stdin",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=MODEL_NAMES, metavar="MODEL", help=f"one of: {', '.join(MODEL_NAMES)}")
    p.add_argument("--schema", action="store_true", help="print the input JSON Schema and exit")
    p.add_argument("--compact", action="store_true", help="print JSON on one line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    calculator = get_calculator(args.model)
    if args.schema:
        _write(orjson.dumps(calculator.input_schema(), option=orjson.OPT_INDENT_2))
        return 0
    outcome = run_raw(calculator, sys.stdin.buffer.read())
    errors = outcome.errors
    if errors and not outcome.batch:
        error = errors[0]
        first = error.problems[0]
        raise InvalidInput(first.field, error.one_line().removeprefix(f"{first.field}: "))
    _write(outcome.to_json_bytes(indent=not args.compact))
    for error in errors:
        print(f"risk: invalid input: {error.one_line()}", file=sys.stderr)
    return EXIT_INVALID if errors else 0


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data + b"\n")
    sys.stdout.flush()
