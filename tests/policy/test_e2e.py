"""overlayd --network-policy in a kube lab: the daemon watches the real API and enforces on real
packets between pods (the brief's allow-http), keeps pod sources across nodes, never opens a new
pod in violation, says what it does on /readyz and /metrics, and explains verdicts.

The x/y/z x a/b/c truth table and the generated cases are tests/netpol's; this module checks the
daemon's own duties around them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from overlayd.lab import pods as labpods
from overlayd.lab.cluster import HEALTHZ_PORT, Lab
from overlayd.lab.netns import run

pytestmark = pytest.mark.e2e
# The real control plane lab (kube-apiserver + controller-manager) is what this needs: the API
# emulator serves no Pods, Namespaces or NetworkPolicies.
pytest.importorskip("overlayd.lab.control_plane", reason="needs the lab's real kube-apiserver (overlayd.lab.control_plane)")
NP = "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"
OVERLAYD = os.path.join(os.path.dirname(sys.executable), "overlayd")
ALLOW_HTTP = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "allow-http", "namespace": "default"},
              "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                       "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}],
                                    "ports": [{"protocol": "TCP", "port": "http"}]}]}}


@pytest.fixture(scope="module")
def lab():
    lab = Lab(kube=True, daemon_args=("--network-policy",))
    try:
        lab.up(2, 0)
        assert lab.wait_converged(60), "routes did not converge"
        specs = {"web": ("n1", {"app": "web"}, [("http", 80, "TCP")]),
                 "frontend": ("n2", {"role": "frontend"}, []),
                 "other": ("n1", {"role": "other"}, [])}
        for name, (node, labels, ports) in specs.items():
            labpods.add(lab, labpods.PodSpec("default", name, node, labels, ports))
        yield lab
    finally:
        lab.down()


def probe(lab, src: str, dst: str, port: int = 80, proto: str = "TCP", timeout: float = 0.5):
    """(reached, the source address the destination saw) for one new connection."""
    s, d = labpods.find(lab, "default", src), labpods.find(lab, "default", dst)
    reply = labpods.agent_request(s.agent_socket, {"op": "probe", "timeout": timeout, "targets": [[d.ip, port, proto]]})
    answer = (reply["results"][0] or "").split(" ")
    reached = bool(answer[0])
    return reached, (answer[1] if reached and len(answer) > 1 else None)


def eventually(cond, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def http_get(lab, node: str, path: str) -> tuple[int, str]:
    code = ("import sys, urllib.request, urllib.error\n"
            "try:\n r = urllib.request.urlopen(sys.argv[1], timeout=5); print(r.status); print(r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n print(e.code); print(e.read().decode())\n")
    out = run([sys.executable, "-c", code, f"http://127.0.0.1:{HEALTHZ_PORT}{path}"], netns=lab.node(node).netns).stdout
    status, _, body = out.partition("\n")
    return int(status), body


def test_allow_http_on_real_packets_and_pod_sources_survive(lab):
    eventually(lambda: probe(lab, "frontend", "web")[0] and probe(lab, "other", "web")[0], "open before any policy")
    lab.api.request("POST", NP.format(ns="default"), ALLOW_HTTP)
    eventually(lambda: not probe(lab, "other", "web")[0], "other -> web denied (same node)")
    reached, seen = probe(lab, "frontend", "web", timeout=2)
    assert reached, "frontend -> web (cross-node, named port http) is allowed"
    assert seen == labpods.find(lab, "default", "frontend").ip, "the receiver sees the pod's own address"
    assert not probe(lab, "frontend", "web", port=81)[0]
    assert not probe(lab, "frontend", "web", proto="UDP")[0]
    assert probe(lab, "web", "other", timeout=2)[0], "web's egress is not isolated"
    # a label change takes effect
    labpods.set_labels(lab, "default", "frontend", {"role": "other"})
    eventually(lambda: not probe(lab, "frontend", "web")[0], "frontend relabelled -> denied")
    labpods.set_labels(lab, "default", "frontend", {"role": "frontend"})
    eventually(lambda: probe(lab, "frontend", "web")[0], "frontend labelled back -> allowed")


def test_a_new_selected_pod_is_never_reachable_in_violation(lab):
    lab.api.request("PUT", NP.format(ns="default") + "/allow-http", ALLOW_HTTP) \
        if _exists(lab) else lab.api.request("POST", NP.format(ns="default"), ALLOW_HTTP)
    eventually(lambda: not probe(lab, "other", "web")[0], "allow-http in force")
    for i in range(2):
        name = f"web-new{i}"
        labpods.add(lab, labpods.PodSpec("default", name, "n1", {"app": "web"}, [("http", 80, "TCP")]))
        try:
            assert not probe(lab, "other", name, timeout=1.0)[0], f"{name} reachable from other right after ADD"
            eventually(lambda: probe(lab, "frontend", name)[0], f"frontend -> {name} once compiled")
            assert not probe(lab, "other", name)[0]
        finally:
            labpods.delete(lab, "default", name)


def _exists(lab) -> bool:
    try:
        lab.api.request("GET", NP.format(ns="default") + "/allow-http")
        return True
    except Exception:
        return False


def test_readyz_metrics_and_explain(lab):
    if not _exists(lab):
        lab.api.request("POST", NP.format(ns="default"), ALLOW_HTTP)
    eventually(lambda: http_get(lab, "n1", "/readyz")[0] == 200, "n1 ready")
    _, metrics = http_get(lab, "n1", "/metrics")
    assert "overlayd_policy_policies 1.0" in metrics
    eventually(lambda: not probe(lab, "other", "web")[0], "a denied probe")
    _, metrics = http_get(lab, "n1", "/metrics")
    line = next(l for l in metrics.splitlines()
                if l.startswith('overlayd_policy_dropped_packets_total{direction="ingress",policy="default/allow-http"}'))
    assert float(line.split()[-1]) >= 1
    assert "overlayd_policy_event_to_enforced_seconds_count" in metrics
    kubeconfig = getattr(lab.kube_api, "kubeconfig", None)
    where = None if kubeconfig else lab.switch        # the emulator's URL lives in the switch namespace
    flags = ["--kubeconfig", kubeconfig] if kubeconfig else ["--kube-api-url", lab.kube_api.url]
    out = run([OVERLAYD, "policy", "explain", *flags, "--from", "default/other", "--to", "default/web",
               "--port", "80/tcp", "--json"], netns=where, check=False, timeout=120)
    verdict = json.loads(out.stdout)
    assert verdict["allowed"] is False and verdict["ingress"]["selecting"] == ["default/allow-http"]
