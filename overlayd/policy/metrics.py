"""NetworkPolicy metrics, registered on the daemon's registry (overlayd.metrics.Metrics.registry).

Drop counters are the kernel's own (named nft counters, one per policy and direction), read at
scrape time. A full sync recreates the table and so zeroes them; the collector carries the
previous value over, so the exported counters only ever grow.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily

log = logging.getLogger(__name__)
SYNC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class _DropCollector:
    def __init__(self, read: Callable[[], dict], names: Callable[[], dict]):
        self._read, self._names = read, names
        self._lock = threading.Lock()
        self._last: dict = {}
        self._base: dict = {}

    def collect(self):
        fam = CounterMetricFamily("overlayd_policy_dropped_packets",
                                  "Packets dropped at this node's pods, by isolating policy and direction "
                                  "(a packet denied at a pod two policies isolate counts for both); "
                                  "policy=\"\" counts packets of local addresses whose pod is not compiled yet.",
                                  labels=["policy", "direction"])
        try:
            values = self._read()
        except Exception as err:
            log.debug("reading nft counters failed: %s", err)
            values = {}
        names = self._names()
        with self._lock:
            for name, packets in values.items():
                if packets < self._last.get(name, 0):          # the table was replaced: carry over
                    self._base[name] = self._base.get(name, 0) + self._last[name]
                self._last[name] = packets
            for name, (policy, direction) in sorted(names.items()):
                total = self._base.get(name, 0) + self._last.get(name, 0)
                fam.add_metric([policy, direction or "any"], total)
        yield fam


class PolicyMetrics:
    def __init__(self, registry, read_counters: Callable[[], dict] = dict,
                 counter_names: Callable[[], dict] = dict):
        r = registry
        self.policies = Gauge("overlayd_policy_policies", "NetworkPolicies selecting at least one pod on this "
                              "node (rendered into nftables).", registry=r)
        self.pods_selected = Gauge("overlayd_policy_local_pods_selected",
                                   "Pods on this node isolated by some policy (ingress or egress).", registry=r)
        self.local_pods = Gauge("overlayd_policy_local_pods", "Pods on this node the engine knows, with "
                                "addresses.", registry=r)
        self.elements = Gauge("overlayd_policy_set_elements", "Set and map elements programmed in our "
                              "nftables table.", registry=r)
        self.sync_duration = Histogram("overlayd_policy_sync_duration_seconds",
                                       "Compile and apply, by kind: full (whole table) or incremental.",
                                       ["kind"], buckets=SYNC_BUCKETS, registry=r)
        self.event_to_enforced = Histogram("overlayd_policy_event_to_enforced_seconds",
                                           "From a watch event reaching the daemon to its rules being in "
                                           "the kernel.", buckets=LATENCY_BUCKETS, registry=r)
        self.nft_failures = Counter("overlayd_policy_nft_failures", "nft transactions that failed (retried "
                                    "with backoff).", registry=r)
        self.conntrack_cut = Counter("overlayd_policy_conntrack_deleted", "Conntrack entries deleted because "
                                     "their connection is no longer allowed.", registry=r)
        self.bad_objects = Gauge("overlayd_policy_bad_objects", "API objects left out because they cannot be "
                                 "enforced (see the log and /readyz).", registry=r)
        self.watch_restarts = Counter("overlayd_policy_watch_restarts", "Pod/Namespace/NetworkPolicy watches "
                                      "restarted (error, or re-list after 410).", registry=r)
        for kind in ("full", "incremental"):
            self.sync_duration.labels(kind=kind)
        r.register(_DropCollector(read_counters, counter_names))

    def model_applied(self, stats) -> None:
        self.policies.set(stats.policies)
        self.pods_selected.set(stats.pods_selected)
        self.local_pods.set(stats.local_pods)
        self.elements.set(stats.elements)
