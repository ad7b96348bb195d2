"""Real Kubernetes nodes in the lab (`overlayd lab up --kubelet`), the reduced run for `make test`.

Two nodes, each with its own network and mount namespace, containerd (Debian's) and kubelet
(k8s.io/kubernetes, the pinned release), registered with the lab's real kube-apiserver;
kube-scheduler and kube-proxy; `kubectl apply -f manifests/overlayd.yaml` installs overlayd
through kubelet. Then the brief's checks: the node's /opt/cni/bin and /etc/cni/net.d, and a
test pod on each node that `kubectl exec` reaches: `ip a` shows its overlay address and it
pings the pod on the other node. `make cluster-e2e` (e2e/lab/run.sh) runs the full set on 3 nodes.

The first run builds kubelet, kube-scheduler and kube-proxy and the overlayd image (cached after).
"""
from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys

import pytest

from overlayd.lab import node_host
from overlayd.lab.cluster import Lab
from overlayd.lab.netns import netns_exists


pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]
POD = """{{"apiVersion": "v1", "kind": "Pod",
 "metadata": {{"name": "{name}", "namespace": "default"}},
 "spec": {{"nodeName": "{node}", "terminationGracePeriodSeconds": 1,
   "containers": [{{"name": "net", "image": "{image}", "imagePullPolicy": "Never",
                    "command": ["sleep", "3600"]}}]}}}}"""


@pytest.fixture(scope="module")
def cluster():
    lab = Lab(kubelet=True)
    try:
        lab.up(nodes=2)
        yield lab
    finally:
        hosts = [n.host for n in (lab.kubelet_nodes.nodes if lab.kubelet_nodes else [])]
        namespaces = [n.netns for n in lab.nodes] + [lab.switch]
        lab.down()
        # nothing of the nodes is left: namespaces, cgroup roots, mount-namespace holders
        assert not [ns for ns in namespaces if netns_exists(ns)]
        for h in hosts:
            assert not node_host.cgroup_pids(h.cgroup_root)
            assert not any(os.path.exists(hh + h.cgroup_root) for hh in node_host.cgroup_hierarchies())
            assert not h.alive()


def kubectl(lab, *args, **kw):
    return lab.kubectl(*args, **kw).stdout


def test_overlayd_runs_on_every_node_through_kubelet(cluster):
    pods = json.loads(kubectl(cluster, "-n", "kube-overlayd", "get", "pods", "-o", "json"))["items"]
    by_node = {p["spec"]["nodeName"]: p for p in pods}
    assert sorted(by_node) == ["n1", "n2"]
    for pod in by_node.values():
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready["Ready"] == "True", pod["status"]          # the readiness probe passed
        assert pod["spec"]["serviceAccountName"] == "overlayd"
        inits = [c["name"] for c in pod["status"]["initContainerStatuses"]]
        assert inits == ["install-reference-plugins", "install-cni"]


def test_the_node_has_our_plugin_and_conflist_in_its_own_directories(cluster):
    host = cluster.kubelet_nodes.node("n1").host
    bins = host.run("ls", "/opt/cni/bin").stdout.split()
    assert {"overlay", "bridge", "host-local", "portmap"} <= set(bins)
    conflist = json.loads(host.run("sh", "-c", "cat /etc/cni/net.d/*").stdout)
    assert conflist["plugins"][0]["type"] == "overlay"
    # per node: the machine's own /opt/cni/bin is not where the node's plugins went
    assert "overlay" not in os.listdir("/opt/cni/bin")


def test_pods_get_overlay_addresses_and_ping_across_nodes(cluster):
    image = cluster.status()["images"]["test"]
    for node in ("n1", "n2"):
        kubectl(cluster, "apply", "-f", "-", input=POD.format(name=f"net-{node}", node=node, image=image))
    kubectl(cluster, "wait", "pod", "net-n1", "net-n2", "--for=condition=Ready", "--timeout=180s", timeout=200)
    ips = {n: kubectl(cluster, "get", "pod", f"net-{n}", "-o", "jsonpath={.status.podIP}") for n in ("n1", "n2")}
    cidrs = {n: kubectl(cluster, "get", "node", n, "-o", "jsonpath={.spec.podCIDR}") for n in ("n1", "n2")}
    for n in ("n1", "n2"):
        assert ipaddress.ip_address(ips[n]) in ipaddress.ip_network(cidrs[n]), (ips, cidrs)
    ip_a = kubectl(cluster, "exec", "net-n1", "--", "ip", "a")
    assert f"inet {ips['n1']}/" in ip_a and "eth0" in ip_a
    ping = cluster.kubectl("exec", "net-n1", "--", "ping", "-c", "1", ips["n2"], check=False)
    assert ping.returncode == 0 and "1 packets received" in ping.stdout, ping.stdout + ping.stderr


def test_connectivity_test_passes_on_real_nodes(cluster):
    """`overlayd connectivity-test` (issue 12) on real nodes: its probe pods and host pods run
    under kubelet, every pod reaches every other pod, the Service (kube-proxy) and is reached from
    every node; the namespace is deleted afterwards."""
    image = cluster.status()["images"]["test"]
    overlayd = os.path.join(os.path.dirname(sys.executable), "overlayd")
    proc = subprocess.run([overlayd, "connectivity-test", f"--kubeconfig={cluster.kube_api.kubeconfig}",
                           f"--image={image}", "--json"], capture_output=True, text=True, timeout=400)
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] and doc["by_kind"] == {"pod-to-pod": {"ok": 2, "total": 2},
                                            "pod-to-service": {"ok": 2, "total": 2},
                                            "node-to-pod": {"ok": 4, "total": 4}}, doc
    gone = cluster.kubectl("get", "namespace", "overlayd-connectivity-test", "-o", "json", check=False)
    assert gone.returncode != 0 or json.loads(gone.stdout)["status"]["phase"] == "Terminating"
