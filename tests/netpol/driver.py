"""What the suite does with the x/y/z × a/b/c model, wherever the pods run: keep the state the
reference evaluator reads, run a case's steps, and probe until the kernel agrees.

Two places run the pods: the lab (harness.ModelLab: `overlayd lab pod add` namespaces, pod agents)
and a real cluster (e2e/netpol_cluster.py: kubelet pods, `kubectl exec`). Each subclasses
ModelDriver and provides how to write to the API and how to probe:

    _write_policy(policy)            create it, or replace the one of that name
    _delete_policy(ns, name)
    _delete_policies(ns)             every policy of the namespace
    _write_pod_labels(key, labels)   the pod's whole label map
    _write_ns_labels(ns, labels)     the namespace's whole label map
    probe(checks, timeout)           [(port, proto, family)] -> {check: {(src, dst): bool}}, one round

Waiting is on the condition: expect() probes the whole matrix, and probes again until the observed
matrix equals the expected one or the deadline passes. A connection that succeeds is proof of
"allowed"; a probe that times out may only be slow, so a denial is believed only when the whole
matrix agrees in one round.
"""
from __future__ import annotations

import time
from typing import Iterable

from .model import NAMESPACES, State, default_ns_labels, default_pod_labels, pod_keys, render, resolve


class ModelDriver:
    def __init__(self, *, timeout: float, deadline: float):
        self.timeout = timeout           # the first round's probe timeout (seconds); later rounds wait longer
        self.deadline = deadline         # seconds a check may take before it fails
        self.state = State()
        self.ips: dict = {}              # "x/a" -> (addresses)
        self.nodes: dict = {}            # "x/a" -> node name
        self.rounds = 0

    # -- what each place provides -----------------------------------------------------------------
    def _write_policy(self, policy: dict) -> None:
        raise NotImplementedError

    def _delete_policy(self, ns: str, name: str) -> None:
        raise NotImplementedError

    def _delete_policies(self, ns: str) -> None:
        raise NotImplementedError

    def _write_pod_labels(self, key: str, labels: dict) -> None:
        raise NotImplementedError

    def _write_ns_labels(self, ns: str, labels: dict) -> None:
        raise NotImplementedError

    def probe(self, checks: list[tuple], timeout: float) -> dict:
        raise NotImplementedError

    # -- changes --------------------------------------------------------------------------------
    def apply(self, policy: dict, family: int = 4) -> dict:
        policy = resolve(policy, self.ips, family)
        self._write_policy(policy)
        self.state.policies[(policy["metadata"]["namespace"], policy["metadata"]["name"])] = policy
        return policy

    def delete(self, ns: str, name: str) -> None:
        self._delete_policy(ns, name)
        self.state.policies.pop((ns, name), None)

    def delete_all(self) -> None:
        for ns in NAMESPACES:
            self._delete_policies(ns)
        self.state.policies.clear()

    def label_pod(self, key: str, labels: dict) -> None:
        self._write_pod_labels(key, labels)
        self.state.pod_labels[key] = dict(labels)

    def label_namespace(self, ns: str, labels: dict) -> None:
        self._write_ns_labels(ns, labels)
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

    # -- checking -------------------------------------------------------------------------------
    def expect(self, expected: dict, what: str = "", deadline: float | None = None) -> dict:
        """expected: {(port, proto, family): {(src, dst): bool}}. Probe until equal; raise with the
        tables if the deadline (default self.deadline) passes. Returns the last observation."""
        wait = self.deadline if deadline is None else deadline
        until = time.monotonic() + wait
        timeout = self.timeout
        while True:
            observed = self.probe(list(expected), timeout)
            self.rounds += 1
            if observed == expected:
                return observed
            if time.monotonic() > until:
                raise AssertionError(self.explain(expected, observed, what, wait))
            timeout = min(timeout * 1.5, 2.0)

    def explain(self, expected: dict, observed: dict, what: str, waited: float | None = None) -> str:
        waited = self.deadline if waited is None else waited
        parts = [f"{what}: the observed reachability differs after {waited:.0f}s "
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


def case_checks(case, family: int = 4) -> list[tuple]:
    """Every (port, proto, family) a case probes."""
    return sorted({(c.port, c.proto, family) for s in case.steps for c in s.checks})


def run_case(model: ModelDriver, case, family: int = 4, first_deadline: float | None = None) -> None:
    """An upstream case (tests/netpol/upstream.py): back to a clean state, the full matrix open,
    then each step's changes and its expected tables. `first_deadline` bounds the clean-state
    check (longer for a cluster's first case, while the engines start)."""
    checks = case_checks(case, family)
    model.reset()
    model.expect({c: {k: True for k in model.reference([c])[c]} for c in checks}, f"{case.name}: before",
                 first_deadline)
    for i, step in enumerate(case.steps, 1):
        model.run_step(step, family)
        expected = {(c.port, c.proto, family): c.expect().cells for c in step.checks}
        model.expect(expected, f"{case.name} (upstream: {case.upstream}), step {i}")
