"""Issue 2 end to end: 3 namespaced nodes, a real etcd, real pods through the CNI plugin."""
import base64
import json
import subprocess
import sys

import pytest

from overlayd.lab.netns import ip, run

from .conftest import assert_lab_gone, wait_until

pytestmark = pytest.mark.e2e

def test_every_pod_pings_every_other_pod_across_nodes(make_lab):
    lab = make_lab(3, 2)
    result = lab.check()
    assert result["converged"]
    cross = [r for r in result["pairs"] if r["cross_node"]]
    assert len(result["pairs"]) == 30 and len(cross) == 24
    assert all(r["ok"] for r in result["pairs"]), [r for r in result["pairs"] if not r["ok"]]

def test_etcd_holds_one_flannel_lease_per_node(make_lab):
    lab = make_lab(3, 0)
    out = lab.etcd.etcdctl("get", "--prefix", "/coreos.com/network/subnets", "-w", "json").stdout
    kvs = json.loads(out)["kvs"]
    assert len(kvs) == 3
    values = [json.loads(base64.b64decode(kv["value"])) for kv in kvs]
    assert sorted(v["PublicIP"] for v in values) == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    for v in values:
        assert v["BackendType"] == "vxlan" and v["BackendData"]["VNI"] == 1
        assert len(v["BackendData"]["VtepMAC"].split(":")) == 6
    assert all(kv.get("lease") for kv in kvs)
    # One etcd lease per node for its subnet, one for its quarantine hold (docs/configuration.md).
    assert lab.etcd.etcdctl("lease", "list").stdout.startswith("found 6 leases")
    held = lab.etcd.etcdctl("get", "--prefix", "/coreos.com/network/quarantine/", "--keys-only").stdout.split()
    assert sorted(k.rsplit("/", 1)[1] for k in held) == sorted(base64.b64decode(kv["key"]).decode().rsplit("/", 1)[1]
                                                               for kv in kvs)
    # each node's subnet file names its own lease's subnet, flannel's variables
    for node in lab.nodes:
        env = dict(line.split("=", 1) for line in open(node.subnet_file).read().split())
        assert env["FLANNEL_NETWORK"] == "10.244.0.0/16"
        assert env["FLANNEL_SUBNET"].endswith(".1/24") and env["FLANNEL_MTU"] == "1450"
        assert env["FLANNEL_IPMASQ"] == "false"

def test_a_deleted_lease_takes_the_peer_off_every_other_node(make_lab):
    lab = make_lab(3, 1)
    assert lab.wait_converged(30)
    gone = lab.node("n3")
    subnet = lab.subnets()["n3"].replace(".1/24", ".0")
    lab.stop_daemon(gone)   # SIGTERM: the datapath and the lease stay; nobody re-acquires
    lab.etcd.etcdctl("del", f"/coreos.com/network/subnets/{subnet}-24")

    def dropped(node):
        routes = ip("route", netns=node.netns).stdout
        neighs = ip("neigh", "show", "dev", "flannel.1", netns=node.netns).stdout
        fdb = run(["bridge", "fdb", "show", "dev", "flannel.1"], netns=node.netns).stdout
        return f"{subnet}/24" not in routes and subnet not in neighs and "192.0.2.3" not in fdb

    for node in lab.nodes[:2]:
        assert wait_until(lambda: dropped(node), 15), ip("route", netns=node.netns).stdout
    # the remaining two still talk
    p1, p2 = (next(p for p in lab.pods if p.node == n) for n in ("n1", "n2"))
    assert lab.ping(p1, p2.ip)

def test_lab_cli_up_status_check_down_leaves_nothing(tmp_path):
    exe = [sys.executable, "-m", "overlayd.cli", "lab"]
    up = subprocess.run(exe + ["up", "--nodes", "2", "--pods-per-node", "1"], capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    name = up.stdout.strip()
    try:
        status = json.loads(subprocess.run(exe + ["status", "--name", name, "--json"], capture_output=True,
                                           text=True, timeout=30, check=True).stdout)
        assert [n["daemon_alive"] for n in status["nodes"]] == [True, True]
        check = subprocess.run(exe + ["check", "--name", name, "--json"], capture_output=True, text=True, timeout=120)
        assert check.returncode == 0, check.stdout + check.stderr
        pairs = json.loads(check.stdout)["pairs"]
        assert {(p["src"], p["dst"], p["ok"]) for p in pairs} == {("n1p1", "n2p1", True), ("n2p1", "n1p1", True)}
    finally:
        down = subprocess.run(exe + ["down", "--name", name], capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    assert_lab_gone(name, (f"{name}-sw", f"{name}-n1", f"{name}-n2", f"{name}-n1p1"),
                    [n["daemon_pid"] for n in status["nodes"]])
