"""Issue 11 in kube mode: overlayd and the real flanneld in one cluster on the lab's real
kube-apiserver (--kube-subnet-mgr with a ServiceAccount kubeconfig each), sharing the Node
annotations both write under flannel.alpha.coreos.com/; then flanneld -> overlayd -> flanneld in
place on that node, under ping."""
import time

import pytest

from tests.e2e.conftest import wait_until

from .kernel_view import device, expected_from_nodes, kernel_entries
from .migration import PingStream, switch_daemon

pytest.importorskip("overlayd.lab.control_plane",
                    reason="needs the lab's real kube-apiserver (overlayd.lab.control_plane, the lead's kube work)")
pytestmark = pytest.mark.e2e


def test_kube_mode_mixed_cluster_and_in_place_migration(mixed_lab):
    lab = mixed_lab(2, 1, kube=True, flanneld_nodes=("n2",))     # the control plane's start-up dominates: 2 nodes
    n1, n2 = lab.nodes
    assert [n.daemon for n in lab.nodes] == ["overlayd", "flanneld"]
    for node in lab.nodes:
        assert wait_until(lambda: expected_from_nodes(lab, node) <= kernel_entries(node), 30), \
            (node.name, node.daemon, expected_from_nodes(lab, node) - kernel_entries(node),
             open(node.log_file).read()[-2000:])
    result = lab.check()
    assert result["ok"], [p for p in result["pairs"] if not p["ok"]]

    a, b = (next(p for p in lab.pods if p.node == n.name) for n in (n1, n2))
    first = (lab.subnets(), device(n2), kernel_entries(n1))
    pings = [PingStream(a, b.ip), PingStream(b, a.ip)]     # 50 pps both ways, across both switches
    try:
        time.sleep(1)
        for daemon in ("overlayd", "flanneld"):
            switch_daemon(lab, n2, daemon)
            assert (lab.subnets(), device(n2)) == first[:2], daemon       # same podCIDR, device, MAC
            assert wait_until(lambda: expected_from_nodes(lab, n2) <= kernel_entries(n2), 10), daemon
            time.sleep(1)
    finally:
        totals = [p.stop() for p in pings]
    assert all(sent >= 150 and got == sent for sent, got in totals), (totals, [p.outputs for p in pings])
    assert kernel_entries(n1) == first[2]        # n1 (overlayd) saw no change of n2 at all
