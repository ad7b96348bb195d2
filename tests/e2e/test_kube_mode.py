"""Kube mode end to end: real overlayd processes with --kube-subnet-mgr, real pods, a real
control plane.

Each test brings up its own namespaced lab with `kube=True`: etcd, kube-apiserver (TLS, Node,RBAC)
and kube-controller-manager (node IPAM) run in the switch namespace (192.0.2.254:6443); the lab
registers a Node per node as a kubelet would, kube-controller-manager gives it its podCIDR, and
each daemon gets NODE_NAME, --kubeconfig-file (a token of the manifest's ServiceAccount) and
--net-config-path as the DaemonSet gives them. The tests change Nodes through the API as kubectl
would. Convergence bounds are generous: the machine is a loaded 2-core VM.
"""
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys

import pytest

from overlayd.lab.cluster import STATE_DIR, bin_dir
from overlayd.lab.kube_bins import bin_dir as kube_bin_dir, release as kube_release
from overlayd.lab.netns import ip, run
from overlayd.subnet_file import read_subnet_file

from .conftest import assert_lab_gone, wait_until

pytestmark = pytest.mark.e2e
P = "flannel.alpha.coreos.com"
HEALTH = ("--healthz-ip=127.0.0.1", "--healthz-port=8471")


def device_mac(node, dev="flannel.1"):
    return re.search(r"link/ether (\S+)", ip("link", "show", dev, netns=node.netns).stdout).group(1)


def annotations(lab, node):
    return lab.api.node(node.name)["metadata"].get("annotations") or {}


def readyz(node):
    """(status, body) of the node's /readyz, fetched from inside its namespace (0 if not answering)."""
    proc = run(["/usr/bin/python3", "-c", "import urllib.request,urllib.error\n"
                "try: r=urllib.request.urlopen('http://127.0.0.1:8471/readyz',timeout=5); print(r.status); print(r.read().decode())\n"
                "except urllib.error.HTTPError as e: print(e.code); print(e.read().decode())\n"
                "except OSError as e: print(0); print(e)"], netns=node.netns, check=False)
    status, _, body = proc.stdout.partition("\n")
    return int(status or 0), body.strip()


def programmed(node, subnet, peer_ip):
    """Which of route, ARP/ND, FDB the node has for a peer's subnet (its first address is the peer's
    VTEP address), on flannel.1 or flannel-v6.1 by the subnet's family."""
    net = ipaddress.ip_network(subnet)
    vtep, dev = str(net.network_address), "flannel.1" if net.version == 4 else "flannel-v6.1"
    routes = ip(f"-{net.version}", "route", "show", netns=node.netns).stdout
    neighs = ip("neigh", "show", "dev", dev, netns=node.netns).stdout
    fdb = run(["bridge", "fdb", "show", "dev", dev], netns=node.netns).stdout
    return {"route": f"{subnet} via {vtep} dev {dev}" in routes,
            "arp": re.search(rf"^{re.escape(vtep)} ", neighs, re.M) is not None,
            "fdb": f"dst {peer_ip} " in fdb}


def pod_on(lab, node_name):
    return next(p for p in lab.pods if p.node == node_name)


def test_pods_ping_across_nodes_and_each_node_carries_flannels_annotations(make_lab):
    lab = make_lab(3, 1, kube=True)
    result = lab.check()
    assert result["converged"]
    assert len(result["pairs"]) == 6 and all(r["cross_node"] for r in result["pairs"])
    assert all(r["ok"] for r in result["pairs"]), [r for r in result["pairs"] if not r["ok"]]

    for node in lab.nodes:
        obj = lab.api.node(node.name)
        pod_cidr = ipaddress.ip_network(obj["spec"]["podCIDR"])
        env = read_subnet_file(node.subnet_file)
        assert env["FLANNEL_NETWORK"] == "10.244.0.0/16"
        assert ipaddress.ip_interface(env["FLANNEL_SUBNET"]).network.subnet_of(pod_cidr), (env, pod_cidr)
        assert pod_on(lab, node.name).ip in [str(h) for h in pod_cidr.hosts()]
        a = obj["metadata"]["annotations"]
        assert a[f"{P}/kube-subnet-manager"] == "true" and a[f"{P}/backend-type"] == "vxlan"
        assert json.loads(a[f"{P}/backend-data"]) == {"VNI": 1, "VtepMAC": device_mac(node)}
        assert a[f"{P}/public-ip"] == node.underlay_ip
        conds = {c["type"]: c for c in obj["status"]["conditions"]}
        assert conds["NetworkUnavailable"]["status"] == "False", conds
        # and every other node programmed this one: route, ARP (its VTEP MAC) and FDB
        for other in lab.nodes:
            if other is not node:
                assert programmed(other, str(pod_cidr), node.underlay_ip) == {"route": True, "arp": True, "fdb": True}
                neigh = ip("neigh", "show", str(pod_cidr.network_address), "dev", "flannel.1", netns=other.netns).stdout
                assert device_mac(node) in neigh


