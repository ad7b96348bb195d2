"""Verdicts for one connection over the cluster's objects: `overlayd policy explain` and the
conntrack cut (which established connections the current policies no longer allow).

It follows the same semantics functions as compile.py, so what it says is what the kernel does.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from typing import Optional

from .model import Pod, Policy
from .semantics import (EGRESS, INGRESS, Cluster, addressable, peer_matches_ip, port_allows, port_ranges,
                        rules_of, selecting)

PROTO_NUMBERS = {6: "TCP", 17: "UDP", 132: "SCTP"}


@dataclasses.dataclass(frozen=True)
class DirectionVerdict:
    direction: str
    enforced: bool                  # the pod it applies to is one of ours to police
    isolated: bool                  # some policy selects the pod for this direction
    allowed: bool
    selecting: tuple[str, ...] = ()     # policies isolating the pod in this direction
    allowed_by: tuple[str, ...] = ()    # policies with a rule allowing this connection

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _rule_allows(cluster: Cluster, policy: Policy, direction: str, peer_ip: str,
                 port_target: Optional[Pod], protocol: str, port: Optional[int]) -> bool:
    for rule in rules_of(policy, direction):
        if rule.peers is not None and not any(peer_matches_ip(cluster, policy, p, peer_ip) for p in rule.peers):
            continue
        if rule.ports is None:
            return True
        if port is not None and any(port_allows(port_ranges(spec, port_target), protocol, port)
                                    for spec in rule.ports):
            return True
    return False


def direction_verdict(cluster: Cluster, direction: str, pod: Optional[Pod], peer_ip: str,
                      port_target: Optional[Pod], protocol: str, port: Optional[int]) -> DirectionVerdict:
    """`pod` is the policed end (destination for ingress, source for egress), None when not a pod."""
    if pod is None or not addressable(pod):
        return DirectionVerdict(direction, False, False, True)
    policies = selecting(cluster, pod, direction)
    if not policies:
        return DirectionVerdict(direction, True, False, True)
    allowed_by = tuple(p.key for p in policies
                       if _rule_allows(cluster, p, direction, peer_ip, port_target, protocol, port))
    return DirectionVerdict(direction, True, True, bool(allowed_by), tuple(p.key for p in policies), allowed_by)


def pods_by_ip(cluster: Cluster) -> dict:
    return {ip: p for p in cluster.pods.values() if addressable(p) for ip in p.ips}


def connection(cluster: Cluster, src_ip: str, dst_ip: str, protocol: str, port: Optional[int],
               by_ip: Optional[dict] = None) -> tuple[DirectionVerdict, DirectionVerdict]:
    """(egress at the source, ingress at the destination) for a new connection src -> dst:port."""
    by_ip = pods_by_ip(cluster) if by_ip is None else by_ip
    src, dst = by_ip.get(src_ip), by_ip.get(dst_ip)
    return (direction_verdict(cluster, EGRESS, src, dst_ip, dst, protocol, port),
            direction_verdict(cluster, INGRESS, dst, src_ip, dst, protocol, port))


def explain(cluster: Cluster, src: Pod, dst: Pod, protocol: str, port: int) -> dict:
    """Plain data for `overlayd policy explain`: allowed or denied, and by which policies."""
    dst_ips = list(dst.ips)
    pair = None
    for d in dst_ips:
        v = ipaddress.ip_address(d).version
        s = next((ip for ip in src.ips if ipaddress.ip_address(ip).version == v), None)
        if s is not None:
            pair = (s, d)
            break
    if pair is None:
        return {"from": src.key, "to": dst.key, "allowed": False, "port": port, "protocol": protocol,
                "reason": "the two pods have no address of a common family (does each have status.podIPs?)"}
    egress, ingress = connection(cluster, pair[0], pair[1], protocol, port)
    out = {"from": src.key, "to": dst.key, "src_ip": pair[0], "dst_ip": pair[1], "protocol": protocol,
           "port": port, "allowed": egress.allowed and ingress.allowed,
           "egress": egress.as_dict(), "ingress": ingress.as_dict()}
    if dst.host_network:
        out["note"] = f"{dst.key} uses the host network: policies never select it as a target"
    return out



def still_allowed(cluster: Cluster, by_ip: dict, node: str, src_ip: str, dst_ip: str,
                  protocol: str, port: Optional[int]) -> bool:
    """Whether this node would let a connection src -> dst:port through now (the directions it enforces)."""
    src, dst = by_ip.get(src_ip), by_ip.get(dst_ip)
    if src is not None and src.node == node:
        if not direction_verdict(cluster, EGRESS, src, dst_ip, dst, protocol, port).allowed:
            return False
    if dst is not None and dst.node == node:
        if not direction_verdict(cluster, INGRESS, dst, src_ip, dst, protocol, port).allowed:
            return False
    return True
