"""An independent reference evaluator of networking.k8s.io/v1 NetworkPolicy, for the tests only.

Written from the API documentation, not from overlayd's engine, and sharing no code with it: the
suite compares what the kernel does (probes) with what this says the API means. Plain data in,
booleans out; no I/O.

    allowed(cluster, policies, src, dst, port, proto, family) -> bool

Semantics (the API reference, "NetworkPolicy"):
- A pod is isolated for a direction when some policy in its namespace selects it (podSelector) and
  lists that direction in policyTypes. policyTypes unset means Ingress, plus Egress when the spec has
  any egress rule.
- An isolated pod accepts a connection only if some rule of some selecting policy (a union) matches
  both the peer and the port; an empty or absent `from`/`to` matches every peer; empty or absent
  `ports` matches every port.
- A peer: podSelector alone = pods of the policy's namespace; namespaceSelector alone = every pod of
  the matching namespaces; both = pods matching podSelector in the matching namespaces (AND);
  ipBlock = addresses in cidr and not in any except (pod IPs included).
- A port: protocol defaults to TCP; no port = every port of that protocol; endPort makes a range;
  a named port resolves against the destination pod's containerPorts (name and protocol), so it
  matches nothing for a destination that is not a pod or has no such port.
- A connection needs both: egress allowed on the source's side, ingress on the destination's side.
- hostNetwork pods are never selected as targets (nor matched by pod selectors as peers).
"""
from __future__ import annotations

import dataclasses
import ipaddress
from typing import Iterable, Optional


@dataclasses.dataclass(frozen=True)
class RefPod:
    namespace: str
    name: str
    labels: tuple = ()                  # sorted (key, value) pairs
    ips: tuple = ()                     # every address of the pod (v4 and/or v6)
    ports: tuple = ()                   # (name, containerPort, protocol)
    host_network: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def label_map(self) -> dict:
        return dict(self.labels)

    def ip(self, family: int) -> Optional[str]:
        return next((a for a in self.ips if ipaddress.ip_address(a).version == family), None)


def pod(namespace: str, name: str, labels: Optional[dict] = None, ips: Iterable[str] = (),
        ports: Iterable[tuple] = (), host_network: bool = False) -> RefPod:
    return RefPod(namespace, name, tuple(sorted((labels or {}).items())), tuple(ips),
                  tuple(tuple(p) for p in ports), host_network)


@dataclasses.dataclass
class RefCluster:
    namespaces: dict                     # name -> labels
    pods: list                           # [RefPod]

    def ns_labels(self, name: str) -> dict:
        return self.namespaces.get(name, {"kubernetes.io/metadata.name": name})


# -- selectors ------------------------------------------------------------------------------------
def selector_matches(selector: Optional[dict], labels: dict) -> bool:
    """A LabelSelector; {} matches everything. Requirements are ANDed."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for req in selector.get("matchExpressions") or []:
        key, op, values = req["key"], req["operator"], req.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown selector operator {op!r}")
    return True


def policy_types(policy: dict) -> set:
    spec = policy.get("spec") or {}
    types = spec.get("policyTypes")
    if types:
        return set(types)
    return {"Ingress"} | ({"Egress"} if spec.get("egress") else set())


def selects(policy: dict, target: RefPod) -> bool:
    if target.host_network or policy["metadata"]["namespace"] != target.namespace:
        return False
    return selector_matches((policy.get("spec") or {}).get("podSelector") or {}, target.label_map())


# -- peers and ports ------------------------------------------------------------------------------
def _in_block(block: dict, address: str) -> bool:
    ip = ipaddress.ip_address(address)
    cidr = ipaddress.ip_network(block["cidr"], strict=False)
    if cidr.version != ip.version or ip not in cidr:
        return False
    return not any(ip in ipaddress.ip_network(e, strict=False) for e in block.get("except") or []
                   if ipaddress.ip_network(e, strict=False).version == ip.version)


def peer_matches(peer: dict, policy_ns: str, cluster: RefCluster, other: Optional[RefPod], address: str) -> bool:
    if "ipBlock" in peer and peer["ipBlock"] is not None:
        return _in_block(peer["ipBlock"], address)
    if other is None or other.host_network:
        return False
    pod_sel, ns_sel = peer.get("podSelector"), peer.get("namespaceSelector")
    if ns_sel is None:
        ns_ok = other.namespace == policy_ns
    else:
        ns_ok = selector_matches(ns_sel, cluster.ns_labels(other.namespace))
    pod_ok = True if pod_sel is None else selector_matches(pod_sel, other.label_map())
    return ns_ok and pod_ok


def port_matches(ports: Optional[list], dst: Optional[RefPod], port: int, proto: str) -> bool:
    if not ports:
        return True
    for p in ports:
        if (p.get("protocol") or "TCP") != proto:
            continue
        want = p.get("port")
        if want is None:
            return True
        if isinstance(want, str) and not want.isdigit():
            if dst is not None and any(n == want and cp == port and pr == proto for n, cp, pr in dst.ports):
                return True
            continue
        lo = int(want)
        hi = int(p.get("endPort") or lo)
        if lo <= port <= hi:
            return True
    return False


# -- the verdict ----------------------------------------------------------------------------------
def _direction_allows(cluster, policies, direction, target, other, other_addr, dst, port, proto) -> bool:
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    applicable = [p for p in policies if direction in policy_types(p) and selects(p, target)]
    if not applicable:
        return True
    for p in applicable:
        ns = p["metadata"]["namespace"]
        for rule in (p.get("spec") or {}).get(key) or []:
            peers = rule.get(peers_key)
            if peers and not any(peer_matches(peer, ns, cluster, other, other_addr) for peer in peers):
                continue
            if port_matches(rule.get("ports"), dst, port, proto):
                return True
    return False


def allowed(cluster: RefCluster, policies: list, src: RefPod, dst: RefPod, port: int, proto: str,
            family: int = 4) -> bool:
    """May src open a connection to dst's `family` address on port/proto?"""
    src_ip, dst_ip = src.ip(family), dst.ip(family)
    if src_ip is None or dst_ip is None:
        raise ValueError(f"{src.key} or {dst.key} has no IPv{family} address")
    return (_direction_allows(cluster, policies, "Egress", src, dst, dst_ip, dst, port, proto) and
            _direction_allows(cluster, policies, "Ingress", dst, src, src_ip, dst, port, proto))


def matrix(cluster: RefCluster, policies: list, port: int, proto: str, family: int = 4,
           pods: Optional[list] = None) -> dict:
    """{(src key, dst key): allowed} over every ordered pair (loopback excluded)."""
    pods = pods if pods is not None else cluster.pods
    return {(s.key, d.key): allowed(cluster, policies, s, d, port, proto, family)
            for s in pods for d in pods if s is not d}
