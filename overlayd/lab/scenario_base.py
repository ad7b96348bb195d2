"""What every chaos scenario shares (issue 14): the table's row, waiting, leak accounting, teardown."""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Optional

from . import probes
from .cluster import Lab

FD_SLACK = 4            # a reconnect may leave a new socket or timer fd in place of the old one
THREAD_SLACK = 4        # a watch being re-created has a reader thread ending while the next starts


@dataclasses.dataclass
class Row:
    scenario: str
    lost: Optional[int]          # packets (ICMP echoes) lost across nodes; None: not measured
    converge_s: Optional[float]  # from the fault's end to kernel == leases everywhere
    leaks: list                  # what leaked (empty: nothing)
    rss_growth_kb: Optional[int]  # the largest growth of one daemon's RSS

    def cells(self) -> list[str]:
        return [self.scenario, "-" if self.lost is None else str(self.lost),
                "-" if self.converge_s is None else f"{self.converge_s:.1f} s",
                str(len(self.leaks)) if not self.leaks else f"{len(self.leaks)}: {'; '.join(self.leaks)[:80]}",
                "-" if self.rss_growth_kb is None else f"{self.rss_growth_kb} kB"]


def table(rows: list[Row]) -> str:
    head = ["scenario", "packets lost", "time to converge", "leaks found", "memory growth"]
    lines = [head] + [r.cells() for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    fmt = "| " + " | ".join(f"{{:<{w}}}" for w in widths) + " |"
    out = [fmt.format(*head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt.format(*cells) for cells in lines[1:]]
    return "\n".join(out)


# -- shared steps ---------------------------------------------------------------------------
def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def snapshot(lab: Lab) -> dict:
    """Per running daemon: its usage and live child processes."""
    return {n.name: {"pid": n.pid, "usage": probes.usage(n.pid), "children": probes.children(n.pid)}
            for n in lab.nodes if n.pid is not None and lab.daemon_alive(n)}


def leaks_between(before: dict, after: dict) -> tuple[list[str], int]:
    """Leaks of the daemons alive in both snapshots, and the largest RSS growth (kB)."""
    leaks, growth = [], 0
    for name, b in before.items():
        a = after.get(name)
        if a is None or a["pid"] != b["pid"]:
            continue
        ub, ua = b["usage"], a["usage"]
        growth = max(growth, ua.rss_kb - ub.rss_kb)
        if ua.fds > ub.fds + FD_SLACK:
            leaks.append(f"{name}: fds {ub.fds} -> {ua.fds}")
        if ua.threads > ub.threads + THREAD_SLACK:
            leaks.append(f"{name}: threads {ub.threads} -> {ua.threads}")
        if a["children"]:
            leaks.append(f"{name}: child processes {a['children']}")
    return leaks, growth


def teardown(lab: Lab) -> list[str]:
    """lab.down(), then what a user would find left over: namespaces and processes."""
    pids = [n.pid for n in lab.nodes if n.pid]
    failed = lab.down()
    left = [f"cleanup failed: {w}" for w in failed]
    left += [f"namespace {ns}" for ns in probes.lab_namespaces(lab.name)]
    if not wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in pids), 10):
        left.append(f"processes {[p for p in pids if os.path.exists(f'/proc/{p}')]}")
    return left


def cross_node_pairs(lab: Lab) -> list[tuple]:
    """One pod per node towards the next node's first pod (a ring)."""
    firsts = [next(p for p in lab.pods if p.node == n.name) for n in lab.nodes
              if any(p.node == n.name for p in lab.pods)]
    return [(firsts[i], firsts[(i + 1) % len(firsts)]) for i in range(len(firsts))] if len(firsts) > 1 else []


def public_ips(lab: Lab) -> dict:
    return {s: v["public_ip"] for s, v in probes.store_leases(lab).items()}
