"""The upstream Kubernetes NetworkPolicy e2e suite, case by case, on the lab: real API objects,
the engine on every node, and the full 9 × 9 matrix probed with real packets (TCP and UDP by
connections, SCTP by crafted INIT chunks, since this kernel cannot open SCTP sockets)."""
from __future__ import annotations

import pytest

from .upstream import CASES

pytestmark = [pytest.mark.e2e, pytest.mark.netpol]


def run_case(model, case, family: int = 4) -> None:
    checks = sorted({(c.port, c.proto, family) for s in case.steps for c in s.checks})
    model.reset()
    model.expect({c: {k: True for k in model.reference([c])[c]} for c in checks}, f"{case.name}: before")
    for i, step in enumerate(case.steps, 1):
        model.run_step(step, family)
        expected = {(c.port, c.proto, family): c.expect().cells for c in step.checks}
        model.expect(expected, f"{case.name} (upstream: {case.upstream}), step {i}")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_upstream(model_lab, case):
    run_case(model_lab, case)
