"""`--healthz-ip`/`--healthz-port`: /healthz, /readyz and /metrics over plain HTTP, in a thread.

- /healthz  200 while the daemon loop is alive: its Heartbeat was beaten within max_age seconds;
            503 with the age otherwise (a stuck loop gets the pod restarted by its liveness probe).
- /readyz   200 only once the readiness callback says so (subnet file written, rules in place);
            503 with the reason in the body until then.
- /metrics  the Prometheus text format of the daemon's own registry (overlayd.metrics).

Bodies are plain text, one line, so `curl -s node:port/readyz` tells an operator what is missing.
Port 0 picks a free port (tests read it from `server.port`).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional, Union

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)


class HealthError(RuntimeError):
    """The health server cannot start; the message names the flag and the fix."""


@dataclasses.dataclass(frozen=True)
class Status:
    ok: bool
    reason: str


StatusLike = Union[Status, bool, tuple]


def _status(value: StatusLike) -> Status:
    if isinstance(value, Status):
        return value
    if isinstance(value, bool):
        return Status(value, "ok" if value else "not ready")
    ok, reason = value
    return Status(bool(ok), str(reason))


class Heartbeat:
    """The daemon loop calls beat() every pass; alive while the last beat is at most max_age old.

    Creating it counts as the first beat, so a daemon has max_age seconds to start its loop.
    """

    def __init__(self, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not max_age > 0:
            raise ValueError(f"heartbeat max_age {max_age!r} must be a positive number of seconds")
        self.max_age = max_age
        self._clock = clock
        self._last = clock()

    def beat(self) -> None:
        self._last = self._clock()

    def age(self) -> float:
        return self._clock() - self._last

    def __call__(self) -> Status:
        age = self.age()
        if age <= self.max_age:
            return Status(True, f"ok: daemon loop ran {age:.1f}s ago")
        return Status(False, f"daemon loop stalled: last ran {age:.1f}s ago (limit {self.max_age:g}s)")


class Readiness:
    """Named conditions that must all hold, e.g. Readiness("subnet file written", "rules in place").

    The daemon sets each one as it gets there (and clears it if it is lost); calling the object
    gives the Status /readyz reports, naming what is still missing.
    """

    def __init__(self, *conditions: str) -> None:
        self._lock = threading.Lock()
        self._state: dict[str, tuple[bool, str]] = {c: (False, "") for c in conditions}

    def set(self, condition: str, ok: bool = True, detail: str = "") -> None:
        with self._lock:
            if condition not in self._state:
                raise KeyError(f"unknown readiness condition {condition!r}; known: {', '.join(self._state)}")
            self._state[condition] = (ok, detail)

    def __call__(self) -> Status:
        with self._lock:
            missing = [c + (f" ({d})" if d else "") for c, (ok, d) in self._state.items() if not ok]
        if missing:
            return Status(False, "not ready: waiting for " + ", ".join(missing))
        return Status(True, "ready")


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
                 readiness: Callable[[], StatusLike], registry: CollectorRegistry) -> None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise HealthError(f"--healthz-ip {ip!r} is not an IP address; use e.g. 0.0.0.0 (all IPv4), "
                              f":: (all addresses) or 127.0.0.1") from None
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise HealthError(f"--healthz-port {port!r} must be a TCP port from 0 to 65535 (0 picks a free one)")
        self.liveness = liveness
        self.readiness = readiness
        self.registry = registry
        cls = _Server6 if addr.version == 6 else _Server
        try:
            self._httpd = cls((str(addr), port), _Handler, bind_and_activate=True)
        except OSError as err:
            raise HealthError(f"cannot listen on {ip} port {port} (--healthz-ip/--healthz-port): "
                              f"{err.strerror or err}") from None
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
            status = _status(check())
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
