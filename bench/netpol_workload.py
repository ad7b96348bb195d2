"""A cluster for the NetworkPolicy benchmarks, as API objects: 10,000 pods in 100 namespaces on 91
nodes (110 on node-1, this node), 1,000 policies (10 per namespace) of the shapes clusters use:
default deny, app-to-app by podSelector, from a monitoring namespace, named ports, port ranges,
ipBlocks with except, egress to a namespace. Deterministic (seeded)."""
from __future__ import annotations

import ipaddress
import random

NODE = "node-1"
NODE_CIDR = "10.244.1.0/24"
NODE_ADDRESS = "192.0.2.1"


def namespaces(n: int = 100) -> list[dict]:
    return [{"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": f"ns-{i}", "labels": {"kubernetes.io/metadata.name": f"ns-{i}",
                                                          "team": f"team-{i % 7}",
                                                          **({"monitoring": "true"} if i == 0 else {})}}}
            for i in range(n)]


def pods(total: int = 10000, on_node: int = 110, n_ns: int = 100) -> list[dict]:
    """Pod i: namespace ns-(i % n_ns), app app-(i // n_ns % 20); the first `on_node` on node-1
    (10.244.1.0/24), the rest 110 to a node on 10.244.2.0/24 onwards."""
    out = []
    for i in range(total):
        if i < on_node:
            node, net, host = NODE, 1, i + 2
        else:
            j = i - on_node
            node, net, host = f"node-{j // 110 + 2}", j // 110 + 2, j % 110 + 2
        ip = str(ipaddress.ip_address("10.244.0.0") + net * 256 + host)
        out.append({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": f"pod-{i}", "namespace": f"ns-{i % n_ns}",
                                 "labels": {"app": f"app-{i // n_ns % 20}", "tier": ("web", "api", "db")[i % 3]}},
                    "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [
                        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]}]},
                    "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})
    return out


def policies(n: int = 1000, n_ns: int = 100, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ns = f"ns-{i % n_ns}"
        kind = i // n_ns % 10
        app = f"app-{rng.randrange(20)}"
        spec: dict
        if kind == 0:
            spec = {"podSelector": {}, "policyTypes": ["Ingress"]}
        elif kind in (1, 2, 3):
            spec = {"podSelector": {"matchLabels": {"app": app}},
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": f"app-{rng.randrange(20)}"}}}],
                                 "ports": [{"port": "http"}]}]}
        elif kind == 4:
            spec = {"podSelector": {"matchLabels": {"app": app}},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"monitoring": "true"}}}],
                                 "ports": [{"port": 9090}]}]}
        elif kind == 5:
            spec = {"podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}]},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": f"team-{rng.randrange(7)}"}},
                                           "podSelector": {"matchLabels": {"tier": "web"}}}],
                                 "ports": [{"port": 8000, "endPort": 8100, "protocol": "TCP"}]}]}
        elif kind == 6:
            spec = {"podSelector": {"matchLabels": {"app": app}},
                    "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": [f"10.244.{rng.randrange(90) + 2}.0/24"]}}]}]}
        elif kind == 7:
            spec = {"podSelector": {"matchLabels": {"tier": "db"}}, "policyTypes": ["Egress"],
                    "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}]},
                               {"ports": [{"port": 53, "protocol": "UDP"}]}]}
        elif kind == 8:
            spec = {"podSelector": {"matchLabels": {"app": app}},
                    "ingress": [{"from": [{"podSelector": {"matchExpressions": [
                        {"key": "app", "operator": "NotIn", "values": [app]}]}}]}]}
        else:
            spec = {"podSelector": {"matchLabels": {"tier": "api"}}, "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"from": [{"podSelector": {}}]}],
                    "egress": [{"to": [{"podSelector": {"matchLabels": {"tier": "db"}}}], "ports": [{"port": 5432}]}]}
        out.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"name": f"np-{i}", "namespace": ns}, "spec": spec})
    return out
