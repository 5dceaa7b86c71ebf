"""The demo experience of ``make demo``: a landing page at ``/`` and a simulated EHR under ``/demo/ehr``.

Mounted by the composition root (risk.app._mount_features) only when ``settings.environment`` is demo: the
simulated EHR lists the EHR's patients, calls the service's own CDS Hooks endpoint as a CDS client (signed JWT,
prefetch, ``fhirAuthorization``) and renders the cards, and opens the SMART app with an EHR launch in an iframe.
See risk/demo/web.py for the routes and risk/demo/keys.py for the demo EHR's CDS client key.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from risk.config import Environment, Settings
from risk.demo.web import HERE, STATIC_PATH, DemoEhr, build_router

__all__ = ["DemoEhr", "mount"]


def mount(app: FastAPI, settings: Settings) -> DemoEhr | None:
    """Add the landing page and the simulated EHR (demo environment only); returns it (``app.state.demo_ehr``)."""
    if settings.environment is not Environment.DEMO:
        return None

    ehr = DemoEhr(settings)
    app.include_router(build_router(ehr))
    app.mount(STATIC_PATH, StaticFiles(directory=str(HERE / "static")), name="demo-static")
    app.state.demo_ehr = ehr
    return ehr
