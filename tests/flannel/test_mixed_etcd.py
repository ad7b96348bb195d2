"""Issue 11: overlayd and the real flanneld in one cluster (etcd mode), and in-place migration
between them. Each test brings up its own namespaced cluster: real etcd, real flanneld, real
overlayd, real pods and packets."""
import time

import pytest

from tests.e2e.conftest import wait_until

from .kernel_view import device, expected_entries, kernel_entries, leases
from .migration import PingStream, switch_daemon

pytestmark = pytest.mark.e2e


def test_every_pod_reaches_every_pod_and_each_side_programs_the_others_leases(mixed_lab):
    lab = mixed_lab(4, 1, flanneld_nodes=("n2", "n4"))
    assert {n.name: n.daemon for n in lab.nodes} == {"n1": "overlayd", "n2": "flanneld",
                                                     "n3": "overlayd", "n4": "flanneld"}
    assert len(leases(lab)) == 4
    for node in lab.nodes:      # overlayd programs flanneld's leases, flanneld programs overlayd's
        assert wait_until(lambda: expected_entries(lab, node) <= kernel_entries(node), 20), \
            (node.name, node.daemon, expected_entries(lab, node) - kernel_entries(node))
    result = lab.check()
    assert result["ok"], [p for p in result["pairs"] if not p["ok"]]
    assert sum(p["cross_node"] for p in result["pairs"]) == 12


def test_in_place_migration_flanneld_to_overlayd_and_back_loses_no_packet(mixed_lab):
    lab = mixed_lab(2, 1, flanneld_nodes=("n1",))
    n1, n2 = lab.nodes
    a, b = (next(p for p in lab.pods if p.node == n.name) for n in (n1, n2))
    assert wait_until(lambda: expected_entries(lab, n1) <= kernel_entries(n1)
                      and expected_entries(lab, n2) <= kernel_entries(n2), 20)
    assert lab.ping(a, b.ip) and lab.ping(b, a.ip)
    first = (lab.subnets(), device(n1), leases(lab), kernel_entries(n1))
    pings = [PingStream(a, b.ip), PingStream(b, a.ip)]     # 50 pps both ways, across both switches
    try:
        time.sleep(1)
        seen = []
        for daemon in ("overlayd", "flanneld"):
            switch_daemon(lab, n1, daemon)
            assert wait_until(lambda: expected_entries(lab, n1) <= kernel_entries(n1), 10)
            seen.append((daemon, lab.subnets(), device(n1), leases(lab)))
            time.sleep(1)       # let packets flow through the new daemon's node
    finally:
        totals = [p.stop() for p in pings]
    assert all(sent >= 150 and got == sent for sent, got in totals), (totals, [p.outputs for p in pings])
    for daemon, subnets, dev, lease_values in seen:     # same subnet, same device (ifindex + MAC), same lease
        assert (subnets, dev, lease_values) == first[:3], daemon
    assert kernel_entries(n1) == first[3]
    assert "flannel is ready" in open(n1.log_file).read()       # flanneld, not overlayd, ends on n1
