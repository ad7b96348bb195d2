"""Issue 11: overlayd and the real flanneld in one cluster (etcd mode), and in-place migration
between them. Each test brings up its own namespaced cluster: real etcd, real flanneld, real
overlayd, real pods and packets."""
import re
import signal
import subprocess
import time

import pytest

from tests.e2e.conftest import wait_until

from .kernel_view import device, expected_entries, kernel_entries, leases

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


def _pinger(src, dst_ip, count):
    return subprocess.Popen(["ip", "netns", "exec", src.netns, "ping", "-c", str(count), "-i", "0.02", "-W", "1",
                             "-q", dst_ip], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


# The line each daemon logs once it holds its lease (flanneld: after writing the subnet file).
READY = {"overlayd": "leased ", "flanneld": "flannel is ready"}


def _log_count(node, daemon):
    try:
        with open(node.log_file) as f:
            return f.read().count(READY[daemon])
    except FileNotFoundError:
        return 0


def _switch(lab, node, daemon):
    """Stop the node's daemon and start the other kind on the same node, files and device; return
    once the new daemon holds its lease and runs."""
    lab.stop_daemon(node, signal.SIGTERM)
    lab.set_daemon(node, daemon)
    before = _log_count(node, daemon)
    lab.start_daemon(node)
    assert wait_until(lambda: _log_count(node, daemon) > before or not lab.daemon_alive(node), 30)
    assert lab.daemon_alive(node), open(node.log_file).read()[-2000:]


def test_in_place_migration_flanneld_to_overlayd_and_back_loses_no_packet(mixed_lab):
    lab = mixed_lab(2, 1, flanneld_nodes=("n1",))
    n1, n2 = lab.nodes
    a, b = (next(p for p in lab.pods if p.node == n.name) for n in (n1, n2))
    assert wait_until(lambda: expected_entries(lab, n1) <= kernel_entries(n1)
                      and expected_entries(lab, n2) <= kernel_entries(n2), 20)
    assert lab.ping(a, b.ip) and lab.ping(b, a.ip)
    first = (lab.subnets(), device(n1), leases(lab), kernel_entries(n1))
    count = 1000     # 50 pps for 20 s, both ways: covers both switches with room to spare
    pings = [_pinger(a, b.ip, count), _pinger(b, a.ip, count)]
    try:
        time.sleep(1)
        seen = []
        for daemon in ("overlayd", "flanneld"):
            _switch(lab, n1, daemon)
            assert wait_until(lambda: expected_entries(lab, n1) <= kernel_entries(n1), 10)
            seen.append((daemon, lab.subnets(), device(n1), leases(lab)))
            time.sleep(1)       # let packets flow through the new daemon's node
        assert all(p.poll() is None for p in pings), "the switches took longer than the ping ran: widen count"
        outs = [p.communicate(timeout=60)[0] for p in pings]
    finally:
        for p in pings:
            if p.poll() is None:
                p.kill()
    for out in outs:
        sent, got = map(int, re.search(r"(\d+) packets transmitted, (\d+) received", out).groups())
        assert sent == count and got == sent, out
    for daemon, subnets, dev, lease_values in seen:     # same subnet, same device (ifindex + MAC), same lease
        assert (subnets, dev, lease_values) == first[:3], daemon
    assert kernel_entries(n1) == first[3]
    assert "flannel is ready" in open(n1.log_file).read()       # flanneld, not overlayd, ends on n1
