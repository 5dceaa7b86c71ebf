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
    backoff_s: float = Field(default=0.5, ge=0, le=30)
    """First retry wait on 429/408/503/504 (doubles each retry; a Retry-After header wins when longer)."""


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
    audiences: tuple[str, ...] = ()
    """Extra ``aud`` values accepted from this client (some send a non-URL aud); empty = the exact URL only."""
    fhir_servers: tuple[str, ...] = ()
    """``fhirServer`` URLs (prefixes) this client may send; empty = any. The service fetches from them with the
    client's token, so listing them keeps a client from pointing the service elsewhere (SSRF)."""


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
    algorithms: tuple[str, ...] = ("ES384", "RS384")
    """JWS algorithms accepted from CDS clients; ``none`` and symmetric (HMAC) ones are refused."""
    public_discovery: bool = False
    """Serve ``GET /cds-services`` without a JWT (the spec asks for one on every call, discovery included)."""
    jwks_timeout_s: float = Field(default=2.0, gt=0, le=30)
    jwks_min_refresh_s: float = Field(default=10.0, ge=0, le=3600)
    """An unknown ``kid`` re-fetches a JWK Set (key rotation) at most this often per URL."""
    replay_check: Literal["write_behind", "strict"] = "write_behind"
    """How the jti replay cache uses the store. ``write_behind`` (one worker, the default deployment): the
    process's own map decides at once and ids are persisted in the background (reloaded at start-up, so a restart
    does not reopen them); a replay across workers is only caught after the fact and logged. ``strict`` (several
    workers): no call is answered before its id is stored, at ~1.5 ms more CPU per call."""
    card_flush_s: float = Field(default=0.25, gt=0, le=10)
    """Issued cards and audit events are written in batches at most this long after the response (bigger batches
    cost less per card; the feedback endpoint flushes first, so a card is always known when its feedback comes)."""
    imaging_cache_s: float = Field(default=300.0, ge=0, le=86400)
    """A patient's imaging result (studies, tracks) is reused by hook calls for this long (0: never): PACS
    queries stay off the hot path when a chart is reopened. A new study in the EHR changes the key."""

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        allowed = {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"}
        bad = [a for a in v if a not in allowed]
        if bad or not v:
            raise ValueError(f"must be asymmetric JWS algorithms (none and HMAC are refused), got {bad or v}")
        return v


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
    cookie_samesite: Literal["lax", "strict", "none"] = "lax"
    """``none`` when the EHR embeds the app in a cross-site iframe (requires ``secure_cookies``)."""
    allowed_issuers: tuple[str, ...] = ()
    """FHIR base URLs accepted as the launch ``iss``; empty: only ``fhir.base_url``."""
    standalone_iss: str | None = None
    """FHIR base for a standalone launch without ``iss``; None: ``fhir.base_url``."""
    http_timeout_s: float = Field(default=10.0, gt=0, le=120)
    """Per-call timeout for discovery, token and id_token-key requests."""
    refresh_margin_s: int = Field(default=60, ge=0, le=3600)
    """Refresh the access token when it expires within this many seconds."""
    token_key: str | None = Field(default=None, repr=False)
    """Fernet key that encrypts stored access/refresh tokens; None stores them unencrypted."""
    verify_id_token: bool = True
    page_budget_s: float = Field(default=20.0, gt=0, le=300)
    """Total time allowed to gather one patient's data for a page (FHIR + PACS)."""


class SmartBackendSettings(_Section):
    """A SMART Backend Services client (client_credentials + private_key_jwt): system-level FHIR access for the
    cohort loader, bulk export and population runs. The local stack writes these into state/stack.env."""

    token_url: AnyHttpUrl | None = None
    client_id: str | None = None
    private_jwks_file: Path | None = None
    """JWK Set file holding the client's private key(s); RS384 and ES384 keys are used, the first one signs."""
    key_id: str | None = None
    """``kid`` of the signing key in ``private_jwks_file``; None: the first RS384/ES384 key."""
    scope: str = "system/*.rs"
    timeout_s: float = Field(default=10.0, gt=0, le=120)


class DemoSettings(_Section):
    """The simulated EHR of ``make demo`` (:mod:`risk.demo`), mounted only when ``environment`` is demo."""

    cds_client_iss: str = Field(default="urn:lungrisk:demo-ehr", min_length=1)
    """The ``iss`` of the CDS Hooks JWTs the demo EHR signs; register it in ``cds.issuers`` with the public key
    (``python -m risk.demo.keys`` writes both)."""
    cds_client_jwks_file: Path | None = None
    """Private JWK Set (ES384 or RS384 key) the demo EHR signs CDS JWTs with; None: unsigned calls, which only
    ``cds.open_mode`` accepts."""
    practitioner_id: str = Field(default="demo-clinician", pattern=r"^[A-Za-z0-9\-.]{1,64}$")
    """The signed-in clinician (``Practitioner/<id>``) of the demo's hook calls and EHR launches."""
    patients_per_page: int = Field(default=25, ge=1, le=200)
    cds_timeout_s: float = Field(default=30.0, gt=0, le=300)
    """Timeout of each call the demo EHR makes to the service's CDS endpoints."""


class ModelSettings(_Section):
    registry_dir: Path = Path("fusion_models/artifacts")
    version: str | None = None
    """Fusion-model artifact version to load; None loads none (published models only)."""


class CoordinatorProgram(_Section):
    """A screening program's coordinators and the sites they may see (risk/population access)."""

    name: str = Field(min_length=1, max_length=64)
    sites: tuple[str, ...] = Field(min_length=1)
    members: tuple[str, ...] = ()
    """Signed-in users (``fhirUser`` references such as ``Practitioner/coordinator-1``) of this program."""


class PopulationSettings(_Section):
    engine: Literal["polars", "dask"] = "polars"
    dask_workers: int = Field(default=2, ge=1, le=256)
    dask_scheduler: str | None = None
    """Address of an existing Dask scheduler; None starts a LocalCluster on 127.0.0.1."""
    work_dir: Path = Path("state/population")
    """Where Bulk exports are downloaded (one folder per run)."""
    export_types: tuple[str, ...] = ("Patient", "Observation", "Condition", "FamilyMemberHistory", "ImagingStudy",
                                     "ServiceRequest", "Appointment")
    export_timeout_s: float = Field(default=30.0, gt=0, le=600)
    export_poll_max_s: float = Field(default=60.0, gt=0, le=3600)
    export_max_wait_s: float = Field(default=6 * 3600.0, gt=0, le=7 * 86400)
    export_token_origins: tuple[str, ...] = ()
    """Origins other than the FHIR server's that may receive the access token for manifest files."""
    site_systems: dict[str, str] = {}
    """MRN identifier system → site name; unmapped systems use their host's first label (``site-a``)."""
    programs: tuple[CoordinatorProgram, ...] = ()
    due_soon_days: int = Field(default=30, ge=0, le=365)
    """A recommendation enters the worklist when its order window opens within this many days."""
    lost_after_days: int = Field(default=180, ge=1, le=3650)
    """A follow-up not done this many days after its overdue date counts as lost (dashboard adherence)."""
    page_size: int = Field(default=50, ge=5, le=500)
    session_ttl_s: int = Field(default=8 * 3600, ge=60)
    sync_pacs: bool = False
    """Before scoring, parse the SRs of studies missing from the imaging-feature cache (DICOMweb)."""
    keep_exports: int = Field(default=2, ge=1, le=100)
    """Downloaded Bulk exports kept in ``work_dir`` (the newest; older run folders are deleted after a run)."""


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
    smart_backend: SmartBackendSettings = SmartBackendSettings()
    models: ModelSettings = ModelSettings()
    population: PopulationSettings = PopulationSettings()
    demo: DemoSettings = DemoSettings()

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