def test_a_node_without_podcidr_waits_not_ready_then_joins_once_it_has_one(make_lab):
    lab = make_lab(2, 1, kube=True, daemon_args=HEALTH)
    lab.stop_controller_manager()                   # node IPAM is down: n3 registers without a podCIDR
    n3 = lab.add_node(3, pod_cidr=False)
    lab.start_daemon(n3)

    def waiting():
        status, body = readyz(n3)
        return status == 503 and "podCIDR" in body and (status, body)

    seen = wait_until(waiting, 30, 0.3)
    assert seen, f"readyz {readyz(n3)}; log:\n{open(n3.log_file).read()}"
    assert "node n3 has no Node.spec.podCIDR" in seen[1]
    assert lab.daemon_alive(n3)                     # waiting, not crash-looping
    assert not read_subnet_file(n3.subnet_file)     # no subnet.env: the CNI plugin refuses pods meanwhile
    assert f"{P}/backend-data" not in annotations(lab, n3)
    assert "no Node.spec.podCIDR" in open(n3.log_file).read()

    lab.start_controller_manager()                  # it comes back and gives n3 a podCIDR
    cidr = lab.wait_pod_cidrs(n3)[0]
    env = lab.wait_for_subnet_file(n3, 30)
    assert env["FLANNEL_SUBNET"] == str(ipaddress.ip_network(cidr).network_address + 1) + "/24"
    assert wait_until(lambda: readyz(n3)[0] == 200, 20, 0.3), readyz(n3)
    for other in lab.nodes[:2]:
        assert wait_until(lambda: programmed(other, cidr, n3.underlay_ip) ==
                          {"route": True, "arp": True, "fdb": True}, 20), ip("route", netns=other.netns).stdout
    pod = lab.add_pod(n3, 1)
    for other in (pod_on(lab, "n1"), pod_on(lab, "n2")):
        assert any(lab.ping(pod, other.ip) for _ in range(3)), f"{pod.name} -> {other.name}"
        assert any(lab.ping(other, pod.ip) for _ in range(3)), f"{other.name} -> {pod.name}"


