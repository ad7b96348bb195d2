"""Keeping the own lease: keep-alives before expiry, and the key taken again if it vanishes.

The etcd lease's ID stays stable (keep-alives, not new grants), so `etcdctl lease timetolive
--keys` keeps showing the same lease and key. A watch on the own key wakes the keeper at once;
the periodic check is the net. Whatever goes wrong, the keeper lives on: a dead keeper lets the
lease expire 24 h later with nobody noticing.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Callable, Optional

from .allocator import PoolExhausted
from .backend import BackendUnavailable, LeaseError
from .backoff import Backoff
from .config import NetConfig
from .etcd_acquire import Acquirer
from .lease import Lease, LeaseFormatError, lease_from_json

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Own:
    lease: Lease
    full_key: str
    config: NetConfig
    template: Lease
    expires_at: float          # clock() when the etcd lease would expire unrenewed
    renewed_at: float


class _KeyWatch:
    def __init__(self) -> None:
        self.failed = False
        self.key: Optional[str] = None
        self.cancel_fn: Optional[Callable[[], None]] = None

    def cancel(self) -> None:
        try:
            if self.cancel_fn:
                self.cancel_fn()
        except Exception:
            pass


class Keeper:
    """The own lease's state (shared with acquire()) and the thread that keeps it."""

    def __init__(self, conn, acquirer: Acquirer, settings, rng, clock: Callable[[], float]) -> None:
        self.conn = conn
        self.acquirer = acquirer
        self.settings = settings
        self.rng = rng
        self.clock = clock
        self.lock = threading.Lock()
        self.own: Optional[Own] = None
        self.renewals = 0
        self.reacquisitions = 0
        self.on_change: Optional[Callable[[Lease], None]] = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._keep, name="etcd-lease-keeper", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.rpc_timeout + 5)
            self._thread = None

    def renew_due(self, own: Own) -> float:
        """Clock time of the next keep-alive: `renew_margin` before expiry, at most half-way."""
        ttl = own.expires_at - own.renewed_at
        margin = min(self.settings.renew_margin, ttl / 2)
        return own.expires_at - margin

    def _keep(self) -> None:
        backoff = Backoff(self.settings.backoff_initial, self.settings.backoff_max, rng=self.rng)
        key_watch: Optional[_KeyWatch] = None
        while not self._stop.is_set():
            with self.lock:
                own = self.own
            if own is None:
                self._stop.wait(1.0)
                continue
            delay = 1.0
            try:
                if key_watch is None or key_watch.failed or key_watch.key != own.full_key:
                    if key_watch:
                        key_watch.cancel()
                    key_watch = self._watch_own_key(own.full_key)
                    key_watch.key = own.full_key
                self.check(own)
                backoff.reset()
                delay = self.settings.check_interval
                if own.lease.lease_id:
                    # `own`, not self.own: acquire() sets that to None while it re-acquires.
                    delay = min(delay, max(0.0, self.renew_due(own) - self.clock()))
            except Exception as err:
                self.conn.last_error = str(err) or type(err).__name__
                if isinstance(err, (BackendUnavailable, LeaseError, PoolExhausted)):
                    log.warning("keeping lease %s: %s", own.lease.key, err)
                else:
                    log.exception("keeping lease %s: unexpected error; retrying", own.lease.key)
                if key_watch:
                    key_watch.cancel()
                key_watch = None
                delay = backoff.next()
            self._wake.wait(delay)
            self._wake.clear()
        if key_watch:
            key_watch.cancel()

    def _watch_own_key(self, key: str) -> _KeyWatch:
        """Wake the keeper as soon as the own key changes or goes (the periodic check is the net)."""
        kw = _KeyWatch()

        def on_event(response):
            if response is None or isinstance(response, Exception):
                kw.failed = True
            self._wake.set()

        stream = self.conn.call("watch own key", lambda c: c.watch(key, on_event))
        kw.cancel_fn = stream.cancel
        return kw

    def check(self, own: Own) -> None:
        """Renew when due; re-acquire (same subnet preferred, same lease ID if alive) if the key vanished."""
        now = self.clock()
        lease_id = own.lease.lease_id
        if lease_id and now >= self.renew_due(own):
            left = self.acquirer.keepalive(lease_id)
            if left > 0:
                with self.lock:
                    if self.own is own:
                        own.renewed_at, own.expires_at = now, now + left
                        self.renewals += 1
                self.acquirer.quarantine.keep(own.lease, own.template)
            else:
                log.warning("etcd lease %x of %s is gone (expired or revoked)", lease_id, own.lease.key)
                lease_id = None
        kv = self.conn.call("get own key", lambda c: c.get(own.full_key))
        intact = (kv is not None and (kv.lease or None) == own.lease.lease_id
                  and lease_id == own.lease.lease_id)
        if intact:
            try:
                intact = lease_from_json(own.full_key, kv.value) == dataclasses.replace(
                    own.lease, lease_id=None, ttl=None)
            except LeaseFormatError:
                intact = False
        if intact:
            if self.acquirer.quarantine.needs_keeping(own.lease):
                self.acquirer.quarantine.keep(own.lease, own.template)
            self.conn.last_error = None
            return
        log.warning("own lease %s vanished or changed in etcd; re-acquiring it", own.lease.key)
        lease, key = self.acquirer.take(own.config, own.template, own.lease.subnet, own.lease.ipv6_subnet,
                                        lease_id)
        now = self.clock()
        with self.lock:
            if self.own is not own:
                return
            self.own = Own(lease, key, own.config, own.template, now + (lease.ttl or 0), now)
            self.reacquisitions += 1
            self.conn.last_error = None
            callback = self.on_change
        log.info("re-acquired %s (etcd lease %s)", lease.key, lease.lease_id)
        self.acquirer.quarantine.keep(lease, own.template)
        if callback is not None and (lease.subnet, lease.ipv6_subnet) != (own.lease.subnet,
                                                                          own.lease.ipv6_subnet):
            callback(lease)
