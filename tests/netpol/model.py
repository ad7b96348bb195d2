"""The upstream e2e model: namespaces x, y, z; pods a, b, c in each; servers on 80 and 81, TCP and
UDP (SCTP declared too); a reachability matrix built the way upstream builds its expectations.

Pure data; the lab harness (harness.py) and the real cluster's run (e2e/netpol_cluster.py) turn it
into API objects and probes (the common part: driver.py).
"""
from __future__ import annotations

import dataclasses
import ipaddress
from typing import Iterable, Optional

from . import reference as ref

NAMESPACES = ("x", "y", "z")
POD_NAMES = ("a", "b", "c")
PORTS = (80, 81)
PROTOCOLS = ("TCP", "UDP")
NS_LABEL = "kubernetes.io/metadata.name"


def pod_keys() -> list[str]:
    return [f"{ns}/{p}" for ns in NAMESPACES for p in POD_NAMES]


def container_ports() -> list[tuple]:
    """(name, port, protocol) as upstream names them: serve-80-tcp, ..."""
    return [(f"serve-{port}-{proto.lower()}", port, proto) for port in PORTS for proto in ("TCP", "UDP", "SCTP")]


def node_for(key: str, nodes: int) -> str:
    """x/a, y/a, z/a on n1; x/b, ... on n2; x/c, ... on n3: same-node and cross-node pairs both."""
    return f"n{POD_NAMES.index(key.split('/')[1]) % nodes + 1}"


def default_pod_labels(key: str) -> dict:
    return {"pod": key.split("/")[1]}


def default_ns_labels(ns: str) -> dict:
    return {NS_LABEL: ns}


# -- expectations, as upstream writes them --------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Peer:
    namespace: Optional[str] = None
    pod: Optional[str] = None

    def matches(self, key: str) -> bool:
        ns, name = key.split("/")
        return (self.namespace is None or self.namespace == ns) and (self.pod is None or self.pod == name)


class Reachability:
    """A truth table over ordered pod pairs (loopback ignored, as upstream does)."""

    def __init__(self, default: bool = True, pods: Optional[Iterable[str]] = None):
        self.pods = list(pods or pod_keys())
        self.cells = {(s, d): default for s in self.pods for d in self.pods if s != d}

    def expect(self, src: str, dst: str, value: bool) -> "Reachability":
        if src != dst:
            self.cells[(src, dst)] = value
        return self

    def expect_peer(self, src: Peer, dst: Peer, value: bool) -> "Reachability":
        for (s, d) in self.cells:
            if src.matches(s) and dst.matches(d):
                self.cells[(s, d)] = value
        return self

    def expect_all_ingress(self, dst: str, value: bool) -> "Reachability":
        return self.expect_peer(Peer(), Peer(*dst.split("/")), value)

    def expect_all_egress(self, src: str, value: bool) -> "Reachability":
        return self.expect_peer(Peer(*src.split("/")), Peer(), value)


def render(cells: dict, pods: list[str], other: Optional[dict] = None) -> str:
    """The table upstream prints: '.' allowed, 'X' denied; with `other`, mismatches are marked '!'."""
    width = max(len(p) for p in pods) + 1
    lines = [" " * width + "".join(p.ljust(width) for p in pods)]
    for s in pods:
        row = []
        for d in pods:
            if s == d:
                row.append("-")
                continue
            v = cells[(s, d)]
            mark = "." if v else "X"
            if other is not None and other.get((s, d)) != v:
                mark = "!" + mark
            row.append(mark)
        lines.append(s.ljust(width) + "".join(c.ljust(width) for c in row))
    return "\n".join(lines)


# -- cluster state as the reference evaluator sees it ---------------------------------------------
@dataclasses.dataclass
class State:
    """What the suite has told the API: labels and policies (by (namespace, name))."""
    pod_labels: dict = dataclasses.field(default_factory=lambda: {k: default_pod_labels(k) for k in pod_keys()})
    ns_labels: dict = dataclasses.field(default_factory=lambda: {n: default_ns_labels(n) for n in NAMESPACES})
    policies: dict = dataclasses.field(default_factory=dict)

    def ref_cluster(self, ips: dict) -> ref.RefCluster:
        pods = [ref.pod(k.split("/")[0], k.split("/")[1], self.pod_labels[k], ips.get(k, ()), container_ports())
                for k in pod_keys()]
        return ref.RefCluster(dict(self.ns_labels), pods)

    def expected(self, ips: dict, port: int, proto: str, family: int = 4) -> dict:
        return ref.matrix(self.ref_cluster(ips), list(self.policies.values()), port, proto, family)


# -- placeholders that need the pods' addresses ---------------------------------------------------
def host_cidr(key: str) -> str:
    return f"$host({key})"


def wide_cidr(key: str) -> str:
    """The /4 (IPv4) or /4 (IPv6) around the pod's address, as upstream's makeLargeCIDRForIP."""
    return f"$wide({key})"


def resolve(obj, ips: dict, family: int):
    """Replace $host(ns/pod) and $wide(ns/pod) in a policy with the pod's `family` address."""
    if isinstance(obj, dict):
        return {k: resolve(v, ips, family) for k, v in obj.items()}
    if isinstance(obj, list):
        return [resolve(v, ips, family) for v in obj]
    if isinstance(obj, str) and obj.startswith("$") and obj.endswith(")"):
        kind, key = obj[1:-1].split("(")
        addr = next(a for a in ips[key] if ipaddress.ip_address(a).version == family)
        bits = 32 if family == 4 else 128
        if kind == "host":
            return f"{addr}/{bits}"
        return str(ipaddress.ip_network(f"{addr}/4", strict=False))
    return obj
