"""One settings object, read from the environment and an optional .env file, validated at start.

A process that cannot be configured stops with one line naming the variable (see `load_or_exit`),
never a traceback.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Settings that must be given together: when one is set, all are.
_TOGETHER = {
    "Azure ML workspace": ("azure_ml_subscription_id", "azure_ml_resource_group", "azure_ml_workspace_name"),
    "Azure ML service principal": ("azure_ml_sp_tenant_id", "azure_ml_sp_application_id", "azure_ml_sp_password"),
    "bootstrap admin key": ("bootstrap_admin_email", "bootstrap_admin_key", "bootstrap_admin_secret"),
}


class SettingsError(Exception):
    """A setting is missing or malformed; `variable` names the environment variable."""

    def __init__(self, variable: str, problem: str):
        super().__init__(f"{variable}: {problem}")
        self.variable, self.problem = variable, problem


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    # --- serving
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object per line
    cors_allow_origins: str = ""  # comma-separated browser origins allowed to call the API; none by default
    sentry_dsn: SecretStr | None = None  # unexpected errors are reported there when set
    sentry_environment: str = Field("production", min_length=1, max_length=64)
    server_name: str | None = None  # how this process is named in error reports; unset: the host name
    prometheus_multiproc_dir: Path | None = None  # metrics summed over processes (gunicorn.conf.py sets it)
    data_dir: Path = Path("var")  # embedded PostgreSQL and Azurite keep their data here
    # request limits, enforced while the bytes arrive (app/limits.py): 413 / 431 problem+json past them
    max_json_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    # a direct upload's whole request (files, or their base64 in JSON); each file is also held to MAX_IMAGE_BYTES
    max_upload_request_bytes: int = Field(64 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    max_import_request_bytes: int = Field(16 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)  # POST .../imports
    max_header_bytes: int = Field(8 * 1024, ge=1024, le=64 * 1024)  # one header, name and value
    max_headers_total_bytes: int = Field(32 * 1024, ge=4096, le=64 * 1024)  # request line and all headers

    # --- database: unset means an embedded PostgreSQL under data_dir
    db_connection_string: str | None = None
    db_timeout_seconds: float = Field(5.0, gt=0, le=60)  # to connect, or to wait for a pooled connection: then 503

    # --- blob storage: both unset means Azurite under data_dir
    azure_storage_connection_string: SecretStr | None = None
    azure_storage_account_url: str | None = None  # keyless: azure-identity, user delegation SAS
    azure_storage_imageset_container: str = "images"
    azure_storage_imageset_folder: str = Field("imagesets", min_length=1, max_length=200)
    azure_storage_timeout_seconds: float = Field(20.0, gt=0, le=600)  # connect and read, per storage call
    azure_storage_retries: int = Field(3, ge=0, le=10)  # SDK retries of a call on 5xx, 408 and network errors
    image_read_token_valid_minutes: int = Field(60, gt=0, le=7 * 24 * 60)
    image_read_token_valid_days: int | None = Field(None, gt=0, le=7)
    imageset_upload_token_valid_days: int = Field(7, gt=0, le=7)

    # --- finishing image sets
    max_image_bytes: int = Field(64 * 1024 * 1024, gt=0, le=256 * 1024 * 1024)  # server-side copy limit: 256 MiB
    max_image_pixels: int = Field(100_000_000, gt=0)  # more is rejected as a decompression bomb
    allowed_image_formats: str = "JPEG,PNG,WEBP,TIFF,BMP"
    thumbnail_size: int = Field(256, ge=16, le=2048)  # longest side of the thumbnail rendition, in pixels
    finish_concurrency: int = Field(16, ge=1, le=128)  # blobs inspected and copied at once
    finish_batch_size: int = Field(200, ge=1, le=5000)  # blobs per database transaction
    # files per chunk: a listing page of the upload area, one job that any worker may take
    finish_chunk_size: int = Field(500, ge=1, le=5000)

    # --- Azure ML (optional as a whole)
    azure_ml_subscription_id: str | None = None
    azure_ml_resource_group: str | None = None
    azure_ml_workspace_name: str | None = None
    azure_ml_datastore: str = "workspaceblobstore"
    azure_ml_sp_tenant_id: str | None = None
    azure_ml_sp_application_id: str | None = None
    azure_ml_sp_password: SecretStr | None = None
    azure_ml_resource_manager_url: str | None = None  # a sovereign/private cloud's ARM endpoint; unset: public Azure
    azure_ml_authority_host: str | None = None  # its Entra ID authority; unset: login.microsoftonline.com
    azure_ml_ca_bundle: Path | None = None  # extra CA certificates for those endpoints

    # --- access control
    api_key_pepper: SecretStr | None = None  # required with an external database
    bootstrap_admin_email: str | None = None
    bootstrap_admin_key: str | None = None
    bootstrap_admin_secret: SecretStr | None = None

    # --- health and jobs
    status_check_timeout_seconds: float = Field(2.0, gt=0, le=4.5)
    worker_concurrency: int = Field(4, ge=1, le=64)
    # how often an idle worker looks for jobs that became due (a retry's backoff over; new jobs come at once)
    worker_poll_seconds: float = Field(5.0, ge=0.1, le=60)
    worker_heartbeat_seconds: float = Field(10.0, gt=0)
    worker_stalled_after_seconds: float = Field(30.0, gt=0)  # no heartbeat for this long: its jobs run again
    worker_shutdown_grace_seconds: float = Field(10.0, ge=0)  # on SIGTERM, running jobs get this long
    worker_hard_stop_margin_seconds: float = Field(10.0, ge=0)  # then this long to stop between batches, or exit
    history_retention_days: int = Field(30, ge=1, le=3650)  # finished jobs, their failures, webhook events: then pruned
    migrate_wait_seconds: float = Field(60.0, ge=0, le=3600)  # `migrate` retries an unreachable database this long

    # --- URL import (app/ingest/fetch.py); the largest body is max_image_bytes
    url_import_concurrency: int = Field(32, ge=1, le=512)  # fetches in flight per worker job
    url_import_per_host: int = Field(8, ge=1, le=512)  # of those, to one host
    url_import_connect_timeout_seconds: float = Field(5.0, gt=0, le=120)
    url_import_read_timeout_seconds: float = Field(20.0, gt=0, le=600)  # the longest silence while reading
    url_import_try_timeout_seconds: float = Field(120.0, gt=0, le=3600)  # one try's whole time, body included
    url_import_max_redirects: int = Field(5, ge=0, le=20)
    url_import_retries: int = Field(3, ge=0, le=10)  # tries after the first, on timeouts, connection errors, 429, 5xx
    url_import_backoff_seconds: float = Field(0.5, ge=0, le=60)  # doubled before each further retry
    url_import_allow_private_networks: bool = False  # let URLs reach loopback, private and link-local addresses
    url_import_chunk_size: int = Field(100, ge=1, le=5000)  # URLs per job: any worker may take any chunk;
    # small enough that the last wave of chunks still keeps every worker slot busy (bench/url_import.py)
    url_import_batch_size: int = Field(50, ge=1, le=1000)  # fetched URLs recorded per database transaction

    # --- webhooks (app/webhooks); URLs pass URL import's SSRF guard, url_import_allow_private_networks included
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=60)  # one delivery attempt, connect to response, at most
    webhook_first_retry_seconds: float = Field(30.0, gt=0, le=3600)  # after the first failure; doubled after each
    webhook_max_retry_seconds: float = Field(3600.0, gt=0, le=86400)  # the longest wait between two attempts
    webhook_retry_for_seconds: float = Field(86400.0, gt=0, le=7 * 86400)  # then the delivery is marked failed

    @field_validator("db_connection_string")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in ("postgres", "postgresql", "postgresql+psycopg2", "postgresql+psycopg"):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("azure_storage_imageset_container")
    @classmethod
    def _container_name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]", value):
            raise ValueError("must be a valid blob container name: 3-63 lower-case letters, digits and single hyphens")
        return value

    @field_validator("azure_storage_connection_string")
    @classmethod
    def _connection_string(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        parts = dict(p.split("=", 1) for p in value.get_secret_value().split(";") if "=" in p)
        if "AccountName" not in parts and "BlobEndpoint" not in parts:
            raise ValueError("must be an Azure Storage connection string (AccountName=...;AccountKey=... or BlobEndpoint=...)")
        return value

    @field_validator("cors_allow_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in filter(None, (o.strip() for o in value.split(","))):
            if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?", origin):
                raise ValueError(f"{origin!r} is not an origin: scheme://host[:port], no path, no wildcard")
        return value

    @field_validator("sentry_dsn")
    @classmethod
    def _sentry_dsn(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if not re.fullmatch(r"https?://[^@/\s]+@[^/\s]+/(.+/)?\d+", value.get_secret_value()):
            raise ValueError("must be a Sentry DSN: https://<key>@<host>/<project id>")
        return value

    @field_validator("prometheus_multiproc_dir")
    @classmethod
    def _multiproc_dir(cls, value: Path | None) -> Path | None:
        if value is None or str(value) == "":
            return None
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR") != str(value):
            raise ValueError("must be set in the process environment (not only in .env): the metrics library "
                             "reads it there when it loads")
        if not value.is_dir() or not os.access(value, os.W_OK):
            raise ValueError(f"{value} must be an existing writable directory")
        return value

    @field_validator("azure_storage_account_url")
    @classmethod
    def _account_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not re.fullmatch(r"https://[^/?#\s]+(/[^/?#\s]+)?/?", value):
            raise ValueError("must be the account's https:// blob endpoint, e.g. "
                             "https://<account>.blob.core.windows.net (bearer tokens never go over plain HTTP)")
        return value

    @field_validator("bootstrap_admin_key")
    @classmethod
    def _bootstrap_key(cls, value: str | None) -> str | None:
        if value and not re.fullmatch(r"[A-Za-z0-9_-]{8,32}", value):
            raise ValueError("must be 8-32 characters of letters, digits, _ and -")
        return value or None

    @field_validator("bootstrap_admin_secret")
    @classmethod
    def _bootstrap_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value and len(value.get_secret_value()) < 24:
            raise ValueError("must be at least 24 characters (a random string)")
        return value or None

    @model_validator(mode="after")
    def _groups(self) -> "Settings":
        for label, names in _TOGETHER.items():
            given = [n for n in names if getattr(self, n) not in (None, "")]
            if given and len(given) != len(names):
                missing = next(n for n in names if n not in given)
                raise SettingsError(missing.upper(), f"required when {given[0].upper()} is set ({label})")
        if self.azure_storage_connection_string and self.azure_storage_account_url:
            raise SettingsError("AZURE_STORAGE_ACCOUNT_URL", "set either this or AZURE_STORAGE_CONNECTION_STRING, not both")
        if self.db_connection_string and not self.api_key_pepper:
            raise SettingsError("API_KEY_PEPPER", "required when DB_CONNECTION_STRING is set (a long random string)")
        if self.worker_shutdown_grace_seconds + self.worker_hard_stop_margin_seconds >= self.worker_stalled_after_seconds:
            raise SettingsError("WORKER_SHUTDOWN_GRACE_SECONDS", "with WORKER_HARD_STOP_MARGIN_SECONDS it must stay under "
                                "WORKER_STALLED_AFTER_SECONDS: a stopping worker sends no heartbeats, and its job "
                                "must be given up before other workers take it over")
        if self.api_key_pepper and len(self.api_key_pepper.get_secret_value()) < 16:
            raise SettingsError("API_KEY_PEPPER", "must be at least 16 characters")
        return self

    # --- derived values
    @property
    def db_libpq_url(self) -> str | None:
        """DB_CONNECTION_STRING as libpq (psycopg) reads it: without a SQLAlchemy driver name."""
        if self.db_connection_string is None:
            return None
        return "postgresql://" + self.db_connection_string.split("://", 1)[1]

    @property
    def embedded_database(self) -> bool:
        return self.db_connection_string is None

    @property
    def embedded_storage(self) -> bool:
        return self.azure_storage_connection_string is None and self.azure_storage_account_url is None

    def missing_server(self) -> SettingsError | None:
        """Every command but `run` (which starts embedded ones) needs a database server and a storage account."""
        if self.embedded_database:
            return SettingsError("DB_CONNECTION_STRING", "not set (`make run` starts an embedded PostgreSQL; "
                                                         "other commands need a server)")
        if self.embedded_storage:
            return SettingsError("AZURE_STORAGE_CONNECTION_STRING", "not set, nor AZURE_STORAGE_ACCOUNT_URL "
                                 "(`make run` starts Azurite; other commands need a storage account)")
        return None

    @property
    def azure_ml_configured(self) -> bool:
        return self.azure_ml_subscription_id is not None

    @property
    def cors_origins(self) -> list[str]:
        return [o.strip() for o in self.cors_allow_origins.split(",") if o.strip()]

    @property
    def image_formats(self) -> frozenset[str]:
        return frozenset(f.strip().upper() for f in self.allowed_image_formats.split(",") if f.strip())

    @property
    def image_read_token_minutes(self) -> int:
        """IMAGE_READ_TOKEN_VALID_DAYS (LabelAPI's name) wins when set."""
        if self.image_read_token_valid_days is not None:
            return self.image_read_token_valid_days * 24 * 60
        return self.image_read_token_valid_minutes


def load(**overrides) -> Settings:
    """Settings from env/.env (overrides win); raises SettingsError naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        variable = str(error["loc"][0]).upper() if error.get("loc") else "settings"
        message = error["msg"].removeprefix("Value error, ")
        raise SettingsError(variable, message) from None


def load_or_exit(*, need_servers: bool = False, **overrides) -> Settings:
    """Settings, or one line naming the variable on stderr and exit status 2. `need_servers`: a database
    server and a storage account must be configured (every command but `run`)."""
    try:
        settings = load(**overrides)
        problem = settings.missing_server() if need_servers else None
        if problem:
            raise problem
        return settings
    except SettingsError as exc:
        print(f"label-store: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
