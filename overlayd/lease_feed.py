"""Every lease-store call the running daemon makes, on threads of its own.

The reconcile loop never waits on the store: a store that hangs must not stop the repair of a
deleted device or the heartbeat. Results come back as events on the daemon's queue, in the
order they happened:

    ("leases", [LeaseEvent, ...])   a batch from the watch
    ("snapshot", [Lease, ...])      the whole store, read after every event posted before it
    ("moved", Moved)                the lease now advertises a new underlay (see request_move)

The watch thread re-reads the store every `reread_every` seconds (0: only after a watch
failure): it ends the watch round, reads a snapshot, posts it, and watches on from the
snapshot's revision. Because the same thread posts both, a snapshot always follows the events
it contains, and the loop may drop the events queued before it.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Callable, Optional

from subnet_lease.backoff import Backoff
from subnet_lease.config import NetConfig
from subnet_lease.lease import Lease

log = logging.getLogger(__name__)


class Until:
    """A stop flag for one watch round: set when `outer` is set or `seconds` have passed.

    It offers what LeaseBackend.watch uses of a threading.Event: is_set() and wait()."""

    def __init__(self, outer: threading.Event, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.outer = outer
        self.clock = clock
        self.deadline = clock() + seconds if seconds > 0 else None

    def _left(self) -> Optional[float]:
        return None if self.deadline is None else self.deadline - self.clock()

    def is_set(self) -> bool:
        left = self._left()
        return self.outer.is_set() or (left is not None and left <= 0)

    def wait(self, timeout: Optional[float] = None) -> bool:
        left = self._left()
        if left is not None:
            timeout = left if timeout is None else min(timeout, left)
        if timeout is None or timeout > 0:
            self.outer.wait(timeout)
        return self.is_set()


@dataclasses.dataclass(frozen=True)
class MoveRequest:
    """Take the lease again for a new underlay: what acquire() needs, as plain values."""
    underlay: object                     # overlayd.underlay.Underlay (opaque here)
    config: NetConfig
    template: Lease
    subnet: object
    ipv6_subnet: object
    on_change: Optional[Callable[[Lease], None]] = None


@dataclasses.dataclass(frozen=True)
class Moved:
    request: MoveRequest
    lease: Lease


class LeaseFeed:
    def __init__(self, backend, post: Callable[[str, object], None], stop: threading.Event, *,
                 reread_every: float = 0.0, on_watch_restart: Callable[[], None] = lambda: None,
                 max_backoff: float = 30.0):
        self.backend = backend
        self.post = post
        self.stop = stop
        self.reread_every = reread_every
        self.on_watch_restart = on_watch_restart
        self.max_backoff = max_backoff
        self._move_lock = threading.Lock()
        self._move: Optional[MoveRequest] = None
        self._move_wake = threading.Event()
        self._mover: Optional[threading.Thread] = None

    # -- the watch ------------------------------------------------------------------------------
    def start_watch(self, revision) -> threading.Thread:
        t = threading.Thread(target=self._watch, args=(revision,), name="lease-watch", daemon=True)
        t.start()
        return t

    def _watch(self, revision) -> None:
        backoff = Backoff(1.0, self.max_backoff)
        while not self.stop.is_set():
            try:
                for batch in self.backend.watch(revision, Until(self.stop, self.reread_every)):
                    self.post("leases", batch)
                    backoff.reset()
                if self.stop.is_set():
                    return
                log.debug("re-reading the lease store (every %.0fs)", self.reread_every)
            except Exception as err:  # the backend reconnects by itself; this is the last resort
                delay = backoff.next()
                log.error("lease watch failed: %s; re-snapshot in %.0fs", err, delay)
                self.on_watch_restart()
                self.stop.wait(delay)
            if self.stop.is_set():
                return
            try:
                leases, revision = self.backend.snapshot()
                self.post("snapshot", leases)
            except Exception as err:
                log.error("lease snapshot failed: %s", err)

    # -- moving to a new underlay -----------------------------------------------------------------
    def request_move(self, request: MoveRequest) -> None:
        """Acquire for `request` on the mover thread; a newer request replaces one not yet done."""
        with self._move_lock:
            self._move = request
            if self._mover is None:
                self._mover = threading.Thread(target=self._moves, name="lease-move", daemon=True)
                self._mover.start()
        self._move_wake.set()

    def _moves(self) -> None:
        backoff = Backoff(1.0, self.max_backoff)
        while not self.stop.is_set():
            self._move_wake.wait(1.0)
            self._move_wake.clear()
            with self._move_lock:
                request = self._move
            if request is None:
                continue
            try:
                self.backend.reconnect()        # its connection was bound to the old address
                lease = self.backend.acquire(request.config, request.template, request.subnet,
                                             previous_ipv6_subnet=request.ipv6_subnet,
                                             on_change=request.on_change)
            except Exception as err:
                delay = backoff.next()
                log.error("taking the lease for the new underlay failed: %s; retrying in %.0fs", err, delay)
                self.stop.wait(delay)
                self._move_wake.set()
                continue
            backoff.reset()
            with self._move_lock:
                if self._move is request:
                    self._move = None
            self.post("moved", Moved(request, lease))
