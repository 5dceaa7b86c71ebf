"""The service's one typed settings object.

Values come from environment variables prefixed ``RISK_`` (nested sections use ``__``:
``RISK_FHIR__BASE_URL``), optionally from a TOML or JSON file named by ``RISK_SETTINGS_FILE``;
environment variables win over the file. :func:`load_settings` validates everything at start-up and
raises :class:`~risk.errors.ConfigurationError` naming the bad setting. Library code never reads the
environment: it receives the object (or the part of it that it needs).
"""

from __future__ import annotations

import json
import os
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from risk.errors import ConfigurationError

ENV_PREFIX = "RISK_"
SETTINGS_FILE_VARIABLE = "RISK_SETTINGS_FILE"


class Environment(StrEnum):
    DEMO = "demo"
    """Embedded defaults and demo data; loud about anything insecure."""
    TEST = "test"
    PRODUCTION = "production"
    """Refuses insecure modes (open CDS, http FHIR servers, SQLite)."""


class _Section(BaseModel):
    model_config = {"extra": "forbid", "frozen": True}


class FhirSettings(_Section):
    """The EHR's FHIR R4 server (REST) and the file-backed alternative."""

    base_url: AnyHttpUrl | None = None
    bundle_dir: Path | None = None
    """Folder of FHIR JSON (Bundles or resources) used when no server is configured."""
    bearer_token: str | None = Field(default=None, repr=False)
    timeout_s: float = Field(default=5.0, gt=0, le=120)
    retries: int = Field(default=3, ge=0, le=10)
    backoff_s: float = Field(default=0.2, ge=0, le=30)
    deadline_s: float = Field(default=10.0, gt=0, le=600)
    page_size: int = Field(default=200, ge=1, le=10000)


class DicomwebSettings(_Section):
    """The PACS (DICOMweb) and the file-backed alternative."""

    url: AnyHttpUrl | None = None
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    bearer_token: str | None = Field(default=None, repr=False)
    file_dir: Path | None = None
    timeout_s: float = Field(default=20.0, gt=0, le=600)
    retries: int = Field(default=3, ge=0, le=10)


class StoreSettings(_Section):
    url: str = "sqlite:///state/risk.db"
    """SQLAlchemy URL: SQLite file (embedded default) or postgresql+psycopg://…"""
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _known_dialect(cls, v: str) -> str:
        if not v.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("must be a sqlite:// or postgresql+psycopg:// URL")
        return v


class CdsIssuer(_Section):
    """A CDS client allowed to call the service: its ``iss`` and where its keys are."""

    iss: str
    jwks_url: AnyHttpUrl | None = None
    jwks: dict[str, Any] | None = None
    """A JWK Set given out-of-band, for clients that publish no jku."""
    tenants: tuple[str, ...] = ()


class CdsSettings(_Section):
    open_mode: bool = False
    """Accept unauthenticated CDS calls. For local demos only: refused in production, loud in logs."""
    issuers: tuple[CdsIssuer, ...] = ()
    allowed_jku: tuple[AnyHttpUrl, ...] = ()
    max_clock_skew_s: int = Field(default=60, ge=0, le=600)
    max_token_lifetime_s: int = Field(default=3600, ge=60, le=86400)
    jwks_cache_s: int = Field(default=300, ge=0, le=86400)
    cors_origins: tuple[str, ...] = ()
    request_budget_s: float = Field(default=1.5, gt=0, le=30)
    system_actions: bool = False
    """Return a RiskAssessment as a CDS ``systemActions`` entry."""
    stale_after_days: int = Field(default=365, ge=1)


class SmartSettings(_Section):
    client_id: str = "lungrisk-app"
    redirect_path: str = "/app/callback"
    scopes: str = (
        "launch openid fhirUser patient/Patient.rs patient/Observation.rs patient/Condition.rs "
        "patient/ImagingStudy.rs patient/FamilyMemberHistory.rs patient/RiskAssessment.rs "
        "patient/RiskAssessment.c patient/ServiceRequest.c offline_access"
    )
    frame_ancestors: tuple[str, ...] = ("'self'",)
    session_ttl_s: int = Field(default=8 * 3600, ge=60)
    secure_cookies: bool = True


class ModelSettings(_Section):
    registry_dir: Path = Path("fusion_models/artifacts")
    version: str | None = None
    """Fusion-model artifact version to load; None loads none (published models only)."""


class PopulationSettings(_Section):
    engine: Literal["polars", "dask"] = "polars"
    dask_workers: int = Field(default=2, ge=1, le=256)
    dask_scheduler: str | None = None
    """Address of an existing Dask scheduler; None starts a LocalCluster on 127.0.0.1."""


class Settings(BaseSettings):
    """All configuration, validated at start-up."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True,
        validate_default=True,
    )

    environment: Environment = Environment.DEMO
    host: str = "127.0.0.1"
    port: int = Field(default=18700, ge=1, le=65535)
    public_base_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:18700")
    """The URL clients use to reach the service (CDS ``aud`` checks and SMART redirects use it)."""
    state_dir: Path = Path("state")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    synthetic_data: bool = True
    """The loaded data and models are synthetic: every surface says so."""

    fhir: FhirSettings = FhirSettings()
    dicomweb: DicomwebSettings = DicomwebSettings()
    store: StoreSettings = StoreSettings()
    cds: CdsSettings = CdsSettings()
    smart: SmartSettings = SmartSettings()
    models: ModelSettings = ModelSettings()
    population: PopulationSettings = PopulationSettings()

    @model_validator(mode="after")
    def _production_is_strict(self) -> Settings:
        if self.environment is Environment.PRODUCTION:
            if self.cds.open_mode:
                raise ValueError("cds.open_mode is not allowed in production")
            if self.store.url.startswith("sqlite"):
                raise ValueError("store.url must be PostgreSQL in production")
            if self.fhir.base_url is not None and self.fhir.base_url.scheme != "https":
                raise ValueError("fhir.base_url must be https in production")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _FileSource(settings_cls))


class _FileSource(PydanticBaseSettingsSource):
    """Reads the TOML or JSON file named by ``RISK_SETTINGS_FILE`` (lowest precedence)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        path = os.environ.get(SETTINGS_FILE_VARIABLE)
        self._data: dict[str, Any] = {}
        if path:
            p = Path(path)
            try:
                raw = p.read_bytes()
            except OSError as exc:
                raise ConfigurationError(SETTINGS_FILE_VARIABLE, f"cannot read {p}: {exc.strerror}") from exc
            try:
                self._data = json.loads(raw) if p.suffix == ".json" else tomllib.loads(raw.decode())
            except (ValueError, tomllib.TOMLDecodeError) as exc:
                raise ConfigurationError(SETTINGS_FILE_VARIABLE, f"{p} is not valid TOML/JSON: {exc}") from exc

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def load_settings(**overrides: Any) -> Settings:
    """Build and validate the settings; any error names the environment variable to fix."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        name = ENV_PREFIX + "__".join(loc).upper() if loc else "settings"
        raise ConfigurationError(name, f"{first['msg']} (got {_short(first.get('input'))})") from exc


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
