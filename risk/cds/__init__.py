"""CDS Hooks 2.0: discovery, the ``lung-risk`` service for patient-view, order-select and order-sign, feedback,
JWT client authentication and CORS. :func:`mount` adds it all to the application (risk.app._mount_features)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from risk.cds.cors import CdsCorsMiddleware
from risk.cds.discovery import SERVICE_ID
from risk.cds.service import CdsService, build_router, hook_endpoint
from risk.config import Settings

__all__ = ["SERVICE_ID", "CdsService", "mount"]


def mount(app: FastAPI, settings: Settings, **service_options: Any) -> CdsService:
    """Add the CDS Hooks routes (and their CORS policy) to ``app``; returns the service (``app.state.cds``)."""
    service = CdsService(settings, **service_options)
    # The hook endpoint first, on the application's own router (the hot path: see hook_endpoint).
    app.add_route("/cds-services/{service_id}", hook_endpoint(service), methods=["POST"], include_in_schema=False)
    app.include_router(build_router(service))  # discovery, feedback, and the service's start-up and shutdown
    if settings.cds.cors_origins:
        app.add_middleware(CdsCorsMiddleware, origins=tuple(settings.cds.cors_origins))
    app.state.cds = service
    return service
