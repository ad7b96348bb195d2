"""The pure compile step: (cluster, this node) -> the nftables model of our one `inet` table.

Layout (render.py writes it, docs/network-policy.md explains it):

  forward (base chain, hook forward)
    ct state established,related accept          conntrack first: replies of allowed connections
    ICMPv6 neighbour discovery accept
    saddr in @node4/@node6 accept                 the node's own addresses (kubelet probes)
    to/from this node's pod CIDRs: a new TCP connection that does not start with a SYN -> drop
                                                  (no mid-stream pickup of a connection the cut deleted)
    saddr or daddr in this node's pod CIDRs but not in @known4/@known6 -> drop
                                                  fail closed: a local address whose pod the engine
                                                  has not compiled yet gets nothing
    saddr vmap @eg4/@eg6                          local pod isolated for egress -> its chain
    daddr vmap @in4/@in6                          local pod isolated for ingress -> its chain

  in-<hash> / eg-<hash>: one chain per distinct set of rules (pods with the same policies and
  resolved named ports share one); each allowing rule `return`s, the end counts and drops.
  Peers are named sets per policy rule (pr-...), egress named ports a set of (address, proto,
  port) per rule (pn-...). Only policies that select a pod on this node are rendered.

Pod churn therefore changes set and map elements; a chain appears or goes only when a pod's
set of rules is new. The model is plain data; diff.py turns two models into a transaction.
"""
from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import re
from typing import Iterable

from .model import Policy, Pod, Rule
from .semantics import (EGRESS, INGRESS, Cluster, addressable, block_nets, peer_pods, port_ranges,
                        rules_of, selecting)

TABLE = "overlayd-policy"
ADDR_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}
FAMILY = {4: "ip", 6: "ip6"}
PREFIX = {INGRESS: "in", EGRESS: "eg"}
COUNTERS_PER_RULE = 60
LOG_PREFIX = "overlayd-np "       # + "in ns/pod" / "eg ns/pod" (the drop chain's first pod)


@dataclasses.dataclass(frozen=True)
class NodeInfo:
    """This node, as the compile step needs it. Addresses and CIDRs are strings."""
    name: str
    pod_cidrs: tuple[str, ...] = ()       # this node's pod subnets (its lease), per family
    addresses: tuple[str, ...] = ()       # the node's own addresses: traffic from them is allowed
    log_group: int = 0                    # nflog group for denied packets; 0: no log
    log_rate: int = 10                    # denied packets logged per second at most (per chain)


@dataclasses.dataclass(frozen=True)
class NftSet:
    type: str
    flags: tuple[str, ...] = ()
    elements: frozenset = frozenset()


@dataclasses.dataclass(frozen=True)
class NftMap:
    type: str
    elements: tuple[tuple[str, str], ...] = ()     # (key, verdict), sorted


@dataclasses.dataclass(frozen=True)
class Stats:
    policies: int = 0            # policies selecting at least one local pod (rendered)
    pods_selected: int = 0       # local pods isolated in at least one direction
    local_pods: int = 0
    elements: int = 0            # set and map elements in the model


@dataclasses.dataclass(frozen=True)
class NftModel:
    sets: dict          # name -> NftSet
    maps: dict          # name -> NftMap
    chains: dict        # name -> tuple of rule texts (base chain "forward" included)
    counters: tuple     # named counters (drops per policy and direction), sorted
    log_group: int = 0
    stats: Stats = Stats()
    counter_of: dict = dataclasses.field(default_factory=dict, compare=False)  # counter -> (policy key, dir)


def _h(*parts) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:12]


def counter_name(policy: Policy, direction: str) -> str:
    name = f"drop_{PREFIX[direction]}_{policy.namespace}_{policy.name}"
    return name if len(name) <= 120 and re.fullmatch(r"[A-Za-z0-9_.\-]+", name) else f"drop_{_h(name)}"


def _nets(items: Iterable) -> dict:
    """{4: [...], 6: [...]} disjoint, collapsed prefixes as strings."""
    by = {4: [], 6: []}
    for n in items:
        net = ipaddress.ip_network(n, strict=False)
        by[net.version].append(net)
    return {v: [str(n) for n in ipaddress.collapse_addresses(nets)] for v, nets in by.items()}


def _addresses(ips: Iterable[str], blocks: Iterable) -> dict:
    """{4: [...], 6: [...]}: single addresses and ipBlock networks as disjoint interval-set elements.

    The fast path (no blocks) never builds ipaddress objects for the pods' addresses: those are
    distinct by construction. With blocks, addresses inside a block are left to the block."""
    blocks = list(blocks)
    out = {4: set(), 6: set()}
    if not blocks:
        for ip in ips:
            out[6 if ":" in ip else 4].add(ip)
        return {v: sorted(e) for v, e in out.items()}
    nets = _nets(str(b) for b in blocks)
    ranges = [ipaddress.ip_network(n) for v in (4, 6) for n in nets[v]]
    for ip in ips:
        addr = ipaddress.ip_address(ip)
        if not any(addr.version == r.version and addr in r for r in ranges):
            out[addr.version].add(ip)
    return {v: sorted(out[v] | set(nets[v])) for v in (4, 6)}