def test_restart_keeps_subnet_and_vtep_mac_from_the_annotation(make_lab):
    lab = make_lab(2, 1, kube=True, daemon_args=HEALTH)
    assert lab.wait_converged(30)
    n1, n2 = lab.nodes
    a, b = pod_on(lab, "n1"), pod_on(lab, "n2")
    subnet, mac = lab.subnets()["n1"], device_mac(n1)
    obj = lab.api.node("n1")
    assert json.loads(obj["metadata"]["annotations"][f"{P}/backend-data"])["VtepMAC"] == mac

    lab.stop_daemon(n1, signal.SIGTERM)
    lab.start_daemon(n1)
    assert wait_until(lambda: readyz(n1)[0] == 200, 30, 0.3), readyz(n1)
    assert lab.subnets()["n1"] == subnet and device_mac(n1) == mac
    # Nothing changed, so the restart did not write the Node (no event to every peer).
    assert lab.api.node("n1")["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
    assert lab.ping(a, b.ip)

    # Restart without the device: the MAC comes back from the annotation, so n2's FDB/ARP stay right.
    lab.stop_daemon(n1, signal.SIGTERM)
    ip("link", "del", "flannel.1", netns=n1.netns)
    lab.start_daemon(n1)
    assert wait_until(lambda: readyz(n1)[0] == 200, 30, 0.3), readyz(n1)
    assert device_mac(n1) == mac and lab.subnets()["n1"] == subnet
    assert json.loads(annotations(lab, n1)[f"{P}/backend-data"])["VtepMAC"] == mac
    vtep = str(ipaddress.ip_interface(subnet).network.network_address)
    assert mac in ip("neigh", "show", vtep, "dev", "flannel.1", netns=n2.netns).stdout
    assert wait_until(lambda: lab.routes_converged(), 20)
    assert any(lab.ping(a, b.ip) for _ in range(3)) and any(lab.ping(b, a.ip) for _ in range(3))


def test_a_deleted_node_object_is_dropped_by_every_other_node_in_both_families(make_lab):
    lab = make_lab(3, 1, kube=True, dual_stack=True)
    assert lab.wait_converged(30)
    n3 = lab.node("n3")
    cidrs = lab.api.node("n3")["spec"]["podCIDRs"]       # from the controller-manager, one per family
    v4, v6 = (ipaddress.ip_network(c) for c in cidrs)
    assert (v4.version, v4.prefixlen, v6.version, v6.prefixlen) == (4, 24, 6, 64), cidrs
    assert v4.subnet_of(ipaddress.ip_network("10.244.0.0/16")) and v6.subnet_of(ipaddress.ip_network("fd10:244::/56"))
    peer = {str(v4): n3.underlay_ip, str(v6): n3.underlay_ip6}
    for node in lab.nodes[:2]:
        for subnet, underlay in peer.items():
            assert wait_until(lambda: programmed(node, subnet, underlay) == {"route": True, "arp": True, "fdb": True},
                              15), (node.name, subnet, programmed(node, subnet, underlay))
    p1, p2, p3 = (pod_on(lab, n) for n in ("n1", "n2", "n3"))
    assert any(run(["ping", "-6", "-c", "1", "-W", "2", p3.ip6], netns=p1.netns, check=False).returncode == 0
               for _ in range(3)), "IPv6 pod to pod across nodes"
    lab.stop_daemon(n3)               # the node is being decommissioned
    lab.api.delete_node("n3")         # kubectl delete node n3

    for node in lab.nodes[:2]:
        for subnet, underlay in peer.items():
            assert wait_until(lambda: programmed(node, subnet, underlay) ==
                              {"route": False, "arp": False, "fdb": False}, 15), \
                (node.name, subnet, programmed(node, subnet, underlay))
    assert lab.ping(p1, p2.ip) and lab.ping(p2, p1.ip)   # the remaining two still talk
    assert run(["ping", "-6", "-c", "1", "-W", "2", p2.ip6], netns=p1.netns, check=False).returncode == 0
    assert sorted(n["metadata"]["name"] for n in lab.api.nodes()) == ["n1", "n2"]


def test_lab_cli_kube_mode_up_status_check_down_leaves_nothing():
    exe = [sys.executable, "-m", "overlayd.cli", "lab"]
    up = subprocess.run(exe + ["up", "--kube", "--nodes", "2", "--pods-per-node", "1"],
                        capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    name = up.stdout.strip()
    try:
        with open(os.path.join(STATE_DIR, f"{name}.json")) as f:
            state = json.load(f)
        status = json.loads(subprocess.run(exe + ["status", "--name", name, "--json"], capture_output=True,
                                           text=True, timeout=30, check=True).stdout)
        api = status["kube_api"]
        assert status["etcd"] is None and api["url"] == "https://192.0.2.254:6443"
        assert api["version"] == kube_release()
        # The admin kubeconfig works from this namespace, as kubectl does.
        kubectl = [os.path.join(kube_bin_dir(), "kubectl"), f"--kubeconfig={api['kubeconfig']}"]
        nodes = json.loads(subprocess.run(kubectl + ["get", "nodes", "-o", "json"], capture_output=True,
                                          text=True, timeout=30, check=True).stdout)["items"]
        cidrs = {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in nodes}
        assert sorted(cidrs) == ["n1", "n2"]
        assert [n["daemon_alive"] for n in status["nodes"]] == [True, True]
        assert [n["subnet"] for n in status["nodes"]] == [
            str(ipaddress.ip_network(cidrs[n]).network_address + 1) + "/24" for n in ("n1", "n2")]
        # Each node's overlayd runs as the manifest's ServiceAccount, with its own kubeconfig.
        for n in status["nodes"]:
            who = subprocess.run(kubectl[:1] + [f"--kubeconfig={n['kubeconfig']}", "--server", api["local_url"],
                                                "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"],
                                 capture_output=True, text=True, timeout=30)
            assert who.stdout == "system:serviceaccount:kube-overlayd:overlayd", who.stderr
        check = subprocess.run(exe + ["check", "--name", name, "--json"], capture_output=True, text=True, timeout=120)
        assert check.returncode == 0, check.stdout + check.stderr
        # `overlayd leases` on a node, in kube mode, lists both Nodes and marks its own
        n1 = status["nodes"][0]
        leases = subprocess.run(
            ["ip", "netns", "exec", n1["netns"], os.path.join(bin_dir(), "overlayd"), "leases", "--json",
             "--kube-subnet-mgr", f"--kubeconfig-file={n1['kubeconfig']}",
             f"--net-config-path={os.path.join(state['workdir'], 'n1', 'net-conf.json')}"],
            capture_output=True, text=True, timeout=60, env=dict(os.environ, NODE_NAME="n1"))
        assert leases.returncode == 0, leases.stderr
        rows = json.loads(leases.stdout)["leases"]
        assert {(r["node"], tuple(r["subnets"]), r["own"]) for r in rows} == {
            ("n1", (cidrs["n1"],), True), ("n2", (cidrs["n2"],), False)}
    finally:
        down = subprocess.run(exe + ["down", "--name", name], capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    assert_lab_gone(name, (f"{name}-sw", f"{name}-n1", f"{name}-n2", f"{name}-n1p1"),
                    [n["daemon_pid"] for n in status["nodes"]] + [p["pid"] for p in state["kube_api"]["procs"]])
    assert not os.path.exists(state["workdir"])
