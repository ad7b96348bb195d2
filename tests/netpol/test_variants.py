"""Variants of the model: IPv4 and IPv6 in a dual-stack lab, and same-node against cross-node pairs."""
from __future__ import annotations

import pytest

from .model import Peer, Reachability, pod_keys
from .upstream import CASES, Step, policy

pytestmark = [pytest.mark.e2e, pytest.mark.netpol]

DUAL_STACK_CASES = ["default_deny_all_blocks_both_directions", "pod_and_namespace_selector_in_one_peer_are_anded",
                    "named_port_egress_resolves_on_the_destination", "ipblock_except_carves_out_a_pod",
                    "udp_numeric_port_with_namespace_peer", "pod_label_change_isolates_the_pod"]


@pytest.mark.parametrize("name", DUAL_STACK_CASES)
def test_dual_stack_both_families(model_lab, name):
    """Each family against the reference evaluator; an ipBlock of one family leaves the other's
    traffic to the rest of the policy (so IPv6 egress of an IPv4-only ipBlock rule is denied)."""
    model = model_lab
    case = next(c for c in CASES if c.name == name)
    model.reset()
    for i, step in enumerate(case.steps, 1):
        model.run_step(step, family=4)
        checks = [(c.port, c.proto, fam) for c in step.checks for fam in (4, 6)]
        expected = model.reference(checks)
        for c in step.checks:                       # the upstream table holds for IPv4 (its ipBlocks are IPv4)
            assert expected[(c.port, c.proto, 4)] == c.expect().cells
        model.expect(expected, f"dual-stack {name} step {i}")


@pytest.mark.netpol_smoke
def test_same_node_and_cross_node_pairs_are_enforced_alike(model_lab):
    """x/a, y/a, z/a share n1 (b on n2, c on n3): a deny and an allow must hold on both kinds of pair,
    since the same node's bridge carries one and the VXLAN overlay the other."""
    model = model_lab
    same = [(s, d) for s in pod_keys() for d in pod_keys() if s != d and model.nodes[s] == model.nodes[d]]
    cross = [(s, d) for s in pod_keys() for d in pod_keys() if model.nodes[s] != model.nodes[d]]
    assert same and cross
    model.reset()
    model.run_step(Step(apply=[policy("x", "deny-but-a", {}, ingress=[{"from": [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "a"}}}]}])]))
    expected = Reachability().expect_peer(Peer(), Peer("x"), False)
    for src in ("x/a", "y/a", "z/a"):
        expected.expect_peer(Peer(*src.split("/")), Peer("x"), True)
    table = expected.cells
    assert model.reference([(80, "TCP", 4)])[(80, "TCP", 4)] == table
    assert any(not table[p] for p in same) and any(table[p] for p in same)
    assert any(not table[p] for p in cross) and any(table[p] for p in cross)
    model.expect({(80, "TCP", 4): table, (81, "UDP", 4): table}, "same-node vs cross-node")


@pytest.mark.netpol_smoke
@pytest.mark.parametrize("proto", ["TCP", "UDP"])
@pytest.mark.parametrize("family", [4, 6])
def test_pod_source_addresses_survive_pod_to_pod(model_lab, proto, family):
    """Policies match peers by pod IP, so the receiver must see the sender's pod address on every
    pair, same-node and cross-node (the bridge delegate's ipMasq must not rewrite it)."""
    model = model_lab
    model.reset()
    model.expect(model.reference([(80, proto, family)]), "no policy")
    seen = model.seen_sources(80, proto, family)
    wrong = {f"{s}->{d}": addr for (s, d), addr in seen.items() if addr != model._addr(s, family)}
    assert not wrong, f"receivers saw other source addresses than the senders' pod IPs: {wrong}"
