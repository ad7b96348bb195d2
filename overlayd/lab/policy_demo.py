"""`overlayd lab demo --network-policy`: the brief's `allow-http` policy, before and after.

Pods in namespace default: web (app=web, serving http:80/TCP) on n1, frontend (role=frontend) on n2
and frontend-2 on n1 (same node as web), other (no labels) on n3. The demo prints who reaches whom
on TCP 80 and TCP 81, applies allow-http (pods with role=frontend may reach pods with app=web on TCP
80, nothing else), waits until the kernel enforces it (probing, not sleeping) and prints the matrix
again.
"""
from __future__ import annotations

import json
import time

from . import pods as labpods

ALLOW_HTTP = {
    "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    "metadata": {"name": "allow-http", "namespace": "default"},
    "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
             "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}],
                          "ports": [{"protocol": "TCP", "port": 80}]}]},
}
DEMO_PODS = (("web", "n1", {"app": "web"}, [("http", 80, "TCP")]),
             ("frontend", "n2", {"role": "frontend"}, []),
             ("frontend-2", "n1", {"role": "frontend"}, []),
             ("other", "n3", {}, []))
PORTS = ((80, "TCP"), (81, "TCP"))


def matrix(pods: list, timeout: float = 0.5) -> dict:
    """{(port, proto): {(src, dst): bool}} by probes from each pod's agent (one round)."""
    out = {c: {} for c in PORTS}
    for src in pods:
        targets = [(dst, c) for c in PORTS for dst in pods if dst is not src]
        reply = labpods.agent_request(src.agent_socket, {"op": "probe", "timeout": timeout, "targets": [
            [dst.ip or dst.ip6, c[0], c[1]] for dst, c in targets]})
        for (dst, c), answer in zip(targets, reply["results"]):
            out[c][(src.name, dst.name)] = (answer or "").split(" ")[0] == f"{dst.namespace}/{dst.name}"
    return out


def expected_after(pods: list) -> dict:
    labels = {p.name: p.labels for p in pods}
    out = {c: {} for c in PORTS}
    for c in PORTS:
        for s in pods:
            for d in pods:
                if s is d:
                    continue
                web = labels[d.name].get("app") == "web"
                out[c][(s.name, d.name)] = (not web) or (labels[s.name].get("role") == "frontend" and c == (80, "TCP"))
    return out


def print_matrix(result: dict, pods: list, title: str) -> None:
    names = [p.name for p in pods]
    width = max(len(n) for n in names) + 2
    for (port, proto), cells in result.items():
        print(f"{title}: connections to port {port}/{proto} (row connects to column)")
        print(" " * width + "".join(n.ljust(width) for n in names))
        for s in names:
            print(s.ljust(width) + "".join(("-" if s == d else "ok" if cells[(s, d)] else "denied").ljust(width)
                                           for d in names))
        print()


def run(lab, say) -> int:
    pods = [labpods.add(lab, labpods.PodSpec("default", name, node if len(lab.nodes) >= int(node[1:]) else "n1",
                                             labels, ports), log=say)
            for name, node, labels, ports in DEMO_PODS]
    print()
    for p in pods:
        print(f"pod default/{p.name} on {p.node}: {p.ip or p.ip6}  labels {json.dumps(p.labels)}")
    print()
    before = _settle(pods, lambda m: all(all(c.values()) for c in m.values()), 90)
    print_matrix(before, pods, "before")
    print("$ kubectl apply -f allow-http.yaml")
    print(json.dumps(ALLOW_HTTP, indent=1))
    started = time.monotonic()
    lab.api.request("POST", "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies", ALLOW_HTTP)
    want = expected_after(pods)
    after = _settle(pods, lambda m: m == want, 90)
    print(f"\n(enforced {time.monotonic() - started:.2f}s after the API accepted it, by probes)\n")
    print_matrix(after, pods, "after allow-http")
    ok = after == want
    print("allow-http enforced: frontend pods reach web on TCP 80 only; other pods do not reach web"
          if ok else "NOT as expected: see the matrix above")
    return 0 if ok else 1


def _settle(pods, good, wait: float) -> dict:
    deadline = time.monotonic() + wait
    while True:
        m = matrix(pods)
        if good(m) or time.monotonic() > deadline:
            return m
