"""overlayd's own start-up, measured from outside (issue 11, part 3): from the exec of `overlayd` to
the last of the 3 x N entries (route, ARP, FDB per peer) seen on the node's netlink monitor groups,
against `ip -batch` + `bridge -batch` writing the same entries on a fresh device in the same run;
and the daemon's RSS (VmRSS, CNI service on) with 5,000 peers.

`python -m bench startup`. Real etcd with N fake peer leases, the daemon as its own process in a
node namespace (bench/sidebyside.py). Figures only; the machine is shared.
"""
from __future__ import annotations

import statistics

from overlayd.lab.cleanup import Cleanup, interrupts_as_exceptions
from overlayd.lab.netns import ip

from .bench_datapath import ip_batch, peer_entries, peer_lease
from .sidebyside import SideLab, all_entries

SIZES = (5000, 10000)
RUNS = 3
TARGET_RATIO = 1.3
TARGET_RSS_MB = 50.0


def baseline(node, size: int) -> float:
    node.fresh()
    ip("link", "add", "flannel.1", "type", "vxlan", "id", "1", "local", node.ip, "dev", "eth0", "dstport", "8472",
       "nolearning", netns=node.netns)
    ip("link", "set", "flannel.1", "up", netns=node.netns)
    return ip_batch(node.netns, [peer_entries(peer_lease(i)) for i in range(size)])


def overlayd_start(node, watch, size: int, rss: list) -> float:
    node.fresh()
    watch.forget()
    t0 = node.start("overlayd")
    try:
        took = watch.wait_all(all_entries(range(size)), timeout=300) - t0
    except TimeoutError as err:
        raise RuntimeError(f"{err}\n{node.log_tail()}") from None
    rss.append(node.status("VmRSS") / 1024)
    node.stop()
    return took


def main() -> None:
    with interrupts_as_exceptions(), Cleanup() as cleanup:
        lab = SideLab(cleanup, with_flanneld=False)
        node = lab.node(1)
        watch = node.watch()
        lab.fill(10)
        overlayd_start(node, watch, 10, [])          # first start: leases our own subnet, warms the page cache
        for size in SIZES:
            lab.fill(size)
            base, ours, rss = [], [], []
            for _ in range(RUNS):                    # interleaved, so both see the same load
                base.append(baseline(node, size))
                ours.append(overlayd_start(node, watch, size, rss))
            ratio_best, ratio_median = min(ours) / min(base), statistics.median(ours) / statistics.median(base)
            print(f"{size} peers = {3 * size} entries, {RUNS} runs each (best / median):")
            print(f"  ip -batch + bridge -batch:          {min(base):.2f} / {statistics.median(base):.2f} s")
            print(f"  overlayd, exec -> last entry:       {min(ours):.2f} / {statistics.median(ours):.2f} s")
            print(f"    ratio:                            {ratio_best:.2f}x / {ratio_median:.2f}x "
                  f"(target ≤ {TARGET_RATIO}x: {'meets' if ratio_best <= TARGET_RATIO else 'MISSES'} the target)")
            print(f"  RSS after sync (VmRSS, CNI service on): {min(rss):.1f} / {statistics.median(rss):.1f} MB"
                  + (f" (target ≤ {TARGET_RSS_MB:.0f} MB at 5,000: "
                     f"{'meets' if min(rss) <= TARGET_RSS_MB else 'MISSES'} the target)" if size == 5000 else ""),
                  flush=True)


if __name__ == "__main__":
    main()
