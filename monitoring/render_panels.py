"""Draw the dashboard's key panels from a lab's Prometheus into a PNG (docs/img/panels.png).

    python3 monitoring/render_panels.py --lab NAME [--minutes 10] [--out docs/img/panels.png]

Reads Prometheus' range API over the lab's Unix socket (`overlayd lab up --prometheus`) and plots
with matplotlib (Debian: python3-matplotlib). The queries are the dashboard's, with rate windows
short enough for a run of a few minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from overlayd.lab.prometheus import PrometheusClient  # noqa: E402

PANELS = [
    ("Peers programmed", "s", [("overlayd_peers", "{node}")]),
    ("Lease event to kernel, p99 (s)", "s", [
        ("histogram_quantile(0.99, sum by (node, le) (rate(overlayd_event_to_kernel_seconds_bucket[1m])))", "{node}")]),
    ("Kernel entries added / removed per second", "ops", [
        ("sum by (node) (rate(overlayd_entries_added_total[1m]))", "added {node}"),
        ("sum by (node) (rate(overlayd_entries_removed_total[1m]))", "removed {node}")]),
    ("Drift repaired by resync (entries)", "n", [
        ("sum by (node) (overlayd_drift_repaired_total)", "{node}")]),
    ("CNI requests per second, by result", "reqps", [
        ("sum by (command, result) (rate(overlayd_cni_requests_total[1m]))", "{command} {result}")]),
    ("Nodes ready, and reaching their lease store", "", [
        ("sum(overlayd_ready)", "ready"), ("sum(overlayd_lease_store_up)", "lease store up")]),
]


def socket_of(lab: str) -> str:
    state_dir = os.environ.get("OVERLAYD_LAB_STATE_DIR", "/run/overlayd-lab")
    with open(os.path.join(state_dir, f"{lab}.json")) as f:
        return json.load(f)["prometheus"]["socket"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lab", required=True)
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--out", default="docs/img/panels.png")
    args = p.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    client = PrometheusClient(socket_of(args.lab))
    end = time.time()
    start = end - args.minutes * 60
    fig, axes = plt.subplots(3, 2, figsize=(13, 10), constrained_layout=True)
    for ax, (title, _unit, queries) in zip(axes.flat, PANELS):
        for expr, legend in queries:
            for series in client.query_range(expr, start, end, step=5):
                xs = [(float(t) - start) / 60 for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                ax.plot(xs, ys, label=legend.format(**{"node": "", "command": "", "result": "",
                                                       **series["metric"]}).strip(), linewidth=1.4)
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("minutes")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"overlayd, lab {args.lab}: Prometheus range queries over {args.minutes:g} minutes", fontsize=12)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
