"""NetworkPolicy semantics over plain values: who is selected, which peers and ports a rule allows.

The compile step (compile.py) and `overlayd policy explain` / the conntrack cut (evaluate.py) both
build on these functions, so the kernel's rules and the explanations cannot disagree.
"""
from __future__ import annotations

import dataclasses
import functools
import ipaddress
from typing import Iterable, Iterator, Optional

from .model import Namespace, Peer, Pod, Policy, PortSpec, Rule

INGRESS, EGRESS = "ingress", "egress"


@dataclasses.dataclass(frozen=True)
class Cluster:
    """What the watcher's cache hands the compile step: every object by key."""
    pods: dict            # "ns/name" -> Pod
    namespaces: dict      # name -> Namespace
    policies: dict        # "ns/name" -> Policy

    @staticmethod
    def of(pods: Iterable[Pod] = (), namespaces: Iterable[Namespace] = (),
           policies: Iterable[Policy] = ()) -> "Cluster":
        return Cluster({p.key: p for p in pods}, {n.name: n for n in namespaces},
                       {p.key: p for p in policies})

    def namespace_labels(self, name: str) -> dict:
        ns = self.namespaces.get(name)
        # A namespace we have not seen yet still carries the label the API server always sets.
        return ns.label_dict if ns is not None else {"kubernetes.io/metadata.name": name}

    @functools.cached_property
    def pods_by_namespace(self) -> dict:
        """namespace -> its addressable pods (the peers a selector can match)."""
        out: dict = {}
        for pod in self.pods.values():
            if addressable(pod):
                out.setdefault(pod.namespace, []).append(pod)
        return out

    @functools.cached_property
    def policies_by_namespace(self) -> dict:
        out: dict = {}
        for policy in self.policies.values():
            out.setdefault(policy.namespace, []).append(policy)
        return out

    def peer_pods(self, policy_namespace: str, peer: Peer) -> list:
        """Pods a selector peer matches, memoised per (namespace, peer) for one compile."""
        memo = self.__dict__.setdefault("_peer_memo", {})
        key = (policy_namespace, peer)
        if key not in memo:
            memo[key] = list(_peer_pods(self, policy_namespace, peer))
        return memo[key]


def addressable(pod: Pod) -> bool:
    """A pod that can be a peer or a target: has addresses of its own, is not finished."""
    return bool(pod.ips) and not pod.host_network and not pod.terminal


def rules_of(policy: Policy, direction: str) -> Optional[tuple[Rule, ...]]:
    return policy.ingress if direction == INGRESS else policy.egress


def selecting(cluster: Cluster, pod: Pod, direction: str) -> list[Policy]:
    """Policies of `direction` that select `pod` (which is then isolated in that direction)."""
    if pod.host_network:
        return []
    labels = pod.label_dict
    return sorted((p for p in cluster.policies_by_namespace.get(pod.namespace, ())
                   if rules_of(p, direction) is not None and p.pod_selector.matches(labels)),
                  key=lambda p: p.key)


def peer_pods(cluster: Cluster, policy: Policy, peer: Peer) -> list:
    """Pods a selector peer matches (ipBlock peers match addresses, not pods: see block_nets)."""
    return cluster.peer_pods(policy.namespace, peer)


def _peer_pods(cluster: Cluster, policy_namespace: str, peer: Peer) -> Iterator[Pod]:
    if peer.ip_block is not None:
        return
    if peer.namespace_selector is None:
        namespaces = [policy_namespace]
    else:
        namespaces = [ns for ns in cluster.pods_by_namespace
                      if peer.namespace_selector.matches(cluster.namespace_labels(ns))]
    for ns in namespaces:
        for pod in cluster.pods_by_namespace.get(ns, ()):
            if peer.pod_selector is None or peer.pod_selector.matches(pod.label_dict):
                yield pod


def block_nets(peer: Peer) -> list:
    """The networks an ipBlock peer covers: cidr minus every except, as disjoint prefixes."""
    nets = [peer.ip_block.cidr]
    for ex in peer.ip_block.excepts:
        nxt = []
        for n in nets:
            if ex.subnet_of(n):
                nxt.extend(n.address_exclude(ex))
            elif not n.subnet_of(ex):
                nxt.append(n)
        nets = nxt
    return nets


def peer_matches_ip(cluster: Cluster, policy: Policy, peer: Peer, ip: str) -> bool:
    if peer.ip_block is not None:
        return peer.ip_block.contains(ip)
    return any(ip in p.ips for p in peer_pods(cluster, policy, peer))


def port_ranges(spec: PortSpec, pod: Optional[Pod]) -> list[tuple[str, Optional[int], Optional[int]]]:
    """(protocol, first, last) a port spec allows towards `pod`; first None: every port.

    A named port resolves against the pod's containerPorts of the same protocol; a name the pod
    does not have (or no pod at all: an address outside the cluster) allows nothing.
    """
    if spec.port is None:
        return [(spec.protocol, None, None)]
    if isinstance(spec.port, int):
        return [(spec.protocol, spec.port, spec.end_port or spec.port)]
    if pod is None:
        return []
    return [(spec.protocol, cp.port, cp.port) for cp in pod.ports
            if cp.name == spec.port and cp.protocol == spec.protocol]


def port_allows(ranges, protocol: str, port: int) -> bool:
    return any(proto == protocol and (lo is None or lo <= port <= hi) for proto, lo, hi in ranges)


def ip_version(ip: str) -> int:
    return ipaddress.ip_address(ip).version
