"""A loopback Entra ID stand-in over HTTPS: the OpenID configuration and the client-credentials token endpoint,
as azure-identity's ClientSecretCredential (MSAL) uses them with `authority=<base_url>`.

Tokens are JWTs with the claims Azurite's `--oauth basic` checks (issuer https://sts.windows.net/<tenant>/,
audience from the requested scope, nbf/iat/exp) plus oid/tid, which Azurite signs user delegation keys with.
Their signature is an HMAC under a throwaway key: Azurite does not check signatures in basic mode, and nothing
here should look like a real token. Only the configured client id and secret get one.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.https_standin import serve_https, stop


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims: dict, key: bytes) -> str:
    signing_input = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


class EntraStandIn:
    """with EntraStandIn(ca, tenant="t", client_id="c", client_secret="s") as entra: entra.base_url, entra.tokens"""

    def __init__(self, ca, *, tenant: str, client_id: str, client_secret: str, token_seconds: int = 3600):
        self.tenant, self.client_id, self.client_secret = tenant, client_id, client_secret
        self.object_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/{client_id}"))  # the principal's oid
        self.token_seconds = token_seconds
        self.tokens: list[dict] = []  # every token request's form (the secret masked) and its answer's status
        self._key = os.urandom(32)
        self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._ssl)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "EntraStandIn":
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self._answer(*standin._get(urlsplit(self.path).path))

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                self._answer(*standin._post(urlsplit(self.path).path, parse_qs(body)))

            def _answer(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = serve_https(self._ssl, Handler, "entra-standin")
        return self

    def stop(self) -> None:
        stop(self._server)
        self._server = None

    def __enter__(self) -> "EntraStandIn":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _get(self, path: str) -> tuple[int, dict]:
        if path == f"/{self.tenant}/v2.0/.well-known/openid-configuration":
            base = f"{self.base_url}/{self.tenant}"
            return 200, {"token_endpoint": f"{base}/oauth2/v2.0/token", "issuer": f"{base}/v2.0",
                         "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                         "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode"}
        return 404, {"error": "not_found"}

    def _post(self, path: str, form: dict[str, list[str]]) -> tuple[int, dict]:
        if path != f"/{self.tenant}/oauth2/v2.0/token":
            return 404, {"error": "not_found"}
        field = lambda name: (form.get(name) or [""])[0]  # noqa: E731
        good = (field("grant_type") == "client_credentials" and field("client_id") == self.client_id
                and hmac.compare_digest(field("client_secret"), self.client_secret))
        with self._lock:
            self.tokens.append({**{k: v[0] for k, v in form.items()}, "client_secret": "<masked>",
                                "status": 200 if good else 401})
        if not good:
            return 401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret."}
        audience = field("scope").split()[0].removesuffix("/.default")
        now = int(time.time())
        claims = {"aud": audience, "iss": f"https://sts.windows.net/{self.tenant}/", "iat": now, "nbf": now - 60,
                  "exp": now + self.token_seconds, "appid": self.client_id, "oid": self.object_id,
                  "sub": self.object_id, "tid": self.tenant, "ver": "1.0"}
        return 200, {"token_type": "Bearer", "expires_in": self.token_seconds, "ext_expires_in": self.token_seconds,
                     "access_token": jwt(claims, self._key)}
