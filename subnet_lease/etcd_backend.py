"""Subnet leases in etcd v3, in flannel's layout.

    <prefix>/config                     net-conf.json
    <prefix>/subnets/10.244.3.0-24      {"PublicIP":..,"BackendType":"vxlan","BackendData":{..}}
    <prefix>/quarantine/10.244.3.0-24   {"PublicIP":..}  a hold outliving the lease (etcd_quarantine)

A node's key is attached to one etcd lease (TTL 24 h by default) whose ID stays stable; keys
without an etcd lease are reservations. This module is the LeaseBackend; the parts live in
etcd_client (settings, the connection, which errors are retryable), etcd_reads (full reads),
etcd_acquire (the create-if-absent transaction), etcd_keeper (keep-alives, re-acquiring) and
etcd_watch (snapshot then watch, re-snapshot after compaction).
"""
from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from typing import Callable, Iterator, Optional

from .allocator import find_own
from .backend import BackendUnavailable, LeaseError, LeaseHealth
from .config import ConfigError, NetConfig, parse_net_config
from .etcd_acquire import Acquirer
from .etcd_client import (DEFAULT_ENDPOINTS, EtcdConnection, EtcdSettings, parse_endpoint,  # noqa: F401
                          split_endpoints)
from .etcd_keeper import Keeper, Own
from .etcd_reads import LeaseReads
from .etcd_watch import watch_prefix
from .lease import Lease, LeaseEvent

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_ENDPOINTS", "EtcdLeaseBackend", "EtcdSettings", "parse_endpoint", "split_endpoints"]


class EtcdLeaseBackend:
    """connection: the EtcdConnection to use (a test may pass one that wraps `call`)."""

    def __init__(self, settings: EtcdSettings, *, rng: Optional[random.Random] = None,
                 clock: Callable[[], float] = time.monotonic,
                 connection: Optional[EtcdConnection] = None) -> None:
        self.settings = settings
        self._rng = rng or random.Random()
        self.conn = connection or EtcdConnection(settings)
        self.reads = LeaseReads(self.conn, settings)
        self._acquirer = Acquirer(self.conn, self.reads, settings, self._rng)
        self._keeper = Keeper(self.conn, self._acquirer, settings, self._rng, clock)
        self._clock = clock
        self._watch_restarts = 0
        self._snap_cache: Optional[tuple[int, dict[str, Lease]]] = None

    # ---- reading ------------------------------------------------------------------------

    def reconnect(self) -> None:
        """Open a fresh connection on the next call (e.g. the node's own address just changed)."""
        self.conn.drop()

    def get_network_config(self) -> NetConfig:
        key = self.settings.config_key
        kv = self.conn.call("get config", lambda c: c.get(key))
        if kv is None:
            raise ConfigError(f"no network config at {key}: write one, e.g. etcdctl put {key} "
                              f"'{{\"Network\":\"10.244.0.0/16\",\"Backend\":{{\"Type\":\"vxlan\"}}}}'")
        try:
            return parse_net_config(kv.value)
        except ConfigError as err:
            raise ConfigError(f"{key}: {err}") from None

    def snapshot(self, *, reuse_start_read: bool = False) -> tuple[list[Lease], int]:
        handed = self.reads.take_handed("snapshot")
        leases, _, _, revision = (handed if reuse_start_read else None) or self.reads.read_all()
        self._snap_cache = (revision, leases)
        return list(leases.values()), revision

    def prefetch(self) -> None:
        """Start-up: read the leases now (while the daemon still imports and makes its device);
        find_own_lease takes this read if it is recent, so the start-up still reads once."""
        self.reads.hand_on(self.reads.read_all(), to="find_own_lease")

    def find_own_lease(self, public_ip) -> Optional[Lease]:
        read = self.reads.take_handed("find_own_lease") or self.reads.read_all()
        self.reads.hand_on(read, to="acquire")
        return find_own(read[0].values(), public_ip)

    def leases_with_ttl(self) -> tuple[list[Lease], int]:
        """Every lease with the seconds left on its etcd lease (for `overlayd leases`)."""
        leases, _, revision = self.reads.read()
        ttls: dict[int, int] = {}
        for lease_id in {lease.lease_id for lease in leases.values() if lease.lease_id}:
            ttls[lease_id] = self.conn.call("lease timetolive", lambda c: c.time_to_live(lease_id))
        return [dataclasses.replace(lease, ttl=ttls.get(lease.lease_id)) if lease.lease_id else lease
                for lease in leases.values()], revision

    # ---- acquiring and keeping ------------------------------------------------------------

    def acquire(self, config: NetConfig, template: Lease, previous_subnet=None, *,
                previous_ipv6_subnet=None,
                on_change: Optional[Callable[[Lease], None]] = None) -> Lease:
        if template.public_ip is None and template.public_ipv6 is None:
            raise LeaseError("the lease template needs the node's public IP")
        k = self._keeper
        with k.lock:
            # Acquiring again (e.g. the node's address changed): the keeper pauses while we
            # rewrite our key, so it cannot "repair" it back to the old value meanwhile.
            held, k.own = k.own, None
        try:
            lease, key = self._acquirer.take(config, template, previous_subnet, previous_ipv6_subnet,
                                             held.lease.lease_id if held is not None else None)
        except BaseException:
            with k.lock:
                if k.own is None:
                    k.own = held
            raise
        now = self._clock()
        with k.lock:
            k.own = Own(lease, key, config, template, now + (lease.ttl or 0), now)
            k.on_change = on_change
            self.conn.last_error = None
        log.info("acquired %s (etcd lease %s)", lease.key, lease.lease_id or "none: reservation")
        try:
            self._acquirer.quarantine.keep(lease, template)
        except BackendUnavailable as err:     # the keeper tries again at its next check
            log.warning("could not hold %s in quarantine yet: %s", lease.key, err)
        k.start()
        return lease

    def own_lease(self) -> Optional[Lease]:
        with self._keeper.lock:
            return self._keeper.own.lease if self._keeper.own else None

    def health(self) -> LeaseHealth:
        k = self._keeper
        with k.lock:
            own = k.own
            if own is None:
                return LeaseHealth(acquired=False, last_error=self.conn.last_error,
                                   watch_restarts=self._watch_restarts)
            ttl_left = None
            if own.lease.lease_id:
                ttl_left = max(0.0, own.expires_at - self._clock())
            return LeaseHealth(acquired=True, subnet=own.lease.subnet,
                               ipv6_subnet=own.lease.ipv6_subnet, lease_id=own.lease.lease_id,
                               ttl_left=ttl_left, renewals=k.renewals,
                               reacquisitions=k.reacquisitions, last_error=self.conn.last_error,
                               watch_restarts=self._watch_restarts)

    # ---- watching ------------------------------------------------------------------------

    def watch(self, from_revision: int, stop: threading.Event) -> Iterator[list[LeaseEvent]]:
        """Changes after `from_revision` (snapshot()'s revision), in batches, until `stop` is set."""
        return watch_prefix(self.conn, self.reads, self.settings, from_revision, stop,
                            snap_cache=self._snap_cache, rng=self._rng, count_restart=self._count_restart)

    def _count_restart(self) -> None:
        with self._keeper.lock:
            self._watch_restarts += 1

    # ---- end -----------------------------------------------------------------------------

    def close(self) -> None:
        self._keeper.stop()
        self.conn.close()
