"""Local HTTPS stand-in for the Azure ML (ARM) REST endpoint, for tests of code
that drives the real azure-ai-ml MLClient.

Binds 127.0.0.1 only, serves TLS with a trustme-issued certificate, records
every request and answers:

* GET  .../datastores/{name}                          -> 404 (so mltable validation
  is skipped quickly instead of trying blob storage for ~80 s)
* PUT  .../workspaces/{ws}/data/{name}/versions/{v}   -> 201 with id + echoed properties
  (or a configured failure, see ``put_failure``)
* GET  .../workspaces/{ws}/data/{name}/versions/{v}   -> 200 if created here before, else 404
* anything else                                       -> 404 JSON error, logged in ``unhandled``

Usage::

    with StandIn() as s:
        s.ca_bundle            # path of the CA PEM to pass as connection_verify=
        s.base_url             # "https://127.0.0.1:<port>/"
        s.put_failure = StandIn.AUTH_FAILURE       # or PATH_IMMUTABLE, or (status, body_dict)
        s.requests             # list of recorded request dicts
"""
from __future__ import annotations

import json
import logging
import os
import re
import ssl
import tempfile
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

import trustme

from tests.https_standin import serve_https, stop

log = logging.getLogger("standin")

_DATA_VERSION_RE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)"
    r"/data/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$",
    re.IGNORECASE,
)
_WORKSPACE_RE = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)$",
    re.IGNORECASE,
)
_DATASTORE_RE = re.compile(r"/workspaces/[^/]+/datastores/[^/]+(/.*)?$", re.IGNORECASE)


