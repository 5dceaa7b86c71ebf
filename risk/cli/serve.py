"""``risk serve``: run the ASGI application with uvicorn (after printing the URLs it serves)."""

from __future__ import annotations

import argparse

from risk.config import Environment, Settings, load_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the service (CDS Hooks, SMART app, worklist, calculators)")
    p.add_argument("--host", help="bind address (default: settings host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: settings port, 18700)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    p.set_defaults(func=run)


def served_urls(settings: Settings) -> list[tuple[str, str]]:
    """(label, URL) of the surfaces people open, at the public URL (``settings.public_base_url``)."""
    base = str(settings.public_base_url).rstrip("/")
    urls = []
    if settings.environment is Environment.DEMO:
        urls += [("Landing page", f"{base}/"), ("Simulated EHR", f"{base}/demo/ehr")]
    urls += [("SMART app launch", f"{base}/app/launch"), ("CDS Hooks discovery", f"{base}/cds-services"),
             ("Coordinator worklist", f"{base}/worklist/"), ("API docs", f"{base}/docs")]
    return urls


def banner(settings: Settings, host: str, port: int) -> str:
    width = max(len(label) for label, _ in served_urls(settings))
    lines = [f"risk serve: serving on http://{host}:{port} ({settings.environment.value}"
             + (", synthetic data" if settings.synthetic_data else "") + ")"]
    lines += [f"  {label:<{width}}  {url}" for label, url in served_urls(settings)]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    settings = load_settings()  # validate before forking workers: a bad setting stops start-up here
    host, port = args.host or settings.host, args.port or settings.port
    print(banner(settings, host, port), flush=True)
    uvicorn.run(
        "risk.app:create_app", factory=True,
        host=host, port=port, workers=args.workers,
        log_level=settings.log_level.lower(), access_log=False,
    )
    return 0
