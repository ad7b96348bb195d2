"""NetworkPolicy figures (issue 10, "Benchmarks"), measured from outside the process:

(a) full sync at 1,000 policies and 10,000 cluster pods (110 on the node): the engine's compile and
    one nft transaction, in a network namespace of its own; wall time from exec to exit, peak RSS
    (wait4), the table checked in the kernel afterwards. Target RSS <= 150 MB.
(b) event to enforced, by traffic probes in a kube lab with --network-policy: a pod label change, a
    new pod and a policy update, each timed from just before the API write to the first probe that
    sees the new verdict. Target p99 <= 100 ms.
(c) data path: pod-to-pod TCP throughput (iperf3) and new connections per second, cross-node, with
    1,000 policies present against none, in one run. Target >= 0.95x.

`python -m bench netpol` (or `make bench`). Figures only: the machine is shared, so each is the
median of a few runs where it says so.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from overlayd.lab.cleanup import Cleanup
from overlayd.lab.netns import add_netns, run, unique_token

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_RSS_MB = 150
TARGET_P99_MS = 100
TARGET_RATIO = 0.95


# -- (a) -------------------------------------------------------------------------------------------
def full_sync() -> dict:
    cleanup = Cleanup()
    try:
        ns = add_netns(f"ovb-{unique_token()}-np", cleanup)
        started = time.monotonic()
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "bench.netpol_fullsync"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, text=True)
        out, err = proc.stdout.read(), proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"full sync child failed ({proc.returncode}): {err.strip()[-2000:]}")
        phases = json.loads(out.strip().splitlines()[-1])
        table = run(["nft", "-j", "list", "table", "inet", "overlayd-policy"], netns=ns).stdout
        kinds = [next(iter(o)) for o in json.loads(table)["nftables"]]
        return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, **phases,
                "kernel": {k: kinds.count(k) for k in ("chain", "rule", "set", "map")}}
    finally:
        cleanup.run()


def main() -> None:
    a = full_sync()
    print(f"(a) full sync, 1,000 policies / 10,000 pods / 110 on the node: exec->exit {a['wall_s']:.2f}s "
          f"(cache fill {a['cache_fill_s']:.2f}s, first full sync {a['first_full_sync_s']:.2f}s, "
          f"resync {a['resync_s']:.2f}s, incremental after a label change {a['incremental_s'] * 1000:.0f} ms); "
          f"peak RSS {a['peak_rss_mb']:.0f} MB (target <= {TARGET_RSS_MB}); model {a['stats']}; "
          f"in the kernel {a['kernel']}", flush=True)
    try:
        from . import netpol_lab
    except ImportError as err:
        print(f"(b), (c): {err}")
        return
    netpol_lab.main()


if __name__ == "__main__":
    main()