def _merge(spans) -> list[tuple[int, int]]:
    """Overlapping or adjacent port ranges merged: an nft interval set refuses overlaps."""
    out: list = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _port_exprs(ranges) -> list[str]:
    """nft match expressions for (protocol, lo, hi) ranges; [] when nothing can match."""
    protos = sorted({p.lower() for p, lo, _ in ranges if lo is None})
    by_proto: dict = {}
    for p, lo, hi in ranges:
        if lo is not None and p.lower() not in protos:
            by_proto.setdefault(p.lower(), []).append((lo, hi))
    ported = [f"{p} . {lo}" + (f"-{hi}" if hi != lo else "")
              for p in sorted(by_proto) for lo, hi in _merge(by_proto[p])]
    out = []
    if protos:
        out.append(f"meta l4proto {{ {', '.join(protos)} }}")
    if ported:
        out.append(f"meta l4proto . th dport {{ {', '.join(ported)} }}")
    return out


class _Builder:
    def __init__(self, cluster: Cluster, node: NodeInfo):
        self.cluster, self.node = cluster, node
        self.sets: dict = {}
        self.chains: dict = {}
        self.counters: dict = {}

    def peer_set(self, direction: str, members: list) -> str:
        """One interval set per family for the peers of several rules that share a port match
        (their union: (P1 x E) | (P2 x E) = (P1 | P2) x E). Named after the rules, never after
        the addresses, so pod churn changes its elements only."""
        base = f"pr-{_h(direction, *sorted((p.key, idx) for p, idx, _ in members))}"
        if f"{base}-4" not in self.sets:
            ips, blocks = [], []
            for policy, _, rule in members:
                for peer in rule.peers:
                    if peer.ip_block is not None:
                        blocks += block_nets(peer)
                    else:
                        ips += [ip for pod in peer_pods(self.cluster, policy, peer) for ip in pod.ips]
            if len(members) > 1 and not blocks:
                ips = set(ips)
            nets = _addresses(ips, blocks)
            for v in (4, 6):
                self.sets[f"{base}-{v}"] = NftSet(ADDR_TYPE[v], ("interval",), frozenset(nets[v]))
        return base

    def named_set(self, policy: Policy, idx: int, rule: Rule, specs) -> str:
        """Egress named ports: (destination address, protocol, its port) for every destination pod."""
        base = f"pn-{_h(policy.key, idx)}"
        if f"{base}-4" not in self.sets:
            if rule.peers is None:
                pods = [p for p in self.cluster.pods.values() if addressable(p)]
            else:
                pods = {p.key: p for peer in rule.peers for p in peer_pods(self.cluster, policy, peer)}
                for p in self.cluster.pods.values():   # pod addresses inside an ipBlock count too
                    if addressable(p) and any(peer.ip_block is not None and any(peer.ip_block.contains(ip) for ip in p.ips)
                                              for peer in rule.peers):
                        pods[p.key] = p
                pods = list(pods.values())
            elems = {4: set(), 6: set()}
            for pod in pods:
                for spec in specs:
                    for proto, lo, _ in port_ranges(spec, pod):
                        for ip in pod.ips:
                            elems[ipaddress.ip_address(ip).version].add(f"{ip} . {proto.lower()} . {lo}")
            for v in (4, 6):
                self.sets[f"{base}-{v}"] = NftSet(f"{ADDR_TYPE[v]} . inet_proto . inet_service", (),
                                                  frozenset(elems[v]))
        return base

    def pod_chain(self, pod: Pod, direction: str, policies: list[Policy]) -> str:
        """The chain of one pod's rules. Rules are grouped by their port match, so a pod that a
        thousand policies allow from different peers on the same port walks two rules, not 2,000."""
        addr = "saddr" if direction == INGRESS else "daddr"
        target = pod if direction == INGRESS else None
        open_ports: set = set()         # port matches allowed from every peer
        groups: dict = {}               # port match -> [(policy, idx, rule)]
        named_lines: list = []
        for policy in policies:
            for idx, rule in enumerate(rules_of(policy, direction)):
                if rule.ports is None:
                    exprs, named = [""], []
                else:
                    ranges, named = [], []
                    for spec in rule.ports:
                        if direction == EGRESS and isinstance(spec.port, str):
                            named.append(spec)
                        else:
                            ranges += port_ranges(spec, target)
                    exprs = _port_exprs(ranges)
                for e in exprs:
                    if rule.peers is None:
                        open_ports.add(e)
                    else:
                        groups.setdefault(e, []).append((policy, idx, rule))
                if named:
                    base = self.named_set(policy, idx, rule, named)
                    named_lines += [f"{FAMILY[v]} daddr . meta l4proto . th dport @{base}-{v} return" for v in (4, 6)]
        if "" in open_ports:                 # everything is allowed: nothing else matters
            lines = ["return"]
        else:
            lines = [f"{e} return" for e in sorted(open_ports)]
            for e, members in sorted(groups.items()):
                base = self.peer_set(direction, members)
                lines += [f"{FAMILY[v]} {addr} @{base}-{v}{' ' + e if e else ''} return" for v in (4, 6)]
            lines += named_lines
        if self.node.log_group:
            lines.append(f"limit rate {self.node.log_rate}/second log group {self.node.log_group} "
                         f"prefix \"{LOG_PREFIX}{PREFIX[direction]}\"")
        names = []
        for policy in policies:
            name = counter_name(policy, direction)
            self.counters[name] = (policy.key, direction)
            names.append(f"counter name \"{name}\"")
        # A rule holds at most 128 expressions (NFT_RULE_MAXEXPRS): counters in rules of 60.
        chunks = [names[i:i + COUNTERS_PER_RULE] for i in range(0, len(names), COUNTERS_PER_RULE)] or [[]]
        lines += [" ".join(c) for c in chunks[:-1]]
        lines.append(" ".join(chunks[-1] + ["drop"]))
        name = f"{PREFIX[direction]}-{_h(*lines)}"
        self.chains[name] = tuple(lines)
        return name


