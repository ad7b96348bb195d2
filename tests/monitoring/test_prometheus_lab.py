"""A real Prometheus (Debian's) in a lab scrapes every node; its HTTP API, reached from the root
namespace over the lab's Unix socket, has our series from every node and our alert rules."""
from __future__ import annotations

import os
import stat
import time

import pytest

from overlayd.lab.cluster import Lab

pytestmark = [pytest.mark.e2e, pytest.mark.kernel]


@pytest.fixture(scope="module")
def lab():
    lab = Lab(daemon_args=("--ip-masq",), prometheus=True)
    try:
        yield lab.up(2, 1)
    finally:
        pids = [lab.prometheus.pid, lab.prometheus.relay_pid] if lab.prometheus else []
        lab.down()
        assert not [p for p in pids if os.path.exists(f"/proc/{p}")], "Prometheus or its relay outlived the lab"


def _wait(query, predicate, client, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        result = client.query(query)
        if predicate(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def test_prometheus_scrapes_our_series_from_every_node(lab):
    client = lab.prometheus.client
    assert stat.S_ISSOCK(os.stat(lab.prometheus.socket).st_mode)
    nodes = {n.name for n in lab.nodes}

    def per_node(result):
        return {r["metric"]["node"]: float(r["value"][1]) for r in result}

    up = per_node(_wait('up{job="overlayd"}', lambda r: per_node(r) == {n: 1.0 for n in nodes}, client))
    assert up == {n: 1.0 for n in nodes}, client.targets()
    for query, want in (("overlayd_peers", len(nodes) - 1), ("overlayd_ready", 1), ("overlayd_lease_store_up", 1)):
        got = per_node(_wait(query, lambda r, w=want: per_node(r) == {n: w for n in nodes}, client))
        assert got == {n: float(want) for n in nodes}, query
    added = per_node(client.query('sum by (node) (overlayd_entries_added_total{kind="route"})'))
    assert added == {n: float(len(nodes) - 1) for n in nodes}, "each node added one route per peer"
    ttl = per_node(client.query("overlayd_lease_ttl_seconds"))
    assert set(ttl) == nodes and all(v > 3600 for v in ttl.values())


def test_prometheus_loaded_the_alert_rules_and_nothing_fires_in_a_healthy_lab(lab):
    groups = lab.prometheus.client.api("rules")["groups"]
    alerts = {r["name"]: r for g in groups for r in g["rules"] if r["type"] == "alerting"}
    assert {"OverlaydNodeNotReady", "OverlaydLeaseStoreUnreachable", "OverlaydEntriesDrifting",
            "OverlaydCNIErrorRate", "OverlaydSlowConvergence", "OverlaydPolicySyncFailing"} <= set(alerts)
    assert all(r["health"] == "ok" for r in alerts.values()), {n: r.get("lastError") for n, r in alerts.items()}
    assert lab.prometheus.client.query("ALERTS") == []
