"""CDS Hooks 2.0: discovery, the ``lung-risk`` service for patient-view, order-select and order-sign, feedback,
JWT client authentication and CORS. :func:`mount` adds it all to the application (risk.app._mount_features)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from risk.cds.cors import CdsCorsMiddleware
from risk.cds.discovery import SERVICE_ID
from risk.cds.service import CdsService, build_router
from risk.config import Settings

__all__ = ["SERVICE_ID", "CdsService", "mount"]


def mount(app: FastAPI, settings: Settings, **service_options: Any) -> CdsService:
    """Add the CDS Hooks routes (and their CORS policy) to ``app``; returns the service (``app.state.cds``)."""
    service = CdsService(settings, **service_options)
    app.include_router(build_router(service))
    if settings.cds.cors_origins:
        app.add_middleware(CdsCorsMiddleware, origins=tuple(settings.cds.cors_origins))
    app.state.cds = service
    return service
