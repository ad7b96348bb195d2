"""Scenario 5: the churn soak, short (OVERLAYD_SOAK_MINUTES, default 3; `make soak` runs 30).

Runs in its own process, started by the first chaos test so it overlaps the others."""
import os

import pytest

from overlayd.lab.soak import FD_BOUND, RSS_BOUND_KB

SOAK_MINUTES = float(os.environ.get("OVERLAYD_SOAK_MINUTES", "3"))   # as tests/chaos/conftest.py

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(int(SOAK_MINUTES * 60) + 600)]


def test_churn_soak(background):
    r = background.result("test_churn_soak", SOAK_MINUTES * 60 + 500)
    print(r["stdout"], r["growth"], r["results"], r["ops_per_s"], "CNI ops/s")
    # The harness asks for 10/s; what 2 shared cores give next to the other chaos labs varies
    # (2.4-7.5/s seen), so this only checks that churn happened; the rate is printed.
    assert r["ops"] >= SOAK_MINUTES * 60, f"only {r['ops']} CNI operations in {SOAK_MINUTES} min"
    assert r["nodes_rotated"] >= 2
    assert r["bad_ops"] == [], f"CNI operations failed with a non-retryable code: {r['bad_ops']}"
    assert r["kernel_problems"] == [], f"kernel != leases at a checkpoint: {r['kernel_problems'][:5]}"
    assert r["metrics_mismatches"] == [], f"metrics disagree with the harness: {r['metrics_mismatches'][:5]}"
    for node, g in r["growth"].items():
        assert g["rss_kb"] <= RSS_BOUND_KB and g["fds"] <= FD_BOUND, f"{node} grew: {g}"
    assert r["ping"]["lost"] == 0, f"pings between the long-lived nodes: {r['ping']}"
    assert r["leaks"] == [], r["leaks"]
