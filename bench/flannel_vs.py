"""`make bench-flannel`: the real flanneld and overlayd side by side, same etcd, same machine, same run.

Two node namespaces on one switch with a real etcd (bench/sidebyside.py); n1 runs flanneld, n2
overlayd (with its CNI service on). Every figure is taken from outside the daemon:

- start-up to full sync at 1,000 / 5,000 / 10,000 peers: from exec to the last peer route's
  RTM_NEWROUTE in the node's namespace (what `ip monitor route` prints), on a fresh flannel.1;
- event to route with 5,000 peers: a new lease put into etcd -> its route in the kernel, p50/p99,
  both daemons running and measured on the same events;
- RSS (VmRSS of the process) with 5,000 peers, after sync;
- idle CPU over 60 s with 5,000 peers (utime + stime from /proc);
- flannel #2554: a peer's lease deleted while the daemon is down; after the restart (and after a
  later lease has been programmed, so the daemon has caught up), is the dead peer's route still there?
"""
from __future__ import annotations

import os
import statistics
import sys
import time

from overlayd.lab import flanneld
from overlayd.lab.cleanup import Cleanup, interrupts_as_exceptions
from overlayd.lab.netns import ip

from . import etcd_writer
from .sidebyside import SideLab, routes

SIZES = (1000, 5000, 10000)
EVENT_PEERS = 5000
EVENTS = 60
IDLE_S = 60.0
KINDS = ("flanneld", "overlayd")


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered))) - 1))]


def startup(node, watch, kind: str, peers: int) -> float:
    node.fresh()
    watch.forget()
    t0 = node.start(kind)
    try:
        return watch.wait_all(routes(range(peers)), timeout=300) - t0
    except TimeoutError as err:
        raise RuntimeError(f"{kind}: {err}\n{node.log_tail()}") from None


def has_route(node, i: int) -> bool:
    return bool(ip("route", "show", etcd_writer.subnet(i), netns=node.netns).stdout.strip())


def missed_deletion(lab, node, watch, kind: str, victim: int, marker: int) -> str:
    """flannel #2554: delete victim's lease while the daemon is down; restart; did its route go?"""
    assert has_route(node, victim)
    node.stop()
    lab.delete(victim)
    watch.forget(routes(range(marker, marker + 1)))
    node.start(kind)
    lab.put(marker)
    watch.wait_all(routes(range(marker, marker + 1)), timeout=120)   # caught up past the deletion
    deadline = time.monotonic() + 5
    while has_route(node, victim) and time.monotonic() < deadline:
        time.sleep(0.1)
    stale = has_route(node, victim)
    return "**stale route stays**" if stale else "removed"


def main() -> None:
    if flanneld.binary() is None:
        print(f"SKIPPED: {flanneld.missing_reason()}")
        return
    res: dict = {k: {"start": {}} for k in KINDS}
    with interrupts_as_exceptions(), Cleanup() as cleanup:
        lab = SideLab(cleanup)
        nodes = {"flanneld": lab.node(1), "overlayd": lab.node(2)}
        watches = {k: n.watch() for k, n in nodes.items()}
        lab.fill(10)
        for kind in KINDS:      # first starts: lease each node's subnet, warm the page and bytecode caches
            startup(nodes[kind], watches[kind], kind, 10)
            nodes[kind].stop()
        for size in SIZES:
            lab.fill(size)
            for kind in KINDS:
                res[kind]["start"][size] = startup(nodes[kind], watches[kind], kind, size)
                print(f"  {kind}: start-up to full sync at {size} peers: {res[kind]['start'][size]:.2f} s", flush=True)
                if size != EVENT_PEERS:
                    nodes[kind].stop()
            if size != EVENT_PEERS:
                continue
            # Both run with 5,000 peers: the same lease events reach both.
            lat = {k: [] for k in KINDS}
            for n in range(EVENTS):
                i = 60000 + n
                at = lab.put(i)
                for kind in KINDS:
                    lat[kind].append(watches[kind].wait_all(routes(range(i, i + 1)), timeout=30) - at)
                time.sleep(0.02)
            for n in range(EVENTS):
                lab.delete(60000 + n)
            time.sleep(2)
            for kind in KINDS:
                ms = [x * 1000 for x in lat[kind]]
                res[kind]["event"] = (statistics.median(ms), pct(ms, 0.99))
                res[kind]["rss"] = nodes[kind].status("VmRSS") / 1024
            ticks = {k: nodes[k].cpu_ticks() for k in KINDS}
            started = time.monotonic()
            time.sleep(IDLE_S)
            took = time.monotonic() - started
            hz = os.sysconf("SC_CLK_TCK")
            for kind in KINDS:
                res[kind]["idle"] = (nodes[kind].cpu_ticks() - ticks[kind]) / hz / took * 100
            for kind in KINDS:
                res[kind]["2554"] = missed_deletion(lab, nodes[kind], watches[kind], kind, victim=17,
                                                    marker=61000 + KINDS.index(kind))
                lab.put(17)
            for kind in KINDS:
                nodes[kind].stop()
        print()
        print(f"| what | flanneld {flanneld.pinned_release()} | overlayd |")
        print("|---|---|---|")
        for size in SIZES:
            print(f"| start-up to full sync, {size:,} peers (exec -> last route) | "
                  + " | ".join(f"{res[k]['start'][size]:.2f} s" for k in KINDS) + " |")
        print(f"| event to route, {EVENT_PEERS:,} peers present (p50 / p99, {EVENTS} events) | "
              + " | ".join(f"{res[k]['event'][0]:.1f} / {res[k]['event'][1]:.1f} ms" for k in KINDS) + " |")
        print(f"| RSS, {EVENT_PEERS:,} peers | " + " | ".join(f"{res[k]['rss']:.1f} MB" for k in KINDS) + " |")
        print(f"| idle CPU over {IDLE_S:.0f} s, {EVENT_PEERS:,} peers | "
              + " | ".join(f"{res[k]['idle']:.2f} %" for k in KINDS) + " |")
        print("| a peer deleted while the daemon was down (flannel #2554) | "
              + " | ".join(res[k]["2554"] for k in KINDS) + " |")


if __name__ == "__main__":
    sys.exit(main())
