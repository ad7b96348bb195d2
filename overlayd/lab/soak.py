"""Churn soak (issue 14, scenario 5): pods come and go at ~10/s, nodes leave and join, leases expire.

    python -m overlayd.lab.soak --minutes 3 [--json out.json]

Two nodes stay for the whole run (their daemons are the ones measured for growth); a third
slot is taken by a node that is SIGKILLed and removed every `rotate` seconds (its lease then
expires after the short TTL) while a new node joins. Every `rotate` seconds, a checkpoint:

- kernel entries == leases on every live node (waited for, up to `converge_wait` s);
- every CNI operation so far succeeded or failed with a retryable code (11);
- each live daemon's overlayd_cni_requests_total equals what the harness sent it;
- RSS and fds of the two long-lived daemons, compared with the first checkpoint.

The bounds (stated, per long-lived daemon, from the first checkpoint to the last):
RSS may grow by at most RSS_BOUND_KB, open fds by at most FD_BOUND.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import random
import signal
import sys
import threading
import time

from . import probes
from .cluster import Lab, Pod
from .netns import add_netns, delete_netns
from .scenario_base import Row, table, teardown, wait_for
from .scenario_disk import cni_attempt

RSS_BOUND_KB = 16 * 1024
FD_BOUND = 8
RETRYABLE = {11}
LEASE_TTL = 10
POD_SLOTS = 6
WORKERS = 8            # CNI operations in flight at most (each waits on exec'd plugins, not CPU)


class Soak:
    def __init__(self, minutes: float, *, rate: float = 10.0, rotate: float = 30.0, converge_wait: float = 20.0,
                 log=lambda m: None):
        self.seconds = minutes * 60
        self.rate, self.rotate, self.converge_wait = rate, rotate, converge_wait
        self.lab = Lab(log=log, daemon_args=(f"--subnet-lease-ttl={LEASE_TTL}", f"--healthz-port={probes.HEALTH_PORT}"))
        self.log = log
        self.rng = random.Random(14)
        self.lock = threading.Lock()
        self.slots: dict[str, list] = {}          # node -> [Pod or None] (None: netns free)
        self.sent = collections.Counter()         # (node, pid, command) -> calls
        self.results = collections.Counter()      # "ok" / "code N"
        self.bad = []                             # non-retryable failures
        self.checkpoints = []
        self.leaving: set[str] = set()
        self.next_index = 4
        self.seq = 0
        self.inflight = 0
        self.paused = threading.Event()           # set during a checkpoint: no new CNI operation starts

    # -- pods ---------------------------------------------------------------------------------
    def _pod_netns(self, node) -> None:
        self.slots[node.name] = []
        for j in range(POD_SLOTS):
            ns = add_netns(f"{node.netns}s{j}", self.lab.cleanup)
            self.slots[node.name].append({"netns": ns, "pod": None, "busy": False})

    def _op(self) -> None:
        with self.lock:
            if self.paused.is_set():
                return
            nodes = [n for n in self.lab.nodes if n.name not in self.leaving and n.name in self.slots]
            choices = [(n, s) for n in nodes for s in self.slots[n.name] if not s["busy"]]
            if not choices:
                return
            node, slot = self.rng.choice(choices)
            slot["busy"] = True
            pid = node.pid
            self.seq += 1
            seq = self.seq
        try:
            if slot["pod"] is None:
                pod = Pod(name=f"s{seq}", node=node.name, netns=slot["netns"],
                          container_id=f"{self.lab.name}-s{seq}")
                command = "ADD"
            else:
                pod, command = slot["pod"], "DEL"
            result = cni_attempt(self.lab, node, pod, command, node.netconf())
            with self.lock:
                self.sent[(node.name, pid, command)] += 1
                if result["rc"] == 0:
                    self.results["ok"] += 1
                    slot["pod"] = pod if command == "ADD" else None
                else:
                    self.results[f"code {result['code']}"] += 1
                    if result["code"] not in RETRYABLE:
                        self.bad.append(f"{command} {pod.name} on {node.name}: {result['code']} {result['msg'][:120]}")
        finally:
            slot["busy"] = False

    def _churn(self, stop: threading.Event) -> None:
        with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
            while not stop.is_set():
                t = time.monotonic()
                if self.inflight < WORKERS:          # never queue more than can run: the rate is a ceiling
                    with self.lock:
                        self.inflight += 1
                    pool.submit(self._op_counted)
                stop.wait(max(0.0, 1.0 / self.rate - (time.monotonic() - t)))

    def _op_counted(self) -> None:
        try:
            self._op()
        finally:
            with self.lock:
                self.inflight -= 1

    # -- nodes --------------------------------------------------------------------------------
    def _join(self) -> None:
        node = self.lab.add_node(self.next_index)
        self.next_index += 1
        self.lab.start_daemon(node)
        self.lab.wait_for_subnet_file(node, 60)
        self._pod_netns(node)

    def _leave(self, node) -> None:
        with self.lock:
            self.leaving.add(node.name)
        wait_for(lambda: not any(s["busy"] for s in self.slots[node.name]), 30, 0.05)
        for slot in self.slots[node.name]:                 # drained: the runtime deletes its pods
            if slot["pod"] is not None:
                result = cni_attempt(self.lab, node, slot["pod"], "DEL", node.netconf())
                with self.lock:
                    self.sent[(node.name, node.pid, "DEL")] += 1
                    self.results["ok" if result["rc"] == 0 else f"code {result['code']}"] += 1
                    if result["rc"] != 0 and result["code"] not in RETRYABLE:
                        self.bad.append(f"DEL {slot['pod'].name} on {node.name}: {result['code']} {result['msg'][:120]}")
            delete_netns(slot["netns"])
        for pod in [p for p in self.lab.pods if p.node == node.name]:
            delete_netns(pod.netns)
            self.lab.pods.remove(pod)
        self.lab.stop_daemon(node, signal.SIGKILL)        # no clean shutdown: its lease expires
        delete_netns(node.netns)
        self.lab.nodes.remove(node)
        del self.slots[node.name]

    # -- checkpoints --------------------------------------------------------------------------
    def _checkpoint(self, t_start: float) -> dict:
        self.paused.set()                         # the counters are compared with no operation in flight
        wait_for(lambda: not any(s["busy"] for slots in self.slots.values() for s in slots), 30, 0.05)
        try:
            return self._compare(t_start)
        finally:
            self.paused.clear()

    def _compare(self, t_start: float) -> dict:
        t0 = time.monotonic()
        converged = wait_for(lambda: not probes.kernel_vs_leases(self.lab), self.converge_wait, 0.5)
        cp = {"t": round(time.monotonic() - t_start), "converge_s": time.monotonic() - t0,
              "kernel_problems": [] if converged else probes.kernel_vs_leases(self.lab)}
        with self.lock:
            mismatches = []
            for node in self.lab.nodes:
                m = probes.metrics(node.netns)
                for command in ("ADD", "DEL"):
                    served = sum(v for k, v in m.items()
                                 if k.startswith("overlayd_cni_requests_total{") and f'command="{command}"' in k)
                    sent = self.sent[(node.name, node.pid, command)]
                    if served != sent:
                        mismatches.append(f"{node.name} {command}: harness {sent}, metrics {served}")
            cp["metrics_mismatches"] = mismatches
            cp["bad_ops"] = len(self.bad)
            cp["usage"] = {n.name: probes.usage(n.pid) for n in self.lab.nodes[:2]}
        self.checkpoints.append(cp)
        self.log(f"checkpoint {cp}")
        return cp

    def run(self) -> dict:
        lab = self.lab
        out = {"scenario": f"churn soak {self.seconds / 60:g} min"}
        stop = threading.Event()
        churn = ping = None
        try:
            lab.up(3, 1)
            for node in lab.nodes:
                self._pod_netns(node)
                self.sent[(node.name, node.pid, "ADD")] += 1        # lab.up's pod on it
            if not lab.wait_converged(30):
                raise RuntimeError(f"lab never converged: {probes.kernel_vs_leases(lab)}")
            ping = probes.PingStream(lab.pods[0].netns, lab.pods[1].ip, 0.2)
            t_start = time.monotonic()
            churn = threading.Thread(target=self._churn, args=(stop,), name="churn", daemon=True)
            churn.start()
            self._checkpoint(t_start)
            while time.monotonic() - t_start < self.seconds:
                time.sleep(max(0.0, min(self.rotate, self.seconds - (time.monotonic() - t_start))))
                self._leave(lab.nodes[2])
                self._join()
                self._checkpoint(t_start)
            stop.set()
            churn.join(30)
            time.sleep(1)
            last = self._checkpoint(t_start)
            first = self.checkpoints[0]
            growth = {name: {"rss_kb": last["usage"][name].rss_kb - first["usage"][name].rss_kb,
                             "fds": last["usage"][name].fds - first["usage"][name].fds}
                      for name in first["usage"]}
            out.update(growth=growth, results=dict(self.results), bad_ops=self.bad[:20],
                       ops=sum(self.sent.values()), ops_per_s=round(sum(self.sent.values()) / self.seconds, 1),
                       checkpoints=len(self.checkpoints),
                       nodes_rotated=self.next_index - 4,
                       kernel_problems=[p for cp in self.checkpoints for p in cp["kernel_problems"]],
                       metrics_mismatches=[m for cp in self.checkpoints for m in cp["metrics_mismatches"]],
                       converge_s=max(cp["converge_s"] for cp in self.checkpoints),
                       rss_series={name: [cp["usage"][name].rss_kb for cp in self.checkpoints if name in cp["usage"]]
                                   for name in first["usage"]},
                       ping=ping.stop())
            leaks = [f"{n}: RSS +{g['rss_kb']} kB" for n, g in growth.items() if g["rss_kb"] > RSS_BOUND_KB]
            leaks += [f"{n}: fds +{g['fds']}" for n, g in growth.items() if g["fds"] > FD_BOUND]
            out["leaks"] = leaks
        finally:
            stop.set()
            if ping is not None:
                ping.stop()
            out.setdefault("leaks", [])
            out["leaks"] = out["leaks"] + teardown(lab)
        out["lost"] = out.get("ping", {}).get("lost")
        out["rss_growth_kb"] = max((g["rss_kb"] for g in out.get("growth", {}).values()), default=None)
        out["row"] = Row(out["scenario"], out["lost"], out.get("converge_s"),
                         out["leaks"] + [f"{len(out.get('bad_ops', []))} non-retryable CNI errors"] * bool(out.get("bad_ops"))
                         + out.get("kernel_problems", [])[:3] + out.get("metrics_mismatches", [])[:3],
                         out["rss_growth_kb"])
        return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m overlayd.lab.soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=10.0, help="pod ADDs+DELs per second (default %(default)s)")
    p.add_argument("--rotate", type=float, default=30.0, help="seconds between node leave+join (default %(default)s)")
    p.add_argument("--json", default="", help="also write the result here")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.verbose else (lambda m: None)
    result = Soak(args.minutes, rate=args.rate, rotate=args.rotate, log=log).run()
    row = result.pop("row")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**result, "row": row.__dict__}, f, default=str, indent=1)
    print(table([row]))
    ok = not row.leaks and not result.get("bad_ops")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
