"""Drives the x/y/z × a/b/c model in a lab: pods through `overlayd.lab.pods` (what
`overlayd lab pod add` does), policies and labels through the real API, and reachability through
the pod agents' probes (real packets between the pods' network namespaces).

Waiting is on the condition: a check probes the whole matrix, and probes again until the observed
matrix equals the expected one or the deadline passes. A connection that succeeds is proof of
"allowed"; a probe that times out may only be slow, so a denial is believed only when the whole
matrix agrees in one round.
"""
from __future__ import annotations

import concurrent.futures
import itertools
import os
import random
import time
from typing import Iterable, Optional

from overlayd.lab import pods as labpods

from .model import NAMESPACES, POD_NAMES, State, container_ports, default_ns_labels, default_pod_labels, pod_keys, render, resolve

NP_PATH = "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"


def node_for(key: str, nodes: int) -> str:
    """x/a, y/a, z/a on n1; x/b, ... on n2; x/c, ... on n3: same-node and cross-node pairs both."""
    return f"n{POD_NAMES.index(key.split('/')[1]) % nodes + 1}"


class ModelLab:
    def __init__(self, lab, *, timeout: float = 0.25, deadline: float = float(os.environ.get("NETPOL_DEADLINE", "90"))):
        self.lab = lab
        self.timeout = timeout
        self.deadline = deadline
        self.state = State()
        self.ips: dict = {}
        self.sockets: dict = {}
        self.nodes: dict = {}
        self.families = (4, 6) if lab.dual_stack else (4,)
        self.rounds = 0

    # -- set-up ---------------------------------------------------------------------------------
    def deploy(self) -> "ModelLab":
        keys = pod_keys()
        for key in keys:
            ns, name = key.split("/")
            spec = labpods.PodSpec(ns, name, node_for(key, len(self.lab.nodes)), default_pod_labels(key),
                                   container_ports())
            pod = labpods.add(self.lab, spec)
            self.ips[key] = tuple(a for a in (pod.ip, pod.ip6) if a)
            self.sockets[key] = pod.agent_socket
            self.nodes[key] = pod.node
        return self

    @property
    def api(self):
        return self.lab.api

    # -- changes --------------------------------------------------------------------------------
    def apply(self, policy: dict, family: int = 4) -> dict:
        policy = resolve(policy, self.ips, family)
        ns, name = policy["metadata"]["namespace"], policy["metadata"]["name"]
        path = NP_PATH.format(ns=ns)
        try:
            self.api.request("POST", path, policy)
        except Exception as err:
            if getattr(err, "status", None) != 409:
                raise
            self.api.request("PUT", f"{path}/{name}", policy)
        self.state.policies[(ns, name)] = policy
        return policy

    def delete(self, ns: str, name: str) -> None:
        self.api.request("DELETE", f"{NP_PATH.format(ns=ns)}/{name}")
        self.state.policies.pop((ns, name), None)

    def delete_all(self) -> None:
        for ns in NAMESPACES:
            self.api.request("DELETE", NP_PATH.format(ns=ns))
        self.state.policies.clear()

    def label_pod(self, key: str, labels: dict) -> None:
        ns, name = key.split("/")
        labpods.set_labels(self.lab, ns, name, labels)
        self.state.pod_labels[key] = dict(labels)

    def label_namespace(self, ns: str, labels: dict) -> None:
        labpods.set_namespace_labels(self.lab, ns, labels)
        self.state.ns_labels[ns] = dict(labels)

    def run_step(self, step, family: int = 4) -> None:
        if step.delete_all:
            self.delete_all()
        for ns, name in step.delete:
            self.delete(ns, name)
        for key, labels in step.pod_labels.items():
            self.label_pod(key, labels)
        for ns, labels in step.ns_labels.items():
            self.label_namespace(ns, labels)
        for p in step.apply:
            self.apply(p, family)

    def reset(self) -> None:
        """Back to no policies and the default labels (only what differs is written)."""
        if self.state.policies:
            self.delete_all()
        for key in pod_keys():
            if self.state.pod_labels[key] != default_pod_labels(key):
                self.label_pod(key, default_pod_labels(key))
        for ns in NAMESPACES:
            if self.state.ns_labels[ns] != default_ns_labels(ns):
                self.label_namespace(ns, default_ns_labels(ns))

    # -- probing --------------------------------------------------------------------------------
    def _addr(self, key: str, family: int) -> str:
        return next(a for a in self.ips[key] if (":" in a) == (family == 6))

    def probe(self, checks: list[tuple], timeout: Optional[float] = None) -> dict:
        """checks: [(port, proto, family)] -> {(port, proto, family): {(src, dst): bool}}, one round."""
        timeout = timeout or self.timeout
        keys = pod_keys()
        out = {c: {} for c in checks}
        stream = [c for c in checks if c[1] in ("TCP", "UDP")]
        sctp = [c for c in checks if c[1] == "SCTP"]

        def from_source(src):
            targets = [(dst, c) for c in stream for dst in keys if dst != src]
            if not targets:
                return src, []
            reply = labpods.agent_request(self.sockets[src], {
                "op": "probe", "timeout": timeout,
                "targets": [[self._addr(dst, c[2]), c[0], c[1]] for dst, c in targets]})
            return src, [(dst, c, (answer or "").split(" ")[0] == dst) for (dst, c), answer in zip(targets, reply["results"])]

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(keys)) as pool:
            for src, results in pool.map(from_source, keys):
                for dst, c, ok in results:
                    out[c][(src, dst)] = ok
        if sctp:
            self._probe_sctp(sctp, out, timeout)
        self.rounds += 1
        return out

    def seen_sources(self, port: int = 80, proto: str = "TCP", family: int = 4) -> dict:
        """{(src, dst): the source address dst's server saw} over every pair, one round."""
        out = {}
        for src in pod_keys():
            dsts = [d for d in pod_keys() if d != src]
            reply = labpods.agent_request(self.sockets[src], {"op": "probe", "timeout": 2.0, "targets": [
                [self._addr(d, family), port, proto] for d in dsts]})
            for d, answer in zip(dsts, reply["results"]):
                out[(src, d)] = answer.split(" ")[1] if answer else None
        return out

    def _probe_sctp(self, checks: list[tuple], out: dict, timeout: float) -> None:
        """Crafted SCTP INITs (no SCTP sockets on this kernel): a cell is allowed when the
        destination pod's raw socket saw the INIT with the probe's tag."""
        keys = pod_keys()
        tags = {}
        tag_iter = iter(random.sample(range(1, 2 ** 31), len(keys) * len(keys) * len(checks)))
        for key in keys:                                       # drop what earlier rounds left
            labpods.agent_request(self.sockets[key], {"op": "sctp_seen"})
        for src in keys:
            targets = []
            for c in checks:
                for dst in keys:
                    if dst != src:
                        tag = next(tag_iter)
                        tags[tag] = (c, src, dst)
                        targets.append([self._addr(dst, c[2]), c[0], tag])
            labpods.agent_request(self.sockets[src], {"op": "sctp_send", "targets": targets})
        for c, src, dst in tags.values():
            out[c][(src, dst)] = False
        time.sleep(min(timeout, 0.3))      # packets in flight; the answer is what arrived, not a wait on state
        for dst in keys:
            for src_ip, port, tag in labpods.agent_request(self.sockets[dst], {"op": "sctp_seen"})["seen"]:
                if tag in tags and tags[tag][2] == dst:
                    c, src, _ = tags[tag]
                    out[c][(src, dst)] = True

    def expect(self, expected: dict, what: str = "") -> dict:
        """expected: {(port, proto, family): {(src, dst): bool}}. Probe until equal; raise with the
        tables if the deadline passes. Returns the last observation."""
        deadline = time.monotonic() + self.deadline
        timeout = self.timeout
        while True:
            observed = self.probe(list(expected), timeout)
            if observed == expected:
                return observed
            if time.monotonic() > deadline:
                raise AssertionError(self.explain(expected, observed, what))
            timeout = min(timeout * 1.5, 2.0)

    def explain(self, expected: dict, observed: dict, what: str) -> str:
        parts = [f"{what}: the observed reachability differs after {self.deadline:.0f}s "
                 f"(rows connect to columns; '.' allowed, 'X' denied, '!' differs from expected)"]
        for c in expected:
            if observed[c] != expected[c]:
                wrong = [f"{s}->{d}" for (s, d), v in expected[c].items() if observed[c][(s, d)] != v]
                parts.append(f"{c[0]}/{c[1]} IPv{c[2]} ({len(wrong)} cells: {', '.join(wrong[:12])})\n"
                             f"expected:\n{render(expected[c], pod_keys())}\nobserved:\n"
                             f"{render(observed[c], pod_keys(), expected[c])}")
        parts.append("policies:\n" + "\n".join(f"  {k}: {v['spec']}" for k, v in self.state.policies.items()))
        parts.append("nodes: " + ", ".join(f"{k}@{v}" for k, v in self.nodes.items()))
        return "\n".join(parts)

    def reference(self, checks: Iterable[tuple]) -> dict:
        return {(port, proto, fam): self.state.expected(self.ips, port, proto, fam) for port, proto, fam in checks}
