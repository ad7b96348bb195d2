"""The daemon's Prometheus metrics, in a registry of their own (never prometheus_client's global one).

One Metrics object per daemon; the daemon loop updates it, /metrics (overlayd.health_server) renders it.
All names start with `overlayd_`; counters get prometheus_client's `_total` suffix on the wire.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

from .lazy_import import register_without_init

register_without_init("prometheus_client")     # the registry and metric types, not the exposition

from prometheus_client.metrics import Counter, Gauge, Histogram  # noqa: E402
from prometheus_client.registry import CollectorRegistry  # noqa: E402

ENTRY_KINDS = ("arp", "fdb", "route")
RECONCILE_RESULTS = ("ok", "error")
# Event-to-kernel latency: 1 ms .. 10 s (the goals are 20 ms p99 and 2 s convergence).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
# A reconcile of one peer takes ~1 ms, of 5,000 peers up to ~1 s; slow ones up to a minute.
RECONCILE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# A pod's ADD (bridge + host-local) takes ~20-60 ms; a DEL up to ~100 ms with veth teardown.
CNI_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    def __init__(self, registry: Optional[CollectorRegistry] = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._clock = clock
        self._lease_expiry: Optional[float] = None
        r = self.registry
        self.peers = Gauge("overlayd_peers", "Peer leases (other nodes) currently programmed.",
                           registry=r)
        self.lease_ttl = Gauge("overlayd_lease_ttl_seconds",
                               "Seconds left before this node's own subnet lease expires (0 when unknown).",
                               registry=r)
        self.lease_ttl.set_function(self._lease_ttl_left)
        self.reconcile_runs = Counter("overlayd_reconcile_runs", "Reconcile passes, by result.",
                                      ["result"], registry=r)
        self.reconcile_duration = Histogram("overlayd_reconcile_duration_seconds",
                                            "Time one reconcile pass took (dump, diff, apply).",
                                            buckets=RECONCILE_BUCKETS, registry=r)
        self.entries_added = Counter("overlayd_entries_added", "Kernel entries added or replaced, by kind.",
                                     ["kind"], registry=r)
        self.entries_removed = Counter("overlayd_entries_removed", "Kernel entries removed, by kind.",
                                       ["kind"], registry=r)
        self.netlink_errors = Counter("overlayd_netlink_errors", "Netlink requests that failed.",
                                      registry=r)
        self.watch_restarts = Counter("overlayd_watch_restarts",
                                      "Lease watches restarted (re-snapshot after compaction, re-list "
                                      "after 410, lost connection).", registry=r)
        self.event_to_kernel = Histogram("overlayd_event_to_kernel_seconds",
                                         "From a lease event reaching the daemon to its entries being "
                                         "in the kernel.", buckets=LATENCY_BUCKETS, registry=r)
        self.cni_requests = Counter("overlayd_cni_requests",
                                    "CNI ADD/DEL served by the CNI service, by command and result "
                                    "(ok, error, fallback to the Python plugin, lost front end).",
                                    ["command", "result"], registry=r)
        self.cni_duration = Histogram("overlayd_cni_request_seconds",
                                      "Time the CNI service spent on one ADD/DEL, delegate included.",
                                      ["command"], buckets=CNI_BUCKETS, registry=r)
        self.ready = Gauge("overlayd_ready", "1 while /readyz answers 200 (subnet file written, datapath "
                           "programmed, rules in place), else 0.", registry=r)
        self.lease_store_up = Gauge("overlayd_lease_store_up", "1 while the last lease-store request "
                                    "succeeded, 0 after a failed one.", registry=r)
        self.drift_repaired = Counter("overlayd_drift_repaired", "Kernel entries a periodic resync found "
                                      "missing or stale (the kernel had drifted from the leases), by kind.",
                                      ["kind"], registry=r)
        # Known label values appear at 0 from the first scrape, so rate() works from the start.
        for kind in ENTRY_KINDS:
            self.drift_repaired.labels(kind=kind)
            self.entries_added.labels(kind=kind)
            self.entries_removed.labels(kind=kind)
        for result in RECONCILE_RESULTS:
            self.reconcile_runs.labels(result=result)

    # -- small helpers the daemon loop calls ---------------------------------------------------
    def set_lease_expiry(self, expires_at: Optional[float]) -> None:
        """Wall-clock time (epoch seconds) the own lease expires; None when there is no lease."""
        self._lease_expiry = expires_at

    def _lease_ttl_left(self) -> float:
        if self._lease_expiry is None:
            return 0.0
        return max(0.0, self._lease_expiry - self._clock())

    def reconciled(self, duration: float, ok: bool = True) -> None:
        self.reconcile_runs.labels(result="ok" if ok else "error").inc()
        self.reconcile_duration.observe(duration)

    def added(self, kind: str, n: int = 1) -> None:
        self.entries_added.labels(kind=_kind(kind)).inc(n)

    def removed(self, kind: str, n: int = 1) -> None:
        self.entries_removed.labels(kind=_kind(kind)).inc(n)

    def drifted(self, counts: dict[str, int]) -> None:
        """What a periodic resync changed, as reconcile counts ({"add_neigh": 2, "del_route": 1, ...})."""
        for key, n in counts.items():
            kind = key.split("_", 1)[1]
            self.drift_repaired.labels(kind={"neigh": "arp"}.get(kind, kind)).inc(n)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        from prometheus_client.exposition import generate_latest
        return generate_latest(self.registry)


def _kind(kind: str) -> str:
    if kind not in ENTRY_KINDS:
        raise ValueError(f"entry kind {kind!r} must be one of {', '.join(ENTRY_KINDS)}")
    return kind
