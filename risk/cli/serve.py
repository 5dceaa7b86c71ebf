"""``risk serve``: run the ASGI application with uvicorn."""

from __future__ import annotations

import argparse

from risk.config import load_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the service (CDS Hooks, SMART app, worklist, calculators)")
    p.add_argument("--host", help="bind address (default: settings host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: settings port, 18700)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    settings = load_settings()  # validate before forking workers: a bad setting stops start-up here
    uvicorn.run(
        "risk.app:create_app", factory=True,
        host=args.host or settings.host, port=args.port or settings.port, workers=args.workers,
        log_level=settings.log_level.lower(), access_log=False,
    )
    return 0
