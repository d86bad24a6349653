"""The Flask app every process builds: settings, database, blob storage, Azure ML and jobs, reached through
`app_state()`. Workers and commands run on it as it is (`create_flask_app`); the API (app.factory) builds it
inside Connexion and adds the HTTP side. Nothing here imports Connexion, so a worker starts without it."""
from __future__ import annotations

from pathlib import Path

from flask import Flask

from app import __version__, azureml, error_reports, jobs, logs, models  # noqa: F401  (models: all registered)
from app.extensions import db
from app.settings import Settings, load_or_exit
from app.state import EXTENSION, State
from app.storage import BlobStorage

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def sqlalchemy_url(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"postgresql+psycopg2://{rest}" if scheme in ("postgres", "postgresql", "postgresql+psycopg") else url


def create_flask_app(settings: Settings | None = None, **options) -> Flask:
    """The app a worker or a command runs on (no HTTP API); `options` as for `configure`."""
    settings = settings or load_or_exit(need_servers=True)
    require_servers(settings)
    flask_app = Flask("app")
    configure(flask_app, settings, **options)
    return flask_app


def require_servers(settings: Settings) -> None:
    if settings.db_connection_string is None or settings.embedded_storage:
        raise RuntimeError("the app needs DB_CONNECTION_STRING and blob storage settings; "
                           "`make run` (python -m app run) starts the embedded ones and passes them on")


def configure(flask_app: Flask, settings: Settings, *, storage_options: dict | None = None,
              azureml_credential=None) -> State:
    """Bind settings, database, storage and jobs to `flask_app`. What a test hands in: `storage_options` go to
    BlobStorage (a credential, a clock, a CA bundle); `azureml_credential` replaces the one the AZURE_ML_*
    settings describe. The caller has checked the settings name the servers (`require_servers`)."""
    logs.configure(settings.log_level, settings.log_format)
    error_reports.init(settings, release=__version__)
    flask_app.config.update(
        SQLALCHEMY_DATABASE_URI=sqlalchemy_url(settings.db_connection_string),
        # hide_parameters: a database error's text (logged) names the statement, never the request's values
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20,
                                   "hide_parameters": True, "pool_timeout": settings.db_timeout_seconds,
                                   "connect_args": {"connect_timeout": max(1, round(settings.db_timeout_seconds)),
                                                    "application_name": "label-store"}},
    )
    flask_app.json.sort_keys = False
    db.init_app(flask_app)
    storage = BlobStorage.from_settings(settings, **(storage_options or {}))
    state = flask_app.extensions[EXTENSION] = State(
        settings=settings, storage=storage,
        probe_storage=storage.with_limits(timeout=settings.status_check_timeout_seconds, retries=0),
        azureml_credential=azureml_credential or (azureml.credential_for(settings) if settings.azure_ml_configured
                                                  else None),
    )
    jobs.init_app(flask_app)
    return state
