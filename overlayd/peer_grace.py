"""--peer-removal-grace: a peer whose lease vanished stays programmed a little longer (issue 14).

When the lease store was unreachable for longer than the lease TTL, the store expires every
lease meanwhile. Once it answers again each peer sees the expiries (DELETEs) a moment before
the owners, alive all along, re-create their keys (PUTs): without a grace, every node drops the
routes to every other node for that moment and established pod traffic stalls. With a grace of
G seconds a removal is applied only if the lease has not come back within G (a re-created key
cancels it; a key taken over by another node replaces the entries at once, as any update does).
A node that is really gone keeps its (harmless, unreachable) entries G seconds longer.

Pure bookkeeping over the daemon's peers dict; the clock is injected.
"""
from __future__ import annotations

import time
from typing import Callable

from subnet_lease.lease import Lease, LeaseEvent


class PeerGrace:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = max(0.0, float(seconds))
        self._clock = clock
        self.deadlines: dict[str, float] = {}        # lease key -> when its removal applies

    def removed(self, peers: dict[str, Lease], lease: Lease) -> bool:
        """A removal arrived: True if it is deferred (the peer stays in `peers` for now)."""
        if self.seconds <= 0 or lease.key not in peers:
            return False
        self.deadlines.setdefault(lease.key, self._clock() + self.seconds)
        return True

    def added(self, key: str) -> None:
        """The lease is back (or replaced): its pending removal is cancelled."""
        self.deadlines.pop(key, None)

    def snapshot(self, old: dict[str, Lease], new: dict[str, Lease]) -> dict[str, Lease]:
        """The peers after a full re-read: the new ones, plus old ones missing from it, in grace."""
        for key in list(self.deadlines):
            if key in new:
                del self.deadlines[key]
        if self.seconds <= 0:
            self.deadlines.clear()
            return dict(new)
        out = dict(new)
        now = self._clock()
        for key, lease in old.items():
            if key not in new:
                self.deadlines.setdefault(key, now + self.seconds)
                out[key] = lease
        return out

    def expired(self, peers: dict[str, Lease]) -> list[LeaseEvent]:
        """Removals whose grace ran out: taken out of `peers`, returned as events to apply."""
        now = self._clock()
        events = []
        for key in [k for k, deadline in self.deadlines.items() if deadline <= now]:
            del self.deadlines[key]
            lease = peers.pop(key, None)
            if lease is not None:
                events.append(LeaseEvent("removed", lease))
        return events