def compile_model(cluster: Cluster, node: NodeInfo) -> NftModel:
    b = _Builder(cluster, node)
    local = sorted((p for p in cluster.pods.values() if p.node == node.name and addressable(p)),
                   key=lambda p: p.key)
    maps = {f"{PREFIX[d]}{v}": [] for d in (INGRESS, EGRESS) for v in (4, 6)}
    active, selected = set(), set()
    for pod in local:
        for direction in (INGRESS, EGRESS):
            policies = selecting(cluster, pod, direction)
            if not policies:
                continue
            active.update(p.key for p in policies)
            selected.add(pod.key)
            chain = b.pod_chain(pod, direction, policies)
            for ip in pod.ips:
                maps[f"{PREFIX[direction]}{ipaddress.ip_address(ip).version}"].append((ip, f"jump {chain}"))
    node_nets, pod_nets = _nets(node.addresses), _nets(node.pod_cidrs)
    known = _addresses((ip for p in local for ip in p.ips), ())
    sets = dict(b.sets)
    for v in (4, 6):
        sets[f"node{v}"] = NftSet(ADDR_TYPE[v], ("interval",), frozenset(node_nets[v]))
        sets[f"podnet{v}"] = NftSet(ADDR_TYPE[v], ("interval",), frozenset(pod_nets[v]))
        sets[f"known{v}"] = NftSet(ADDR_TYPE[v], ("interval",), frozenset(known[v]))
    forward = ["ct state established,related accept",
               "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, "
               "nd-router-advert, nd-redirect } accept",
               "ip saddr @node4 accept", "ip6 saddr @node6 accept"]
    for v in (4, 6):
        f = FAMILY[v]
        # A TCP connection to or from a pod must start with a SYN. Without this, conntrack's loose
        # pickup re-creates a connection the conntrack cut just deleted from its next mid-stream
        # packet, from whichever side sends first (a delayed ACK of the allowed side): the denied
        # side's packets would then pass as that new entry's replies.
        for end in ("saddr", "daddr"):
            forward.append(f"{f} {end} @podnet{v} tcp flags & (fin | syn | rst | ack) != syn ct state new "
                           f"counter name \"drop_midstream\" drop")
        forward += [f"{f} saddr @podnet{v} {f} saddr != @known{v} counter name \"drop_unknown_pod\" drop",
                    f"{f} daddr @podnet{v} {f} daddr != @known{v} counter name \"drop_unknown_pod\" drop"]
    forward += ["ip saddr vmap @eg4", "ip6 saddr vmap @eg6", "ip daddr vmap @in4", "ip6 daddr vmap @in6"]
    chains = dict(b.chains)
    chains["forward"] = tuple(forward)
    nmaps = {name: NftMap(ADDR_TYPE[int(name[-1])] + " : verdict", tuple(sorted(elems)))
             for name, elems in maps.items()}
    counters = dict(b.counters)
    counters["drop_unknown_pod"] = ("", "")
    counters["drop_midstream"] = ("", "")
    n_elems = sum(len(s.elements) for s in sets.values()) + sum(len(m.elements) for m in nmaps.values())
    stats = Stats(len(active), len(selected), len(local), n_elems)
    return NftModel(sets, nmaps, chains, tuple(sorted(counters)), node.log_group, stats, counters)
