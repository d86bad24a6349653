"""The dashboard: static pages (HTML, ES modules, CSS) served at /dashboard that call the public API
(/api/v1) with the key pair the user signs in with. No private endpoints: each role sees what the API lets it.

Everything is served by the app itself (no CDN), under a Content Security Policy that lets the page talk to
the service only, and load images from the service and the storage account's blob host (the SAS read URLs).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, redirect, send_from_directory

from app.state import app_state

STATIC = Path(__file__).resolve().parent / "static"
blueprint = Blueprint("dashboard", __name__, static_folder=str(STATIC), static_url_path="/static",
                      url_prefix="/dashboard")


@lru_cache(maxsize=4)
def _policy(blob_origin: str) -> str:
    return ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            f"img-src 'self' data: {blob_origin}; font-src 'self'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")


def blob_origin() -> str:
    """scheme://host[:port] of the storage account's blob endpoint (where read URLs point)."""
    parts = urlsplit(app_state().storage.service.url)
    return f"{parts.scheme}://{parts.netloc}"


@blueprint.after_request
def _headers(response):
    response.headers["Content-Security-Policy"] = _policy(blob_origin())
    response.headers["Referrer-Policy"] = "no-referrer"  # a SAS in the page's URL would never leak; none is there
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.setdefault("Cache-Control", "no-cache")
    return response


@blueprint.get("")
def _bare():
    return redirect("/dashboard/", code=308)


@blueprint.get("/")
def index():
    return send_from_directory(STATIC, "index.html", max_age=0)