def _err(code: str, message: str) -> Dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class StandIn:
    # Ready-made failure modes for the data-version PUT: (status, json body, extra headers)
    AUTH_FAILURE: Tuple[int, Dict[str, Any]] = (
        401,
        _err("InvalidAuthenticationToken", "The access token is invalid."),
    )
    # Code/message the SDK itself expects from the service (azure/ai/ml/_artifacts/_constants.py:
    # ASSET_PATH_ERROR = "(UserError) Asset paths cannot be updated.").  The HTTP status the real
    # service uses is not documented in the SDK; 400 is the assumption here (409 also supported).
    PATH_IMMUTABLE: Tuple[int, Dict[str, Any]] = (400, _err("UserError", "Asset paths cannot be updated."))
    PATH_IMMUTABLE_409: Tuple[int, Dict[str, Any]] = (409, _err("UserError", "Asset paths cannot be updated."))

    def __init__(self, *, put_status: int = 201, enforce_path_immutability: bool = False) -> None:
        self._ca = trustme.CA()
        self._cert = self._ca.issue_cert("127.0.0.1", "localhost")
        self._tmpdir = tempfile.TemporaryDirectory(prefix="aml-standin-")
        self.ca_bundle = os.path.join(self._tmpdir.name, "ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_bundle)
        self._ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._cert.configure_cert(self._ssl_ctx)

        self.put_status = put_status  # 200 or 201 on success
        self.put_delay = 0.0  # seconds to hold each data PUT (a hung service)
        self.put_failure: Optional[Tuple[int, Dict[str, Any]]] = None  # applied to every data PUT while set
        self.enforce_path_immutability = enforce_path_immutability  # stateful: re-PUT with other dataUri -> 400
        self.requests: List[Dict[str, Any]] = []
        self.unhandled: List[Dict[str, Any]] = []
        self.assets: Dict[Tuple[str, str], Dict[str, Any]] = {}  # (name, version) -> stored resource
        self._lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    def start(self) -> "StandIn":
        standin = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # quiet; use logging at debug level
                log.debug("%s - " + fmt, self.client_address[0], *args)

            def _handle(self):
                standin._dispatch(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _handle

        self._server = serve_https(self._ssl_ctx, _Handler, "aml-standin")
        return self

    def stop(self) -> None:
        stop(self._server)
        self._server = None
        self._tmpdir.cleanup()

    def __enter__(self) -> "StandIn":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers
    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.unhandled.clear()
        self.put_failure = None

    def cloud_metadata(self) -> Dict[str, str]:
        """cloud_metadata for MLClient(cloud=<unique name>, cloud_metadata=...)."""
        return {
            "azure_portal": self.base_url,
            "resource_manager": self.base_url,
            "active_directory": self.base_url,
            "aml_resource_id": self.base_url,
            "storage_endpoint": "invalid.localhost",  # never contacted if the datastore GET answers 404
            "registry_discovery_endpoint": self.base_url,
        }

    # ------------------------------------------------------------------ request handling
    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        parts = urlsplit(h.path)
        headers = {k: v for k, v in h.headers.items()}
        if "Authorization" in headers:
            scheme = headers["Authorization"].split(" ", 1)[0]
            headers["Authorization"] = f"{scheme} <redacted>"
        record = {
            "method": h.command,
            "path": parts.path,
            "query": {k: v if len(v) > 1 else v[0] for k, v in parse_qs(parts.query).items()},
            "headers": headers,
            "body": body,
        }
        with self._lock:
            self.requests.append(record)

        status, payload = self._route(record)
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        h.send_header("x-ms-request-id", "standin-%d" % len(self.requests))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    def _route(self, r: Dict[str, Any]) -> Tuple[int, Dict[str, Any]]:
        method, path = r["method"], r["path"]
        base = self.base_url.rstrip("/")

        # Entra ID, as a service principal's credential uses it (authority = this server).
        if method == "GET" and path.endswith("/v2.0/.well-known/openid-configuration"):
            tenant = path.split("/")[1]
            return 200, {"token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token", "issuer": f"{base}/{tenant}/v2.0",
                         "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
                         "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode"}
        if method == "POST" and path.endswith("/oauth2/v2.0/token"):
            return 200, {"token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600,
                         "access_token": "standin-token"}
        workspace = _WORKSPACE_RE.match(path)
        if method == "GET" and workspace:
            return 200, {"id": path, "name": workspace["ws"], "location": "westeurope",
                         "type": "Microsoft.MachineLearningServices/workspaces", "kind": "Default",
                         "properties": {"friendlyName": workspace["ws"], "workspaceId": "00000000-0000-0000-0000-000000000001"}}

        if method == "GET" and _DATASTORE_RE.search(path):
            return 404, _err("UserError", "Datastore not found (stand-in).")

        m = _DATA_VERSION_RE.match(path)
        if m and method == "PUT":
            if self.put_delay:
                import time

                time.sleep(self.put_delay)
            if self.put_failure is not None:
                return self.put_failure
            body = r["body"] if isinstance(r["body"], dict) else {}
            props = dict(body.get("properties") or {})
            key = (m["name"], m["version"])
            old = self.assets.get(key)
            if (
                self.enforce_path_immutability
                and old is not None
                and old["properties"].get("dataUri") != props.get("dataUri")
            ):
                return self.PATH_IMMUTABLE
            now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            resource = {
                "id": path,
                "name": m["version"],
                "type": "Microsoft.MachineLearningServices/workspaces/data/versions",
                "properties": props,
                "systemData": {
                    "createdAt": now,
                    "createdBy": "standin",
                    "createdByType": "User",
                    "lastModifiedAt": now,
                    "lastModifiedBy": "standin",
                    "lastModifiedByType": "User",
                },
            }
            self.assets[key] = resource
            return (200 if old is not None else self.put_status), resource

        if m and method == "GET":
            res = self.assets.get((m["name"], m["version"]))
            if res is not None:
                return 200, res
            return 404, _err("UserError", f"Data asset {m['name']}:{m['version']} not found (stand-in).")

        log.warning("stand-in: unhandled %s %s", method, path)
        with self._lock:
            self.unhandled.append(r)
        return 404, _err("NotFound", f"stand-in has no route for {method} {path}")
