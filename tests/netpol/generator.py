"""A seeded, Cyclonus-style generator of NetworkPolicy scenarios over the x/y/z × a/b/c model.

A scenario is a chain of steps; each step mutates the cluster one way (a policy added, replaced or
deleted, a pod's or a namespace's labels changed) and is one generated case: the suite probes it and
compares with the reference evaluator. Policies are drawn from the building blocks the API has
(target selectors, pod/namespace/ipBlock peers, numeric/named/ranged ports, protocols, policyTypes),
so a few hundred steps cover their combinations. Same seed, same scenario.
"""
from __future__ import annotations

import random
from typing import Optional

from .model import NAMESPACES, NS_LABEL, POD_NAMES, host_cidr, pod_keys, wide_cidr
from .upstream import Check, Step, expr, labels, policy

POD_EXTRA = {"tier": ("front", "back"), "env": ("dev", "prod")}
NS_EXTRA = {"team": ("red", "blue")}
PROBES = ((80, "TCP"), (81, "TCP"), (80, "UDP"), (81, "UDP"))


class Generator:
    def __init__(self, seed: int, *, max_policies: int = 4, ip_blocks: bool = True):
        self.rng = random.Random(seed)
        self.seed = seed
        self.max_policies = max_policies
        self.ip_blocks = ip_blocks
        self.live: dict = {}                       # (ns, name) -> policy
        self.serial = 0
        self.pod_labels = {k: {"pod": k.split("/")[1]} for k in pod_keys()}
        self.ns_labels = {n: {NS_LABEL: n} for n in NAMESPACES}

    # -- building blocks ------------------------------------------------------------------------
    def pod_selector(self, allow_empty: bool = True) -> dict:
        r = self.rng
        choice = r.choice(["empty", "pod", "pod", "extra", "in", "notin", "exists", "doesnotexist"]
                          if allow_empty else ["pod", "extra", "in", "notin", "exists"])
        if choice == "empty":
            return {}
        if choice == "pod":
            return labels(pod=r.choice(POD_NAMES))
        if choice == "extra":
            key = r.choice(list(POD_EXTRA))
            return labels(**{key: r.choice(POD_EXTRA[key])})
        if choice == "in":
            return expr("pod", "In", *r.sample(POD_NAMES, r.randint(1, 2)))
        if choice == "notin":
            return expr("pod", "NotIn", r.choice(POD_NAMES))
        if choice == "exists":
            return expr(r.choice(list(POD_EXTRA)), "Exists")
        return expr(r.choice(list(POD_EXTRA)), "DoesNotExist")

    def ns_selector(self) -> dict:
        r = self.rng
        choice = r.choice(["empty", "name", "name", "notin", "team", "teamexists"])
        if choice == "empty":
            return {}
        if choice == "name":
            return labels(**{NS_LABEL: r.choice(NAMESPACES)})
        if choice == "notin":
            return expr(NS_LABEL, "NotIn", r.choice(NAMESPACES))
        if choice == "team":
            return labels(team=r.choice(NS_EXTRA["team"]))
        return expr("team", "Exists")

    def peer(self) -> dict:
        r = self.rng
        kind = r.choice(["pod", "ns", "both", "both", "ip"] if self.ip_blocks else ["pod", "ns", "both"])
        if kind == "pod":
            return {"podSelector": self.pod_selector()}
        if kind == "ns":
            return {"namespaceSelector": self.ns_selector()}
        if kind == "both":
            return {"podSelector": self.pod_selector(), "namespaceSelector": self.ns_selector()}
        key = r.choice(pod_keys())
        if r.random() < 0.5:
            return {"ipBlock": {"cidr": host_cidr(key)}}
        return {"ipBlock": {"cidr": wide_cidr(key), "except": [host_cidr(r.choice(pod_keys()))]}}

    def ports(self) -> Optional[list]:
        r = self.rng
        if r.random() < 0.4:
            return None
        out = []
        for _ in range(r.randint(1, 2)):
            kind = r.choice(["num", "num", "named", "range", "proto"])
            proto = r.choice(["TCP", "UDP", None])
            if kind == "num":
                p = {"port": r.choice((80, 81))}
            elif kind == "named":
                proto_name = proto or "TCP"
                # sometimes a name whose protocol disagrees with the rule's: it matches nothing
                name_proto = proto_name if r.random() < 0.8 else r.choice(["tcp", "udp"]).upper()
                p = {"port": f"serve-{r.choice((80, 81))}-{name_proto.lower()}"}
            elif kind == "range":
                p = {"port": 79 + r.randint(0, 1), "endPort": 80 + r.randint(0, 1)}
            else:
                p = {}
            if proto:
                p["protocol"] = proto
            out.append(p)
        return out

    def rules(self, direction: str) -> list:
        r = self.rng
        out = []
        for _ in range(r.choice((0, 1, 1, 2))):
            rule = {}
            if r.random() < 0.8:
                rule["from" if direction == "ingress" else "to"] = [self.peer() for _ in range(r.randint(1, 2))]
            ports = self.ports()
            if ports:
                rule["ports"] = ports
            out.append(rule)
        return out

    def new_policy(self, name: Optional[str] = None, ns: Optional[str] = None) -> dict:
        r = self.rng
        self.serial += 1
        ns = ns or r.choice(NAMESPACES)
        name = name or f"gen-{self.seed}-{self.serial}"
        kind = r.choice(["ingress", "ingress", "egress", "both", "implicit"])
        target = self.pod_selector()
        if kind == "ingress":
            return policy(ns, name, target, ingress=self.rules("ingress"))
        if kind == "egress":
            return policy(ns, name, target, egress=self.rules("egress"))
        if kind == "both":
            return policy(ns, name, target, ingress=self.rules("ingress"), egress=self.rules("egress"))
        # no policyTypes: Ingress, plus Egress only if egress rules are present
        p = policy(ns, name, target, ingress=self.rules("ingress"), egress=self.rules("egress"), types=[])
        p["spec"].pop("policyTypes", None)
        return p

    # -- steps ----------------------------------------------------------------------------------
    def step(self) -> Step:
        r = self.rng
        checks = [Check(port, proto, None) for port, proto in PROBES]
        moves = ["add"] * 4 + ["replace", "delete", "pod_label", "ns_label"]
        if len(self.live) >= self.max_policies:
            moves = ["replace", "delete", "delete", "pod_label", "ns_label"]
        if not self.live:
            moves = ["add"]
        move = r.choice(moves)
        if move == "add":
            p = self.new_policy()
            self.live[(p["metadata"]["namespace"], p["metadata"]["name"])] = p
            return Step(apply=[p], checks=checks)
        if move == "replace":
            ns, name = r.choice(sorted(self.live))
            p = self.new_policy(name, ns)
            self.live[(ns, name)] = p
            return Step(apply=[p], checks=checks)
        if move == "delete":
            key = r.choice(sorted(self.live))
            del self.live[key]
            return Step(delete=[key], checks=checks)
        if move == "pod_label":
            key = r.choice(pod_keys())
            new = {"pod": key.split("/")[1]}
            for k, values in POD_EXTRA.items():
                if r.random() < 0.5:
                    new[k] = r.choice(values)
            self.pod_labels[key] = new
            return Step(pod_labels={key: dict(new)}, checks=checks)
        ns = r.choice(NAMESPACES)
        new = {NS_LABEL: ns}
        if r.random() < 0.6:
            new["team"] = r.choice(NS_EXTRA["team"])
        self.ns_labels[ns] = new
        return Step(ns_labels={ns: dict(new)}, checks=checks)


def scenario(seed: int, steps: int, **kw) -> list[Step]:
    g = Generator(seed, **kw)
    return [g.step() for _ in range(steps)]
