"""Bench (b) and (c) of bench_netpol: a kube lab with --network-policy on three nodes.

(b) Event to enforced, by traffic probes. A pod agent keeps starting probes every 5 ms (each a new
    TCP connection); a change is timed from just before its API write to the start of the first
    probe that sees the new verdict (and the three after it agree). Kinds: a client pod's label
    change (grant and revoke), a policy update (grant and revoke), and a new pod that a policy
    selects (from status.podIPs written to the first allowed connection; before that it is closed).
(c) Data path, cross-node (client on n2, server on n1): iperf3 TCP throughput and new connections
    per second (the agent's connect loops), with no policy and with 1,000 policies in the server's
    namespace, every one selecting the server, the client allowed only by the last (the longest
    chain this engine builds for one pod). Same lab, same pods, one run.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import threading
import time

from overlayd.lab import pods as labpods
from overlayd.lab.cluster import Lab

NS = "bench"
NP = f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies"
ROUNDS = int(os.environ.get("NETPOL_BENCH_ROUNDS", "10"))
NEW_PODS = int(os.environ.get("NETPOL_BENCH_NEW_PODS", "5"))
DEADLINE = 60.0
RUNS = int(os.environ.get("NETPOL_BENCH_RUNS", "5"))      # (c): interleaved runs per mode


def _policy(name: str, from_labels: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"podSelector": {"matchLabels": {"app": "srv"}},
                     "ingress": [{"from": [{"podSelector": {"matchLabels": from_labels}}]}]}}


def _timed(lab, watcher, target, want: bool, change) -> float:
    """ms from the API write to the first probe that met the new rules."""
    result = {}

    def watch():
        result.update(labpods.agent_request(watcher.agent_socket, {
            "op": "watch", "target": target, "want": want, "interval": 0.005, "attempt_timeout": 0.1,
            "confirm": 3, "deadline": DEADLINE}, timeout=DEADLINE + 10))

    t = threading.Thread(target=watch)
    t.start()
    time.sleep(0.1)              # the agent is probing the old verdict before the change is written
    t0 = time.time()
    change()
    t.join()
    if result.get("at") is None:          # not enforced within DEADLINE: counted as such, not dropped
        return float("inf")
    return (result["at"] - t0) * 1000


def _p(values: list, q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def event_to_enforced(lab, srv, cli) -> dict:
    target = [srv.ip, 80, "TCP"]
    out = {"label change": [], "policy update": [], "new pod": []}
    lab.api.request("POST", NP, _policy("srv-allow", {"access": "yes"}))
    # The label change is the one merge PATCH (labpods.set_labels would GET first: that read is
    # the harness's, not the change, and must not be on the clock).
    labpods.set_labels(lab, NS, "cli", {"role": "client"})
    pod_path = f"/api/v1/namespaces/{NS}/pods/cli"

    def label(value):
        return lambda: lab.api.request("PATCH", pod_path, {"metadata": {"labels": {"access": value}}},
                                       "application/merge-patch+json")
    for _ in range(ROUNDS):
        out["label change"].append(_timed(lab, cli, target, True, label("yes")))
        out["label change"].append(_timed(lab, cli, target, False, label(None)))
    for _ in range(ROUNDS):
        out["policy update"].append(_timed(lab, cli, target, True,
                                           lambda: lab.api.request("PUT", f"{NP}/srv-allow", _policy("srv-allow", {"role": "client"}))))
        out["policy update"].append(_timed(lab, cli, target, False,
                                           lambda: lab.api.request("PUT", f"{NP}/srv-allow", _policy("srv-allow", {"access": "yes"}))))
    labpods.set_labels(lab, NS, "cli", {"role": "client", "access": "yes"})
    for i in range(NEW_PODS):
        marks = {}
        pod = labpods.add(lab, labpods.PodSpec(NS, f"new-{i}", f"n{i % 3 + 1}", {"app": "srv"}, []), marks=marks)
        # the agent in the new pod is up before its IP is published; probe from the client until allowed
        res = labpods.agent_request(cli.agent_socket, {"op": "watch", "target": [pod.ip, 80, "TCP"], "want": True,
                                                      "interval": 0.005, "attempt_timeout": 0.1, "confirm": 3,
                                                      "deadline": DEADLINE}, timeout=DEADLINE + 10)
        out["new pod"].append((res["at"] - marks["status"]) * 1000 if res["at"] else float("inf"))
        labpods.delete(lab, NS, f"new-{i}")
    lab.api.request("DELETE", NP)
    return {k: {"n": len(v), "p50_ms": _p(v, 0.5), "p99_ms": _p(v, 0.99), "max_ms": max(v),
                "not_enforced": sum(1 for x in v if x == float("inf"))} for k, v in out.items()}


def _iperf(lab, srv, cli, seconds: int = 3, attempts: int = 5) -> float:
    """Gbit/s received, cross-node. A one-off server per attempt (`-1` exits after any test, a
    failed one too), so a retry never dials a server that is gone; an answer without
    `sum_received` (iperf3 3.12 reports some errors with exit 0) counts as a failed attempt."""
    last = ""
    for _ in range(attempts):
        server = subprocess.Popen(["ip", "netns", "exec", srv.netns, "iperf3", "-s", "-1", "-p", "5201"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            for _ in range(50):              # until the server listens
                if ":5201 " in subprocess.run(["ip", "netns", "exec", srv.netns, "ss", "-Htln"],
                                              capture_output=True, text=True).stdout:
                    break
                time.sleep(0.05)
            out = subprocess.run(["ip", "netns", "exec", cli.netns, "iperf3", "-c", srv.ip, "-p", "5201", "-t",
                                  str(seconds), "-J"], capture_output=True, text=True)
            try:
                doc = json.loads(out.stdout)
            except ValueError:
                doc = {}
            received = doc.get("end", {}).get("sum_received", {}).get("bits_per_second")
            if out.returncode == 0 and received:
                return received / 1e9
            last = f"exit {out.returncode}: {doc.get('error') or out.stderr.strip()[-300:] or out.stdout[-300:]}"
        finally:
            server.kill()
            server_out = server.communicate()[0]
        last += f"; server: {server_out.strip()[-300:]}"
        print(f"(c) iperf3 attempt failed ({last}); again", flush=True)
    raise RuntimeError(f"iperf3 failed {attempts} times; last: {last}")


def _conn_rate(cli, srv) -> float:
    return labpods.agent_request(cli.agent_socket, {"op": "connect_rate", "target": [srv.ip, 80],
                                                    "seconds": 3, "parallel": 8}, timeout=30)["per_second"]


def _delete_policies(lab, wait: float = 180.0) -> None:
    """DELETE the collection; with 1,000 policies on a loaded machine the call may time out on our
    side while the server goes on deleting, so wait until the list is empty."""
    try:
        lab.api.request("DELETE", NP)
    except Exception as err:
        if getattr(err, "status", None) not in (0, None):
            raise
    deadline = time.monotonic() + wait
    while lab.api.request("GET", NP).get("items") and time.monotonic() < deadline:
        time.sleep(0.5)


def _enforcing(lab, srv, count: int, wait: float = 300.0) -> None:
    """Until the server's node enforces exactly `count` policies (overlayd_policy_policies). The
    API's list being empty is not enough: a node still working through 1,000 deletions can, for
    a moment, have deleted the one policy that allows the client while others still isolate the
    server; a stream started then is cut (iperf3: "control socket has closed unexpectedly")."""
    from overlayd.lab import probes
    from overlayd.lab.layout import HEALTHZ_PORT
    netns = next(n.netns for n in lab.nodes if n.name == srv.node)
    deadline = time.monotonic() + wait
    while probes.metrics(netns, HEALTHZ_PORT).get("overlayd_policy_policies") != count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{srv.node} never enforced {count} policies")
        time.sleep(0.2)


def data_path(lab, srv, cli, runs: int = RUNS) -> dict:
    labpods.set_labels(lab, NS, "cli", {"role": "client", "client": "id-999"})
    results = {"none": {"gbps": [], "conn_s": []}, "1000 policies": {"gbps": [], "conn_s": []}}
    for _ in range(runs):                       # interleaved, so drift of the shared machine hits both
        for mode in results:
            if mode == "none":
                _delete_policies(lab)
            else:
                existing = lab.api.request("GET", NP).get("items", [])
                if len(existing) < 1000:
                    for i in range(1000):
                        lab.api.request("POST", NP, _policy(f"np-{i}", {"client": f"id-{i}"}))
            _enforcing(lab, srv, 0 if mode == "none" else 1000)
            labpods.agent_request(cli.agent_socket, {"op": "watch", "target": [srv.ip, 80, "TCP"], "want": True,
                                                    "deadline": 120}, timeout=130)
            results[mode]["gbps"].append(_iperf(lab, srv, cli))
            results[mode]["conn_s"].append(_conn_rate(cli, srv))
    _delete_policies(lab)
    med = {m: {k: statistics.median(v) for k, v in r.items()} for m, r in results.items()}
    return {**med, "ratio_gbps": med["1000 policies"]["gbps"] / med["none"]["gbps"],
            "ratio_conn_s": med["1000 policies"]["conn_s"] / med["none"]["conn_s"]}


def main() -> None:
    lab = Lab(kube=True, daemon_args=("--network-policy",))
    try:
        lab.up(3, 0)
        lab.wait_converged(60)
        srv = labpods.add(lab, labpods.PodSpec(NS, "srv", "n1", {"app": "srv"}, [("http", 80, "TCP")]))
        cli = labpods.add(lab, labpods.PodSpec(NS, "cli", "n2", {"role": "client"}, []))
        parts = os.environ.get("NETPOL_BENCH_PARTS", "bc")
        b = event_to_enforced(lab, srv, cli) if "b" in parts else {}
        for kind, f in b.items():
            print(f"(b) event to enforced, {kind}: p50 {f['p50_ms']:.0f} ms, p99 {f['p99_ms']:.0f} ms, "
                  f"max {f['max_ms']:.0f} ms over {f['n']}, {f['not_enforced']} not enforced within "
                  f"{DEADLINE:.0f} s (target p99 <= 100 ms)", flush=True)
        if "c" not in parts:
            return
        c = data_path(lab, srv, cli)
        print(f"(c) cross-node TCP: {c['none']['gbps']:.2f} Gbit/s and {c['none']['conn_s']:.0f} new conn/s with no "
              f"policy; {c['1000 policies']['gbps']:.2f} Gbit/s and {c['1000 policies']['conn_s']:.0f} conn/s with "
              f"1,000 policies: {c['ratio_gbps']:.2f}x throughput, {c['ratio_conn_s']:.2f}x new connections "
              f"(target >= 0.95x)", flush=True)
    finally:
        lab.down()
