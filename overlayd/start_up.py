"""Two start-up helpers of the daemon, measured from outside (bench/bench_startup.py):

- start_prefetch: the lease store's first reads (the network config; with etcd, every lease) in a
  thread, while the main thread imports the daemon. The store works in its own
  process meanwhile, so the read's wait overlaps the imports. Errors are left for the real start
  to meet and report (it reads again when nothing was prefetched).
- SideServices: the health server and the CNI service start once the datapath is being
  programmed (or after SERVICES_GRACE, when start-up waits for the store). Their imports
  (http.server, the exposition code, the plugin) then run while the kernel inserts routes, with
  the interpreter lock free, instead of before the first entry. The health port itself is bound
  at once, so a port in use still stops the daemon before it does anything.
- release_free_memory: after start-up, hand the transient memory of the snapshot (the raw store
  answer, the parse, the first reconcile's plans) back to the kernel, so the resident size is
  what the running daemon holds, not the start-up's peak.
"""
from __future__ import annotations

import gc
import logging
import threading
import time
from typing import Callable, Optional

log = logging.getLogger(__name__)

# How long the side services wait for the datapath to be programmed before they start anyway.
SERVICES_GRACE = 1.0


def start_prefetch(backend) -> threading.Thread:
    def run() -> None:
        try:
            backend.get_network_config()
            prefetch = getattr(backend, "prefetch", None)
            if prefetch is not None:
                prefetch()
        except Exception as err:       # the real start-up reads again and reports it
            log.debug("prefetch: %s", err)

    thread = threading.Thread(target=run, name="prefetch", daemon=True)
    thread.start()
    return thread


def release_free_memory() -> None:
    gc.collect()
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):    # not glibc: nothing to trim
        pass


def once(fn: Callable[..., None]) -> Callable[..., None]:
    """fn, called on the first call only (a hook that runs on every subnet.env write)."""
    done = threading.Event()

    def call(*args) -> None:
        if not done.is_set():
            done.set()
            fn()
    return call


class SideServices:
    """The health server (on the listener bound at start) and the CNI service, started in a
    thread when `go` is set or `within` seconds have passed; close() stops what started."""

    def __init__(self, settings, listener, liveness, readiness, metrics, policy) -> None:
        self.settings, self.listener = settings, listener
        self.liveness, self.readiness, self.metrics, self.policy = liveness, readiness, metrics, policy
        self.server = self.cni = None
        self._thread: Optional[threading.Thread] = None
        self._closed = threading.Event()

    def start_when(self, go: threading.Event, within: float) -> None:
        def run() -> None:
            deadline = time.monotonic() + within
            while not go.wait(0.05) and not self._closed.is_set() and time.monotonic() < deadline:
                pass
            if not self._closed.is_set():
                self._start()
        self._thread = threading.Thread(target=run, name="side-services", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        s = self.settings
        if self.listener is not None:
            from .health_server import HealthServer
            self.server = HealthServer(s.healthz_ip, s.healthz_port, liveness=self.liveness,
                                       readiness=self.readiness, registry=self.metrics.registry,
                                       sock=self.listener).start()
        if s.cni_socket:
            from .cni_service import CniService
            try:
                self.cni = CniService(s.cni_socket, s.subnet_file, metrics=self.metrics, data_dir=s.cni_data_dir,
                                      on_added=self.policy.cni_added if self.policy is not None else None).start()
            except OSError as err:   # the plugin still works without it, only slower
                log.warning("CNI service off: cannot listen on --cni-socket %s: %s", s.cni_socket, err)

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(10)
        if self.cni is not None:
            self.cni.close()
        if self.server is not None:
            self.server.close()
        elif self.listener is not None:
            self.listener.close()
