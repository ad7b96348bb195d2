"""The child of bench (a): one node's full NetworkPolicy sync at cluster scale, as the daemon does it.

Run inside a network namespace of its own (bench_netpol starts it with `ip netns exec`): it feeds
the engine's cache the workload's Namespaces, Pods and NetworkPolicies as the watcher's lists would,
then runs PolicyEngine.sync(full=True) (compile + one nft transaction), a second full sync (the
periodic resync) and an incremental one after one pod's labels change. Prints one JSON line of
phase timings; the parent measures the wall time and peak RSS from outside.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time

from overlayd.policy.apply import Applier
from overlayd.policy.cache import PolicyCache
from overlayd.policy.engine import PolicyEngine, PolicySettings

from . import netpol_workload as w


def main() -> int:
    cache = PolicyCache()
    engine = PolicyEngine(PolicySettings(node_name=w.NODE), cache, Applier(),
                          pod_cidrs=lambda: (w.NODE_CIDR,), node_addresses=lambda: (w.NODE_ADDRESS,))
    t0 = time.monotonic()
    items = w.namespaces()
    cache.replace("namespaces", items)
    items = w.pods()
    cache.replace("pods", items)
    pod0 = items[0]
    items = w.policies()
    cache.replace("networkpolicies", items)
    del items
    t1 = time.monotonic()
    assert engine.sync(full=True), engine.last_error
    t2 = time.monotonic()
    assert engine.sync(full=True), engine.last_error
    t3 = time.monotonic()
    pod0 = json.loads(json.dumps(pod0))
    pod0["metadata"]["labels"]["app"] = "app-19"
    cache.apply("pods", "MODIFIED", pod0)
    assert engine.sync(full=False), engine.last_error
    t4 = time.monotonic()
    stats = engine.applier.model.stats
    print(json.dumps({"cache_fill_s": t1 - t0, "first_full_sync_s": t2 - t1, "resync_s": t3 - t2,
                      "incremental_s": t4 - t3, "stats": dataclasses.asdict(stats)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
