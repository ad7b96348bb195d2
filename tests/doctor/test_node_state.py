"""Doctor against the node's own state: lease store, lease TTL, subnet.env, device, kernel entries,
MTU chain, VXLAN reachability. Each case breaks exactly one thing on n1 (or, for reachability, on
the path to n2), asserts doctor names that check and no other, repairs it, and sees doctor clean.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from overlayd.lab.cluster import bin_dir
from overlayd.lab.netns import ip, run

from .conftest import clean, make_lab, only, text

pytestmark = [pytest.mark.e2e, pytest.mark.kernel]


@pytest.fixture(scope="module")
def lab():
    lab = make_lab()
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture
def n1(lab):
    """Node n1. Each case repairs what it broke; the next case's `only` shows every other check clean,
    and the module ends with a clean doctor run."""
    return lab.node("n1")


@pytest.fixture(scope="module", autouse=True)
def ends_clean(lab):
    yield
    clean(lab)


def _subnet_of(lab, name):
    return lab.subnets()[name].rsplit(".", 1)[0] + ".0/24"


def test_a_healthy_lab_is_clean_on_every_node_and_shows_its_evidence(lab):
    """`overlayd lab doctor --json`, as a user runs it."""
    proc = subprocess.run([os.path.join(bin_dir(), "overlayd"), "lab", "doctor", f"--name={lab.name}", "--json"],
                          capture_output=True, text=True, timeout=120)
    result = json.loads(proc.stdout)
    assert proc.returncode == 0 and result["exit_code"] == 0, proc.stdout + proc.stderr
    assert set(result["nodes"]) == {"n1", "n2"} and result["lab"] == lab.name
    for report in result["nodes"].values():
        checks = {c["check"]: c for c in report["checks"]}
        assert {c["severity"] for c in checks.values()} <= {"ok", "info"}
        assert checks["reachability"]["severity"] == "ok"
        assert "reply in" in json.dumps(checks["reachability"])
        assert checks["policy"]["findings"][0]["summary"].startswith("not enabled")
        assert all(f["evidence"] for c in checks.values() for f in c["findings"])


def test_doctor_takes_the_flags_of_the_running_daemon(lab):
    """--daemon-pid: what `kubectl exec ds/overlayd -- overlayd doctor --daemon-pid 1` does."""
    n2 = lab.node("n2")
    proc = run([os.path.join(bin_dir(), "overlayd"), "doctor", f"--daemon-pid={n2.pid}", "--json",
                f"--cni-conf-dir={n2.cni_conf_dir}", f"--cni-bin-dir={lab.cni_bin_dir}"], netns=n2.netns, check=False)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["exit_code"] == 0, proc.stdout + proc.stderr
    assert report["node"].endswith(f"({n2.underlay_ip})")
    checks = {c["check"]: c for c in report["checks"]}
    assert n2.subnet_file in json.dumps(checks["subnet-env"]) and checks["daemon"]["severity"] == "ok"


def test_subnet_env_that_disagrees_with_the_lease(lab, n1):
    with open(n1.subnet_file) as f:
        original = f.read()
    try:
        with open(n1.subnet_file, "w") as f:
            f.write(original.replace("FLANNEL_SUBNET=", "FLANNEL_SUBNET=10.244.250.1/24\n#"))
        found = only(lab, "subnet-env", severity="error")
        assert "FLANNEL_SUBNET=10.244.250.1/24 (want" in text(found)
    finally:
        with open(n1.subnet_file, "w") as f:
            f.write(original)


def test_device_mac_that_differs_from_the_lease(lab, n1):
    """The MAC peers know (the lease's VtepMAC) is not the device's: peers' frames are dropped.

    The kernel also flushes the device's ARP entries when its MAC changes; doctor lists that drift
    under entries as following from the device problem, so the one failing check is the cause.
    """
    mac = json.loads(ip("-j", "link", "show", "flannel.1", netns=n1.netns).stdout)[0]["address"]
    neighs = json.loads(ip("-j", "neigh", "show", "dev", "flannel.1", netns=n1.netns).stdout)
    ip("link", "set", "flannel.1", "address", "02:00:00:00:0d:0c", netns=n1.netns)
    try:
        found = only(lab, "device", severity="error")
        assert f"MAC 02:00:00:00:0d:0c, but the lease (what peers use) says {mac}" in text(found)
        report = found.report
        assert {f.severity for f in report.by_check()["entries"]} == {"info"}
        assert "following from the device problem" in report.by_check()["entries"][0].summary
    finally:
        ip("link", "set", "flannel.1", "address", mac, netns=n1.netns)
        for n in neighs:
            ip("neigh", "replace", n["dst"], "lladdr", n["lladdr"], "dev", "flannel.1", "nud", "permanent",
               netns=n1.netns)


def test_a_missing_route_to_a_peer(lab, n1):
    peer = _subnet_of(lab, "n2")
    gw = peer.split("/")[0]
    ip("route", "del", peer, netns=n1.netns)
    try:
        found = only(lab, "entries", severity="error")
        assert f"missing route {peer} via {gw}" in text(found)
        assert "1 kernel entry drift" in found[0].summary
    finally:
        ip("route", "replace", peer, "via", gw, "dev", "flannel.1", "onlink", "proto", "115", netns=n1.netns)


def test_a_stale_fdb_entry_no_lease_explains(lab, n1):
    run(["bridge", "fdb", "append", "02:00:00:00:00:99", "dev", "flannel.1", "dst", "198.18.0.99", "self",
         "permanent"], netns=n1.netns)
    try:
        found = only(lab, "entries", severity="error")
        assert "stale FDB 02:00:00:00:00:99 dst 198.18.0.99" in text(found)
    finally:
        run(["bridge", "fdb", "del", "02:00:00:00:00:99", "dev", "flannel.1", "dst", "198.18.0.99", "self"],
            netns=n1.netns)


def test_a_bridge_mtu_that_breaks_the_chain(lab, n1):
    ip("link", "set", "cni0", "mtu", "1400", netns=n1.netns)
    try:
        found = only(lab, "mtu", severity="error")
        assert "cni0 is 1400, want 1450 (underlay 1500 - 50)" in found[0].summary
    finally:
        ip("link", "set", "cni0", "mtu", "1450", netns=n1.netns)


def test_vxlan_udp_dropped_on_the_way_to_a_peer(lab, n1):
    """A firewall on n2 drops UDP 8472 from n1: n1's routes exist, but the probe gets no answer."""
    n2 = lab.node("n2")
    table = "doctortest"
    run(["nft", "-f", "-"], netns=n2.netns, input=(
        f"table inet {table} {{\n chain input {{\n type filter hook input priority -10;\n"
        f" ip saddr {n1.underlay_ip} udp dport 8472 drop\n }}\n}}\n"))
    try:
        found = only(lab, "reachability", severity="error")
        assert f"1 of 1 peers do not answer over VXLAN: {n2.underlay_ip}" in found[0].summary
        assert "no reply" in text(found)
    finally:
        run(["nft", "delete", "table", "inet", table], netns=n2.netns)


def test_lease_store_unreachable(lab, n1):
    lab.etcd.stop()
    try:
        found = only(lab, "lease-store", severity="error")
        assert "cannot be reached" in found[0].summary
        assert "etcd http://192.0.2.254:2379" in text(found)
    finally:
        lab.etcd.start()


def test_own_lease_that_is_not_being_renewed(lab, n1):
    """The node's key moved to a short etcd lease the daemon does not keep alive."""
    etcd = lab.etcd
    key = next(k for k in etcd.etcdctl("get", "--prefix", "/coreos.com/network/subnets", "--keys-only")
               .stdout.split() if lab.subnets()["n1"].rsplit(".", 1)[0] + ".0-24" in k)
    doc = json.loads(etcd.etcdctl("get", key, "-w", "json").stdout)["kvs"][0]
    value = etcd.etcdctl("get", key, "--print-value-only").stdout.strip()
    short = etcd.etcdctl("lease", "grant", "600").stdout.split()[1]
    etcd.etcdctl("put", key, value, f"--lease={short}")
    try:
        found = only(lab, "lease-ttl", severity="warning")
        assert "renewals are failing" in found[0].summary
    finally:
        etcd.etcdctl("put", key, value, f"--lease={doc['lease']:x}")
        etcd.etcdctl("lease", "revoke", short)
