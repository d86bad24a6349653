"""The HTTPS server under the loopback stand-ins (Azure ML, Entra ID): 127.0.0.1, a free port, TLS with a
test certificate, the handshake done in each request's own thread (a stalled client holds up no one)."""
from __future__ import annotations

import logging
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("standin")


def serve_https(context: ssl.SSLContext, handler: type[BaseHTTPRequestHandler], name: str) -> ThreadingHTTPServer:
    """Started; stop it with `stop(server)`."""

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def finish_request(self, request, client_address):
            try:
                request = context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.warning("TLS handshake from %s failed: %s", client_address, exc)
                return
            self.RequestHandlerClass(request, client_address, self)

    server = Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server


def stop(server: ThreadingHTTPServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()
