"""Pure checks (no lab): the upstream truth tables and the reference evaluator agree, and the
evaluator gets the API's corner cases right. If they disagreed, either the transcription of a case
or the evaluator is wrong, and the lab run would prove nothing."""
from __future__ import annotations

import pytest

from . import reference as ref
from .model import NAMESPACES, State, pod_keys, render, resolve
from .upstream import CASES


def fake_ips(dual: bool = False) -> dict:
    ips = {}
    for i, key in enumerate(pod_keys()):
        node = i % 3 + 1
        ips[key] = (f"10.244.{node}.{10 + i}",) + ((f"fd10:244:0:{node}::{10 + i:x}",) if dual else ())
    return ips


def run_case(case, ips, family=4):
    state = State()
    for step in case.steps:
        if step.delete_all:
            state.policies.clear()
        for ns, name in step.delete:
            state.policies.pop((ns, name), None)
        for p in step.apply:
            p = resolve(p, ips, family)
            state.policies[(p["metadata"]["namespace"], p["metadata"]["name"])] = p
        state.pod_labels.update(step.pod_labels)
        state.ns_labels.update(step.ns_labels)
        for check in step.checks:
            yield check, state.expected(ips, check.port, check.proto, family), check.expect().cells


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_upstream_table_matches_reference(case):
    for family, ips in ((4, fake_ips()), (6, fake_ips(dual=True))):
        for check, computed, table in run_case(case, ips, family):
            assert computed == table, (f"{case.name} {check.port}/{check.proto} IPv{family}: reference (rows) "
                                       f"vs upstream table, '!' marks a difference\n"
                                       f"{render(table, pod_keys(), computed)}")


def test_every_upstream_case_is_here_once():
    assert len(CASES) == 48
    assert len({c.upstream for c in CASES}) == 48
    assert len({c.name for c in CASES}) == 48


def _cluster(**extra_pods):
    pods = [ref.pod("x", "a", {"app": "web"}, ["10.0.0.1"], [("http", 8080, "TCP")]),
            ref.pod("x", "b", {"role": "fe"}, ["10.0.0.2"]),
            ref.pod("y", "c", {"role": "fe"}, ["10.0.0.3"]),
            ref.pod("x", "h", {"app": "web"}, ["10.0.9.9"], host_network=True)]
    return ref.RefCluster({"x": {"kubernetes.io/metadata.name": "x"},
                           "y": {"kubernetes.io/metadata.name": "y", "team": "blue"}}, pods)


def _np(ns, spec):
    return {"metadata": {"namespace": ns, "name": "p"}, "spec": spec}


def test_policy_types_default_from_egress_presence():
    assert ref.policy_types(_np("x", {"podSelector": {}})) == {"Ingress"}
    assert ref.policy_types(_np("x", {"podSelector": {}, "egress": [{}]})) == {"Ingress", "Egress"}
    assert ref.policy_types(_np("x", {"podSelector": {}, "egress": []})) == {"Ingress"}


def test_named_port_resolves_on_destination_and_protocol():
    c = _cluster()
    a, b = c.pods[0], c.pods[1]
    pol = [_np("x", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": "http"}]}]})]
    assert ref.allowed(c, pol, b, a, 8080, "TCP")
    assert not ref.allowed(c, pol, b, a, 8081, "TCP")
    assert not ref.allowed(c, pol, b, a, 8080, "UDP")
    # a name no pod declares matches nothing
    pol = [_np("x", {"podSelector": {}, "ingress": [{"ports": [{"port": "nope"}]}]})]
    assert not ref.allowed(c, pol, a, b, 80, "TCP")


def test_end_port_range_and_default_tcp():
    c = _cluster()
    a, b = c.pods[0], c.pods[1]
    pol = [_np("x", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": 80, "endPort": 90}]}]})]
    assert ref.allowed(c, pol, b, a, 85, "TCP")
    assert not ref.allowed(c, pol, b, a, 91, "TCP")
    assert not ref.allowed(c, pol, b, a, 85, "UDP")


def test_selector_operators():
    m = ref.selector_matches
    assert m({}, {})
    assert m({"matchExpressions": [{"key": "k", "operator": "NotIn", "values": ["v"]}]}, {})
    assert not m({"matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}, {})
    assert m({"matchExpressions": [{"key": "k", "operator": "Exists"}]}, {"k": ""})
    assert m({"matchExpressions": [{"key": "k", "operator": "DoesNotExist"}]}, {"j": "1"})
    assert not m({"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "Exists"}]}, {"a": "1"})


def test_ipblock_matches_pod_ips_and_except():
    c = _cluster()
    a, b, cc = c.pods[:3]
    pol = [_np("x", {"podSelector": {"matchLabels": {"app": "web"}},
                     "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.0.0.3/32"]}}]}]})]
    assert ref.allowed(c, pol, b, a, 80, "TCP")
    assert not ref.allowed(c, pol, cc, a, 80, "TCP")


def test_host_network_pods_are_never_targets():
    c = _cluster()
    b, h = c.pods[1], c.pods[3]
    pol = [_np("x", {"podSelector": {}, "ingress": []})]
    assert ref.allowed(c, pol, b, h, 80, "TCP")


def test_namespace_selector_and_pod_selector_in_one_peer():
    c = _cluster()
    a, b, cc = c.pods[:3]
    peer_and = [{"namespaceSelector": {"matchLabels": {"team": "blue"}}, "podSelector": {"matchLabels": {"role": "fe"}}}]
    peer_or = [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}, {"podSelector": {"matchLabels": {"role": "fe"}}}]
    for peers, b_ok in ((peer_and, False), (peer_or, True)):
        pol = [_np("x", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": peers}]})]
        assert ref.allowed(c, pol, cc, a, 80, "TCP")
        assert ref.allowed(c, pol, b, a, 80, "TCP") is b_ok


def test_both_directions_must_allow():
    c = _cluster()
    a, b = c.pods[:2]
    deny_egress_b = _np("x", {"podSelector": {"matchLabels": {"role": "fe"}}, "policyTypes": ["Egress"]})
    assert not ref.allowed(c, [deny_egress_b], b, a, 80, "TCP")
    assert ref.allowed(c, [deny_egress_b], a, b, 80, "TCP")
    assert set(NAMESPACES) == {"x", "y", "z"}
