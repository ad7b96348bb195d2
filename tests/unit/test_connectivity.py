"""The connectivity test's pure parts: what it creates, what it probes, the matrix it prints."""
from __future__ import annotations

from overlayd.connectivity import kube, matrix, plan

NODES = ["n1", "n2", "n3"]


def test_one_probe_pod_and_one_host_pod_pinned_to_every_node():
    pods = [plan.pod(ep, "ns", "busybox:1.36") for ep in plan.endpoints(NODES)]
    assert [(p["metadata"]["name"], p["spec"]["nodeName"], p["spec"].get("hostNetwork", False)) for p in pods] == [
        ("pod-n1", "n1", False), ("pod-n2", "n2", False), ("pod-n3", "n3", False),
        ("host-n1", "n1", True), ("host-n2", "n2", True), ("host-n3", "n3", True)]
    assert all(p["spec"]["tolerations"] == [{"operator": "Exists"}] for p in pods)
    svc = plan.service("ns")
    assert svc["spec"]["selector"] == {"app": plan.APP, "role": "pod"}
    assert svc["spec"]["ports"][0]["targetPort"] == plan.HTTP_PORT
    assert "httpd -f -p 8080" in pods[0]["spec"]["containers"][0]["command"][-1]


def test_the_checks_cover_pod_to_pod_across_nodes_service_and_node_to_pod():
    checks = plan.checks(NODES)
    kinds = {}
    for c in checks:
        kinds.setdefault(c.kind, []).append(c)
    assert len(kinds["pod-to-pod"]) == 6 and all(c.cross_node for c in kinds["pod-to-pod"])
    assert [c.src.name for c in kinds["pod-to-service"]] == ["pod-n1", "pod-n2", "pod-n3"]
    assert len(kinds["node-to-pod"]) == 9 and sum(c.cross_node for c in kinds["node-to-pod"]) == 6


def test_the_matrix_from_a_prober_that_cannot_reach_n3():
    ips = {f"pod-{n}": f"10.244.{i}.2" for i, n in enumerate(NODES, 1)}

    def prober(src, ip, port):
        bad = ip == "10.244.3.2" and src.node != "n3"
        return (not bad, "wget: download timed out" if bad else "ok")

    results = kube.run_checks(plan.checks(NODES), ips, "10.96.0.10", prober)
    doc = matrix.summary(results)
    assert not doc["ok"]
    assert doc["by_kind"] == {"pod-to-pod": {"ok": 4, "total": 6}, "pod-to-service": {"ok": 3, "total": 3},
                              "node-to-pod": {"ok": 7, "total": 9}}
    text = matrix.render(doc)
    lines = text.splitlines()
    assert lines[1].split() == ["pod-n1", "pod-n2", "pod-n3", "service"]
    assert lines[2].split() == ["pod-n1", "-", "ok", "FAIL", "ok"]
    assert lines[5].split() == ["host-n1", "ok", "ok", "FAIL", "-"]
    assert "FAIL pod-n1 -> pod-n3 (pod-to-pod): wget: download timed out" in text


def test_a_service_without_cluster_ip_and_an_exec_that_raises_are_failures_with_reasons():
    def prober(src, ip, port):
        raise RuntimeError("Handshake status 403 Forbidden")

    results = kube.run_checks(plan.checks(["n1", "n2"]), {"pod-n1": "a", "pod-n2": "b"}, None, prober)
    details = {(c.src.name, c.dst): d for c, ok, d in results if not ok}
    assert details[("pod-n1", "service")] == "the Service has no ClusterIP"
    assert details[("pod-n1", "pod-n2")] == "exec failed: Handshake status 403 Forbidden"
