"""`--healthz-ip`/`--healthz-port`: what /healthz, /readyz and /metrics report, and the port.

The HTTP server itself is overlayd.health_server; the daemon binds the port here at once (a port
in use stops it with the flag to change) and starts serving once its datapath is being programmed,
so http.server and the exposition code load while the kernel works (overlayd.daemon_main).

What each endpoint answers: overlayd.health_server.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import socket
import threading
import time
from typing import Callable, Union

class HealthError(RuntimeError):
    """The health server cannot start; the message names the flag and the fix."""


@dataclasses.dataclass(frozen=True)
class Status:
    ok: bool
    reason: str


StatusLike = Union[Status, bool, tuple]


def as_status(value: StatusLike) -> Status:
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


def listen(ip: str, port: int) -> socket.socket:
    """The health port, bound and listening (HealthError names the flag and the fix)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        raise HealthError(f"--healthz-ip {ip!r} is not an IP address; use e.g. 0.0.0.0 (all IPv4), "
                          f":: (all addresses) or 127.0.0.1") from None
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise HealthError(f"--healthz-port {port!r} must be a TCP port from 0 to 65535 (0 picks a free one)")
    sock = socket.socket(socket.AF_INET6 if addr.version == 6 else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)     # as http.server does
        sock.bind((str(addr), port))
        sock.listen(16)
    except OSError as err:
        sock.close()
        raise HealthError(f"cannot listen on {ip} port {port} (--healthz-ip/--healthz-port): "
                          f"{err.strerror or err}") from None
    return sock
