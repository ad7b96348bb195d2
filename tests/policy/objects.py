"""API objects as the API server sends them (camelCase dicts), built small for the tests."""
from __future__ import annotations

from overlayd.policy.model import parse_namespace, parse_pod, parse_policy
from overlayd.policy.semantics import Cluster


def pod(ns, name, ips, node="n1", labels=None, ports=(), host_network=False, phase="Running"):
    if isinstance(ips, str):
        ips = [ips]
    return {"metadata": {"namespace": ns, "name": name, "labels": dict(labels or {})},
            "spec": {"nodeName": node, "hostNetwork": host_network,
                     "containers": [{"name": "c", "ports": [
                         {"name": n, "containerPort": p, "protocol": proto} for n, p, proto in ports]}]},
            "status": {"phase": phase, "podIPs": [{"ip": ip} for ip in ips]}}


def namespace(name, labels=None):
    return {"metadata": {"name": name, "labels": dict(labels or {})}}


def policy(ns, name, selector=None, ingress=None, egress=None, types=None):
    spec = {"podSelector": selector if selector is not None else {}}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    if types is not None:
        spec["policyTypes"] = types
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


def cluster(pods=(), namespaces=(), policies=()) -> Cluster:
    ns_names = {p["metadata"]["namespace"] for p in pods} | {n["metadata"]["name"] for n in namespaces}
    given = {n["metadata"]["name"]: n for n in namespaces}
    nss = [given.get(n) or namespace(n) for n in sorted(ns_names)]
    return Cluster.of([parse_pod(p) for p in pods], [parse_namespace(n) for n in nss],
                      [parse_policy(p) for p in policies])
