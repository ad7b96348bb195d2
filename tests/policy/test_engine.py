"""The engine's loop against a real kernel: triggers become rules, failures are retried and named."""
from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry

from overlayd.lab.netns import add_netns, unique_token
from overlayd.masquerade import CommandRunner
from overlayd.policy.apply import Applier
from overlayd.policy.cache import PolicyCache
from overlayd.policy.engine import PolicyEngine, PolicySettings
from overlayd.policy.metrics import PolicyMetrics

from .objects import namespace, pod, policy

pytestmark = pytest.mark.kernel


def wait_for(cond, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def make_engine(netns, registry):
    cache = PolicyCache()
    applier = Applier(CommandRunner(prefix=("ip", "netns", "exec", netns)))
    metrics = PolicyMetrics(registry, read_counters=applier.counters,
                            counter_names=lambda: dict(applier.model.counter_of) if applier.model else {})
    engine = PolicyEngine(PolicySettings("n1", resync=3600), cache, applier, metrics=metrics,
                          pod_cidrs=lambda: ("10.244.1.0/24",), node_addresses=lambda: ("192.0.2.1",))
    return cache, applier, engine


def sample(registry, name, **labels):
    return registry.get_sample_value(name, labels) or 0


def test_engine_follows_the_cache_and_retries_failed_transactions(cleanup):
    netns = f"ovt-{unique_token()}-eng"        # created only later: nft fails until then
    registry = CollectorRegistry()
    cache, applier, engine = make_engine(netns, registry)
    engine.start()
    cleanup.push("engine", engine.close)
    assert not engine.status().ok and "not listed yet" in engine.status().reason
    cache.replace("namespaces", [namespace("x")])
    cache.replace("pods", [pod("x", "a", "10.244.1.2", labels={"app": "web"})])
    cache.replace("networkpolicies", [policy("x", "deny", {}, ingress=[])])
    engine.kick()
    wait_for(lambda: sample(registry, "overlayd_policy_nft_failures_total") >= 1, what="a failed nft transaction")
    status = engine.status()
    assert not status.ok and "nft" in status.reason
    add_netns(netns, cleanup)                  # the kernel comes back: the retry succeeds
    wait_for(lambda: engine.status().ok, what="the engine to recover")
    assert applier.present() and dict(applier.model.maps["in4"].elements)["10.244.1.2"].startswith("jump in-")
    assert sample(registry, "overlayd_policy_policies") == 1
    assert sample(registry, "overlayd_policy_event_to_enforced_seconds_count") >= 1
    # a new pod: incremental, and it is in the kernel
    cache.apply("pods", "ADDED", pod("x", "b", "10.244.1.3", labels={"app": "web"}))
    engine.kick()
    wait_for(lambda: applier.model is not None and "10.244.1.3" in applier.model.sets["known4"].elements,
             what="the new pod's entries")
    assert sample(registry, "overlayd_policy_sync_duration_seconds_count", kind="incremental") >= 1
    listing = applier._runner.run(["nft", "list", "set", "inet", applier.table, "known4"]).stdout
    assert "10.244.1.3" in listing
    # a bad object is named but does not make the engine unready
    cache.apply("networkpolicies", "ADDED", {"metadata": {"namespace": "x", "name": "bad"},
                                             "spec": {"podSelector": {}, "policyTypes": ["Sideways"]}})
    engine.kick()
    wait_for(lambda: engine.status().warnings, what="the bad policy to be named")
    assert engine.status().ok and "Sideways" in engine.status().warnings[0]
    # drop counters, per policy and direction, from the kernel
    assert registry.get_sample_value("overlayd_policy_dropped_packets_total",
                                     {"policy": "x/deny", "direction": "ingress"}) == 0


def test_a_pod_the_cni_just_wired_is_compiled_before_its_status_arrives(make_netns, cleanup):
    netns = make_netns("eng")
    registry = CollectorRegistry()
    cache, applier, engine = make_engine(netns, registry)
    old = pod("x", "old", "10.244.1.7", labels={"app": "db"})            # deleted, but the API still lists it
    new = pod("x", "new", [], labels={"app": "web"})                      # scheduled; no status.podIPs yet
    cache.replace("namespaces", [namespace("x")])
    cache.replace("pods", [old, new])
    cache.replace("networkpolicies", [policy("x", "web", {"matchLabels": {"app": "web"}}, ingress=[])])
    engine.start()
    cleanup.push("engine", engine.close)
    wait_for(lambda: engine.status().ok, what="the first sync")
    assert "10.244.1.7" in applier.model.sets["known4"].elements
    assert engine.pod_wired("x", "new", ["10.244.1.7"], wait=10)       # the address was reused
    in4 = dict(applier.model.maps["in4"].elements)
    assert in4["10.244.1.7"] == f"jump {next(c for c in applier.model.chains if c.startswith('in-'))}"
    assert "10.244.1.7" in applier.model.sets["known4"].elements
    listing = applier._runner.run(["nft", "list", "map", "inet", applier.table, "in4"]).stdout
    assert "10.244.1.7" in listing                                     # isolated from the first packet
