"""The health HTTP server: /healthz, /readyz and /metrics over plain HTTP, in a thread.

- /healthz  200 while the daemon loop is alive: its Heartbeat was beaten within max_age seconds;
            503 with the age otherwise (a stuck loop gets the pod restarted by its liveness probe).
- /readyz   200 only once the readiness callback says so (subnet file written, rules in place);
            503 with the reason in the body until then.
- /metrics  the Prometheus text format of the daemon's own registry (overlayd.metrics).

Bodies are plain text, one line, so `curl -s node:port/readyz` tells an operator what is missing.
Port 0 picks a free port (tests read it from `server.port`).
"""
from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from .health import HealthError, Status, StatusLike, as_status, listen

__all__ = ["HealthError", "HealthServer"]

log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    server_version = "overlayd"
    timeout = 10   # a client that stalls mid-request does not hold a thread forever

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def _respond(self, send_body: bool) -> None:
        app: HealthServer = self.server.app  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        try:
            if path == "/healthz":
                code, ctype, body = app.probe(app.liveness)
            elif path == "/readyz":
                code, ctype, body = app.probe(app.readiness)
            elif path == "/metrics":
                code, ctype, body = 200, CONTENT_TYPE_LATEST, generate_latest(app.registry)
            else:
                code, ctype, body = 404, "text/plain; charset=utf-8", b"not found: try /healthz, /readyz or /metrics\n"
        except Exception as err:  # a broken collector must not kill the server thread
            log.exception("health endpoint %s failed", path)
            code, ctype, body = 500, "text/plain; charset=utf-8", f"error: {err}\n".encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class HealthServer:
    """HealthServer(ip, port, liveness=heartbeat, readiness=readiness, registry=metrics.registry)."""

    def __init__(self, ip: str, port: int, *, liveness: Callable[[], StatusLike],
                 readiness: Callable[[], StatusLike], registry: CollectorRegistry,
                 sock: Optional[socket.socket] = None) -> None:
        """Serve on `sock` (health.listen's, bound earlier) or on a new listener at ip:port."""
        sock = sock if sock is not None else listen(ip, port)
        self.liveness = liveness
        self.readiness = readiness
        self.registry = registry
        cls = _Server6 if sock.family == socket.AF_INET6 else _Server
        self._httpd = cls(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self._httpd.socket.close()
        self._httpd.socket = sock
        self._httpd.server_address = sock.getsockname()
        self._httpd.server_name, self._httpd.server_port = self._httpd.server_address[:2]
        self._httpd.app = self  # type: ignore[attr-defined]
        self._thread: Optional[threading.Thread] = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return host, port

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @staticmethod
    def probe(check: Callable[[], StatusLike]) -> tuple[int, str, bytes]:
        try:
            status = as_status(check())
        except Exception as err:
            status = Status(False, f"check failed: {err}")
        return (200 if status.ok else 503), "text/plain; charset=utf-8", (status.reason + "\n").encode()

    def start(self) -> "HealthServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="overlayd-health", daemon=True)
        self._thread.start()
        log.info("health server on %s (/healthz, /readyz, /metrics)", self.url)
        return self

    def close(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(10)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> "HealthServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
