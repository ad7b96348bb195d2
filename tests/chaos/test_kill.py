"""Scenario 3: overlayd SIGKILLed under iperf3 load across nodes, then 20 kill/restart cycles.

The datapath lives in the kernel, so killing and restarting the daemon must not interrupt pod
traffic: no echo lost, no second of the TCP stream at zero. Throughput is compared with the
kernel alone (daemons killed and not running, with the same Python start-ups burning CPU
elsewhere) in the same run; the bound is loose because this machine's 2 cores are shared.
"""
import pytest

from overlayd.lab import scenarios
from overlayd.lab.scenarios import table

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_overlayd_sigkilled_under_load_then_20_cycles_leak_nothing():
    r = scenarios.kill_under_load(seconds=10, cycles=20)
    print(table([r["row"]]), {k: r[k] for k in ("ratio_to_baseline", "ratio_to_kernel_alone", "cycle_s")})
    assert r["kills_under_load"] >= 2
    assert r["ping"]["lost"] == 0, f"echoes lost while overlayd was killed: {r['ping']}"
    for run in ("baseline", "kernel_alone", "loaded"):
        assert not r[run].get("error"), f"{run}: {r[run]['error']}"
        assert r[run]["gaps"] == 0, f"{run}: a second without traffic: {r[run]['intervals']}"
    assert r["ratio_to_kernel_alone"] >= 0.4, (
        f"throughput while overlayd restarts is {r['ratio_to_kernel_alone']:.2f} of the kernel alone's")
    assert r["converge_s"] is not None, f"kernel != leases after 20 cycles: {r['leaks']}"
    assert r["state_after"] == r["state_before"], "links, routes, rules or FDB entries grew over 20 cycles"
    assert r["leaks"] == [], r["leaks"]
