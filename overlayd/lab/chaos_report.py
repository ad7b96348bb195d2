"""`make soak`: every chaos scenario of issue 14 at full length, then one table.

    python -m overlayd.lab.chaos_report [--soak-minutes 30] [--json out.json] [--only NAME ...]

The waiting-bound scenarios (the three lease-store partitions and the soak) run side by side;
the rest one after the other meanwhile. Exit status 1 if any scenario found a leak.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import time

from . import scenarios
from .scenarios import Row, table


def plan(soak_minutes: float) -> dict:
    from .soak import Soak
    return {
        "etcd-60s": (True, lambda: scenarios.store_blackhole(seconds=60)),
        "etcd-past-ttl": (True, lambda: scenarios.store_blackhole(seconds=25, lease_ttl=8)),
        "etcd-past-ttl+grace": (True, lambda: scenarios.store_blackhole(seconds=25, lease_ttl=8, grace=15)),
        "owner-cut-off": (True, lambda: scenarios.owner_cut_off_past_ttl(lease_ttl=8)),
        "owner-cut-off+newcomer": (True, lambda: scenarios.owner_cut_off_past_ttl(lease_ttl=8, newcomer=True)),
        "kube-60s": (True, lambda: scenarios.store_blackhole(seconds=60, kube=True)),
        "soak": (True, lambda: Soak(soak_minutes).run()),
        "sigkill": (False, lambda: scenarios.kill_under_load(seconds=10, cycles=20)),
        "reboot": (False, lambda: scenarios.node_reboot()),
        "disk": (False, lambda: scenarios.disk_trouble()),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m overlayd.lab.chaos_report", description=__doc__.split("\n")[0])
    p.add_argument("--soak-minutes", type=float, default=30.0)
    p.add_argument("--json", default="", help="also write every scenario's details here")
    p.add_argument("--only", nargs="*", default=None, help="run only these scenarios")
    args = p.parse_args(argv)
    todo = {k: v for k, v in plan(args.soak_minutes).items() if args.only is None or k in args.only}
    started = time.monotonic()
    results: dict[str, dict] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(todo) or 1) as pool:
        background = {name: pool.submit(fn) for name, (waits, fn) in todo.items() if waits}
        for name, (waits, fn) in todo.items():
            if not waits:
                results[name] = _run(fn)
        for name, fut in background.items():
            try:
                results[name] = fut.result()
            except Exception as err:       # a scenario that could not run is a row, not a crash
                results[name] = {"row": Row(name, None, None, [f"failed: {err}"], None)}
    rows = [results[name]["row"] for name in todo]
    print(table(rows))
    print(f"\n({time.monotonic() - started:.0f} s in all)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({n: {**r, "row": r["row"].__dict__} for n, r in results.items()}, f, default=str, indent=1)
    return 1 if any(r.leaks for r in rows) else 0


def _run(fn) -> dict:
    try:
        return fn()
    except Exception as err:
        return {"row": Row(getattr(fn, "__name__", "scenario"), None, None, [f"failed: {err}"], None)}


if __name__ == "__main__":
    sys.exit(main())
