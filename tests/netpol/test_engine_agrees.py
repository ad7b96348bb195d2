"""The engine's own verdict function (overlayd.policy.evaluate, which `overlayd policy explain` and the
conntrack cut use, and which shares its semantics with the compile step) against the independent
reference evaluator, over the upstream cases and thousands of generated steps. Pure and fast: the
lab suite proves the kernel; this pins the semantics on many more cases than the lab can probe."""
from __future__ import annotations

import copy

import pytest

from overlayd.policy.evaluate import connection, pods_by_ip
from overlayd.policy.model import parse_namespace, parse_pod, parse_policy
from overlayd.policy.semantics import Cluster

from .generator import PROBES, scenario
from .model import NAMESPACES, State, container_ports, pod_keys, resolve
from .test_model import fake_ips
from .upstream import CASES


def as_stored(policy: dict) -> dict:
    """What the API server stores (its defaulting, pkg/apis/networking/v1/defaults.go): no
    policyTypes becomes Ingress, plus Egress when egress has rules; the engine only ever sees that."""
    policy = copy.deepcopy(policy)
    spec = policy["spec"]
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
    for direction in ("ingress", "egress"):
        for rule in spec.get(direction) or []:
            for port in rule.get("ports") or []:
                port.setdefault("protocol", "TCP")
    return policy


def engine_cluster(state: State, ips: dict) -> Cluster:
    nss = [parse_namespace({"metadata": {"name": n, "labels": state.ns_labels[n]}}) for n in NAMESPACES]
    pods = []
    for i, key in enumerate(pod_keys()):
        ns, name = key.split("/")
        pods.append(parse_pod({"metadata": {"name": name, "namespace": ns, "labels": state.pod_labels[key]},
                               "spec": {"nodeName": f"n{i % 3 + 1}", "containers": [{"name": "c", "ports": [
                                   {"name": n, "containerPort": p, "protocol": pr} for n, p, pr in container_ports()]}]},
                               "status": {"phase": "Running", "podIPs": [{"ip": a} for a in ips[key]]}}))
    return Cluster.of(pods, nss, [parse_policy(as_stored(p)) for p in state.policies.values()])


def compare(state: State, ips: dict, checks, what: str) -> int:
    cluster = engine_cluster(state, ips)
    by_ip = pods_by_ip(cluster)
    n = 0
    for port, proto, family in checks:
        expected = state.expected(ips, port, proto, family)
        for (s, d), want in expected.items():
            sip = next(a for a in ips[s] if (":" in a) == (family == 6))
            dip = next(a for a in ips[d] if (":" in a) == (family == 6))
            eg, ing = connection(cluster, sip, dip, proto, port, by_ip)
            got = eg.allowed and ing.allowed
            assert got == want, (f"{what}: {s} -> {d} {port}/{proto} IPv{family}: engine says "
                                 f"{'allowed' if got else 'denied'}, the reference {'allowed' if want else 'denied'}; "
                                 f"egress {eg}, ingress {ing}; policies {list(state.policies.values())}")
            n += 1
    return n


def apply_step(state: State, step, ips: dict, family: int = 4) -> None:
    if step.delete_all:
        state.policies.clear()
    for key in step.delete:
        state.policies.pop(tuple(key), None)
    state.pod_labels.update(step.pod_labels)
    state.ns_labels.update(step.ns_labels)
    for p in step.apply:
        p = resolve(p, ips, family)
        state.policies[(p["metadata"]["namespace"], p["metadata"]["name"])] = p


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_engine_agrees_on_upstream_case(case):
    ips = fake_ips(dual=True)
    for family in (4, 6):
        state = State()
        for step in case.steps:
            apply_step(state, step, ips, family)
            compare(state, ips, [(c.port, c.proto, fam) for c in step.checks for fam in (4, 6)], case.name)


@pytest.mark.parametrize("seed", range(100, 103))
def test_engine_agrees_on_generated_steps(seed):
    ips = fake_ips(dual=True)
    state = State()
    checks = [(port, proto, fam) for port, proto in PROBES + ((80, "SCTP"),) for fam in (4, 6)]
    for i, step in enumerate(scenario(seed, 30), 1):
        apply_step(state, step, ips, family=4 if i % 2 else 6)
        compare(state, ips, checks, f"seed {seed} step {i}")
