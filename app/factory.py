"""The app factory: wires settings, database, storage, jobs, auth and the two APIs in one place."""
from __future__ import annotations

import copy
import functools
import logging
import warnings
from pathlib import Path

# Connexion imports Starlette's test client whenever httpx is installed; its deprecation notice is noise.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")

import connexion  # noqa: E402
from connexion.middleware import MiddlewarePosition  # noqa: E402
from connexion.options import SwaggerUIOptions  # noqa: E402
from flask import request  # noqa: E402

from app import logs  # noqa: E402
from app.dashboard import blueprint as dashboard_blueprint  # noqa: E402
from app.api import problems, resolver as api_resolver  # noqa: E402
from app.api.validation import VALIDATOR_MAP  # noqa: E402
from app.auth.authenticator import Authenticator  # noqa: E402
from app.auth.connexion_glue import SECURITY_MAP  # noqa: E402
from app.auth.policy import roles_from_spec  # noqa: E402
from app.flask_app import configure, require_servers  # noqa: E402
from app.limits import BodyLimit, RequestLimits  # noqa: E402
from app.middleware import AllowedMethods, ListedOriginsCORS, RequestContextMiddleware  # noqa: E402
from app.migrate import register_migrations  # noqa: E402
from app.settings import Settings, load_or_exit  # noqa: E402

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent


def create_app(settings: Settings | None = None, *, validate_responses: bool = False,
               **options) -> connexion.FlaskApp:
    """The API: the Flask app every process builds (app.flask_app; `options` go to its `configure`) inside
    Connexion, with the two specs, auth, limits, CORS, problem+json and the dashboard."""
    settings = settings or load_or_exit(need_servers=True)
    require_servers(settings)
    authenticator = Authenticator.for_database(
        settings.db_connection_string, pepper=settings.api_key_pepper.get_secret_value(),
        roles_by_operation=roles_from_spec(load_spec("api.yaml")), timeout=settings.db_timeout_seconds)
    connexion_app = connexion.FlaskApp("app", specification_dir=str(HERE / "openapi"), lifespan=authenticator.lifespan)
    flask_app = connexion_app.app
    state = configure(flask_app, settings, **options)
    register_migrations(flask_app)  # `flask db ...` (README, Development)
    flask_app.register_blueprint(dashboard_blueprint)  # /dashboard: static pages over the public API

    @flask_app.before_request
    def _bind_request_id():
        # Flask views run on a2wsgi's threads, which do not inherit the ASGI task's context.
        logs.request_id_var.set(request.headers.get("X-Request-ID", "-"))

    connexion_app.add_middleware(RequestContextMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION, state=state,
                                 allowed_methods=AllowedMethods({"": load_spec("info.yaml"),
                                                                 "/api/v1": load_spec("api.yaml")}))
    if settings.cors_origins:  # inside the request context: preflights get a request id and are counted
        connexion_app.add_middleware(ListedOriginsCORS, position=MiddlewarePosition.BEFORE_EXCEPTION, origins=settings.cors_origins)
    # Inside the two above: a refused request still has its request id, its metrics and its CORS headers.
    connexion_app.add_middleware(RequestLimits, position=MiddlewarePosition.BEFORE_EXCEPTION,
                                 max_body_bytes=settings.max_json_body_bytes, max_header_bytes=settings.max_header_bytes,
                                 max_headers_total_bytes=settings.max_headers_total_bytes, body_limits={
                                     "/imports": BodyLimit(settings.max_import_request_bytes, "MAX_IMPORT_REQUEST_BYTES"),
                                     "/uploads": BodyLimit(settings.max_upload_request_bytes, "MAX_UPLOAD_REQUEST_BYTES"),
                                 })
    problems.register(connexion_app)
    connexion_app.add_api(load_spec("info.yaml"), base_path="", name="info", resolver=api_resolver, swagger_ui_options=SwaggerUIOptions(
        swagger_ui=False, serve_spec=False), validate_responses=validate_responses, strict_validation=True)
    connexion_app.add_api(load_spec("api.yaml"), base_path="/api/v1", name="api_v1", validate_responses=validate_responses,
               strict_validation=True, resolver=api_resolver, validator_map=VALIDATOR_MAP, security_map=SECURITY_MAP,
               swagger_ui_options=SwaggerUIOptions(
                   swagger_ui_path="/ui", spec_path="/openapi.json",
                   swagger_ui_config={"persistAuthorization": True, "displayRequestDuration": True}))
    state.authenticator = authenticator
    return connexion_app


def load_spec(name: str) -> dict:
    """The spec app/openapi/<name>, parsed (a copy: callers may change it)."""
    return copy.deepcopy(_parsed_spec(name))


@functools.cache
def _parsed_spec(name: str) -> dict:
    # Parsed once per process, by libyaml when PyYAML has it: api.yaml took pure-Python PyYAML ~0.35 s, and an
    # app used to parse it four times (the roles, the allowed methods, Connexion's add_api), ~1.8 s of every
    # process start (API, worker, each command).
    import yaml

    return yaml.load((HERE / "openapi" / name).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))

