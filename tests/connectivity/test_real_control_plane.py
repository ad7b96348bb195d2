"""On the lab's real control plane (kube mode: kube-apiserver, kube-controller-manager, nodes
running with their ServiceAccount's kubeconfig), one lab for two things:

- `overlayd connectivity-test`. The lab has no kubelet, so the probe pods are created, pinned and
  given their Service, and then never run: the test checks what a user sees up to there (the
  objects, the placement, the message naming each pod, the namespace removed), not the probes
  themselves (tests/unit/test_connectivity.py renders the matrix from a fake prober).
- `overlayd lab doctor` in kube mode: the node's own credentials read the Nodes, and every check
  passes.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from overlayd.lab.cluster import Lab, bin_dir

pytestmark = [pytest.mark.e2e, pytest.mark.kernel]
NS = "overlayd-connectivity-test"


@pytest.fixture(scope="module")
def lab():
    lab = Lab(kube=True, daemon_args=("--ip-masq",))
    try:
        yield lab.up(2, 1)
    finally:
        lab.down()


def test_probe_pods_pinned_to_every_node_a_service_a_clear_message_and_nothing_left(lab):
    """One run, as a user types it: the pods never run here, so it stops with exit 2, naming every
    probe pod, its node and why; the objects it made are read with kubectl while it waits, and its
    namespace is deleted at the end."""
    seen = {}

    def watch():        # what the test created, read while it waits for the pods (it waits 5 s)
        import time
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not seen.get("svc"):
            got = lab.kubectl("get", "pods,services", "-n", NS, "-o", "json", check=False)
            items = json.loads(got.stdout)["items"] if got.returncode == 0 else []
            pods = [i for i in items if i["kind"] == "Pod"]
            svcs = [i for i in items if i["kind"] == "Service"]
            if len(pods) == 4 and svcs:
                seen["pods"], seen["svc"] = pods, svcs[0]
            time.sleep(1.0)

    import threading
    watcher = threading.Thread(target=watch)
    watcher.start()
    proc = subprocess.run([os.path.join(bin_dir(), "overlayd"), "connectivity-test",
                           f"--kubeconfig={lab.kube_api.kubeconfig}", "--timeout=5"],
                          capture_output=True, text=True, timeout=180)
    watcher.join()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "[connectivity] 2 nodes: n1, n2" in proc.stderr
    for pod in ("pod-n1", "pod-n2", "host-n1", "host-n2"):
        assert f"{pod}: Pending (no kubelet has started it on {pod[-2:]})" in proc.stderr
    placed = {p["metadata"]["name"]: (p["spec"]["nodeName"], p["spec"].get("hostNetwork", False))
              for p in seen["pods"]}
    assert placed == {"pod-n1": ("n1", False), "pod-n2": ("n2", False), "host-n1": ("n1", True),
                      "host-n2": ("n2", True)}
    assert seen["svc"]["spec"]["clusterIP"]
    assert seen["svc"]["spec"]["selector"] == {"app": "overlayd-connectivity", "role": "pod"}
    got = lab.kubectl("get", "namespace", NS, "-o", "json", check=False)
    assert got.returncode != 0 or json.loads(got.stdout)["status"]["phase"] == "Terminating"


def test_doctor_in_kube_mode_reads_the_nodes_with_the_nodes_credentials_and_finds_nothing_wrong(lab):
    from overlayd.lab import doctor
    result = doctor.run(lab, "--store-timeout=60")
    assert result["exit_code"] == 0, doctor.render(result)
    for name, report in result["nodes"].items():
        checks = {c["check"]: c for c in report["checks"]}
        assert checks["lease-store"]["findings"][0]["summary"].startswith("the store answers")
        assert f"Node {name}" in json.dumps(checks["lease-store"])
        assert checks["lease-ttl"]["findings"][0]["summary"] == "kube mode: the node's podCIDR does not expire"
        assert checks["reachability"]["severity"] == "ok"
