"""The upstream Kubernetes NetworkPolicy e2e suite, case by case, on the lab: real API objects,
the engine on every node, and the full 9 × 9 matrix probed with real packets (TCP and UDP by
connections, SCTP by crafted INIT chunks, since this kernel cannot open SCTP sockets)."""
from __future__ import annotations

import re

import pytest

from overlayd.lab.netns import run

from .driver import run_case
from .upstream import CASES

pytestmark = [pytest.mark.e2e, pytest.mark.netpol]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_upstream(model_lab, case):
    run_case(model_lab, case)


def sctp_ports(case) -> set:
    return {p["port"] for s in case.steps for pol in s.apply for direction in ("ingress", "egress")
            for rule in pol["spec"].get(direction) or [] for p in rule.get("ports") or []
            if p.get("protocol") == "SCTP" and isinstance(p.get("port"), int)}


SCTP_CASES = [c for c in CASES if sctp_ports(c)]


@pytest.mark.parametrize("case", SCTP_CASES, ids=[c.name for c in SCTP_CASES])
def test_sctp_rules_are_programmed(model_lab, case):
    """SCTP sockets cannot be opened here, so besides the crafted INITs above: the SCTP port of the
    case's policy is in the ruleset of the node that hosts x/a (the pod every such policy selects)."""
    model = model_lab
    run_case(model, case)
    node = model.lab.node(model.nodes["x/a"])
    ruleset = run(["nft", "list", "ruleset"], netns=node.netns).stdout
    for port in sctp_ports(case):
        assert re.search(rf"sctp\D{{1,8}}{port}\b", ruleset), f"no SCTP port {port} rule on {node.name}:\n{ruleset}"
