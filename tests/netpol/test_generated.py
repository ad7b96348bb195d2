"""Generated cases: seeded chains of policy and label changes (generator.py), each step probed on
80/81 × TCP/UDP over the 9 × 9 matrix (IPv4 for odd seeds, IPv6 for even) and compared with the
reference evaluator (reference.py).

`make test` runs SEEDS × STEPS = 200 steps; `make netpol-long` runs more (NETPOL_SEEDS, NETPOL_STEPS).
A failure names the seed and step, so `scenario(seed, steps)` replays it."""
from __future__ import annotations

import os

import pytest

from .generator import PROBES, scenario

pytestmark = [pytest.mark.e2e, pytest.mark.netpol]

SEEDS = [int(s) for s in os.environ.get("NETPOL_SEEDS", "1,2,3,4,5").split(",")]
STEPS = int(os.environ.get("NETPOL_STEPS", "40"))


@pytest.mark.parametrize("seed", SEEDS)
def test_generated_chain(model_lab, seed):
    model = model_lab
    family = 4 if seed % 2 else 6         # the lab is dual-stack: odd seeds probe IPv4, even IPv6
    model.reset()
    checks = [(port, proto, family) for port, proto in PROBES]
    model.expect(model.reference(checks), f"seed {seed}: clean start")
    for i, step in enumerate(scenario(seed, STEPS), 1):
        model.run_step(step, family)
        model.expect(model.reference(checks), f"seed {seed} step {i}")
