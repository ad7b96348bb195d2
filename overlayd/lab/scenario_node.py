"""Scenarios 3 and 4 (issue 14): overlayd SIGKILLed under iperf3 load; a node reboots."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from . import probes
from .chaos import reboot_node
from .cluster import Lab
from .netns import run
from .scenario_base import FD_SLACK, THREAD_SLACK, Row, teardown, wait_for

STARTUP_IMPORTS = ("import overlayd.daemon_main, overlayd.daemon, overlayd.cni_service, overlayd.health_server, "
                   "subnet_lease.etcd_backend, subnet_lease.kube_backend, prometheus_client.exposition")

# Leak bounds for a daemon that lived through a fault (its own process, measured before/after).
# -- 3: overlayd SIGKILLed under load -------------------------------------------------------
def kernel_state_lines(netns: str) -> dict:
    """Counts a leak would grow: links, routes, iptables rules, nftables lines, sockets."""
    def count(cmd):
        return len(run(cmd, netns=netns, check=False).stdout.splitlines())
    return {"links": count(["ip", "-o", "link"]), "routes": count(["ip", "route", "show", "table", "all"]),
            "iptables": count(["iptables-save"]), "nft": count(["nft", "list", "ruleset"]),
            "fdb": count(["bridge", "fdb", "show", "dev", probes.VXLAN_DEV])}


def kill_under_load(*, seconds: int = 10, cycles: int = 20, log=lambda m: None) -> dict:
    """iperf3 across nodes three times: daemons running (baseline), daemons SIGKILLed and not
    running (the kernel alone), and while both nodes' overlayd are SIGKILLed and restarted over
    and over. Then `cycles` kill/restart cycles on one node, each until /readyz says ready."""
    lab = Lab(log=log, daemon_args=(f"--healthz-port={probes.HEALTH_PORT}",))
    out = {"scenario": f"overlayd SIGKILLed under iperf3 load, {cycles} cycles"}
    ping, streams = None, []
    try:
        lab.up(2, 1)
        if not lab.wait_converged(30):
            raise AssertionError(f"lab never converged: {probes.kernel_vs_leases(lab)}")
        server, client = lab.pods[1], lab.pods[0]

        def iperf(port: int) -> dict:
            stream = probes.Iperf(server.netns, server.ip, client.netns, seconds, interval=1, port=port)
            streams.append(stream.start())
            return stream

        out["baseline"] = iperf(5202).result(timeout=seconds + 30)
        for n in lab.nodes:
            lab.stop_daemon(n, signal.SIGKILL)
        # The kernel alone, on a machine as busy as during the restarts: the same Python start-ups
        # (the daemon's imports) run meanwhile, outside the lab, so only the datapath differs.
        alone = iperf(5203)
        while alone.client.poll() is None:
            burners = [subprocess.Popen([sys.executable, "-c", STARTUP_IMPORTS]) for _ in lab.nodes]
            for b in burners:
                b.wait()
        out["kernel_alone"] = alone.result(timeout=seconds + 30)
        for n in lab.nodes:
            lab.start_daemon(n)
        wait_for(lambda: all(probes.ready(n.netns) for n in lab.nodes), 30)
        ping = probes.PingStream(client.netns, server.ip, 0.05)
        load = iperf(5204)
        kills, t_end = 0, time.monotonic() + seconds - 2
        time.sleep(1)
        while time.monotonic() < t_end:
            for n in lab.nodes:
                lab.stop_daemon(n, signal.SIGKILL)
                kills += 1
            for n in lab.nodes:
                lab.start_daemon(n)
            wait_for(lambda: all(probes.ready(n.netns) for n in lab.nodes), 30, 0.1)
        out["loaded"] = load.result(timeout=seconds + 30)
        out["kills_under_load"] = kills
        out["ping"] = ping.stop()
        out["ratio_to_baseline"] = out["loaded"]["bps"] / (out["baseline"]["bps"] or 1)
        out["ratio_to_kernel_alone"] = out["loaded"]["bps"] / (out["kernel_alone"]["bps"] or 1)
        # Cycles on n1: kernel counts and the fresh daemon's usage must not grow.
        node = lab.nodes[0]
        wait_for(lambda: not probes.kernel_vs_leases(lab), 30)
        state0, usage0 = kernel_state_lines(node.netns), probes.usage(node.pid)
        t0 = time.monotonic()
        for _ in range(cycles):
            lab.stop_daemon(node, signal.SIGKILL)
            lab.start_daemon(node)
            if not wait_for(lambda: probes.ready(node.netns), 30, 0.1):
                raise AssertionError(f"overlayd on {node.name} not ready after a restart")
        out["cycle_s"] = (time.monotonic() - t0) / cycles
        t_last = time.monotonic()
        ok = wait_for(lambda: not probes.kernel_vs_leases(lab) and kernel_state_lines(node.netns) == state0, 30)
        out["converge_s"] = time.monotonic() - t_last if ok else None
        state1, usage1 = kernel_state_lines(node.netns), probes.usage(node.pid)
        leaks = [f"{k}: {state0[k]} -> {state1[k]}" for k in state0 if state1[k] != state0[k]]
        if usage1.fds > usage0.fds + FD_SLACK:
            leaks.append(f"fds {usage0.fds} -> {usage1.fds}")
        if usage1.threads > usage0.threads + THREAD_SLACK:
            leaks.append(f"threads {usage0.threads} -> {usage1.threads}")
        stray = [pid for pid in probes.netns_pids(node.netns) if pid != node.pid]
        if stray:
            leaks.append(f"processes left in {node.netns}: {stray}")
        leaks += [f"after cycles: {p}" for p in probes.kernel_vs_leases(lab)]
        out.update(state_before=state0, state_after=state1, usage_before=usage0, usage_after=usage1, leaks=leaks,
                   rss_growth_kb=usage1.rss_kb - usage0.rss_kb)
    finally:
        if ping is not None:
            ping.stop()
        for stream in streams:
            stream.kill()
        out.setdefault("leaks", [])
        out["leaks"] = out["leaks"] + teardown(lab)
    out["lost"] = out.get("ping", {}).get("lost")
    out["row"] = Row(out["scenario"], out["lost"], out.get("converge_s"), out["leaks"], out.get("rss_growth_kb"))
    return out


# -- 4: a node reboots ----------------------------------------------------------------------
def node_reboot(*, nodes: int = 3, pods_per_node: int = 2, log=lambda m: None) -> dict:
    lab = Lab(log=log)
    out = {"scenario": "a node reboots"}
    ping = None
    try:
        lab.up(nodes, pods_per_node)
        if not lab.wait_converged(30):
            raise AssertionError(f"lab never converged: {probes.kernel_vs_leases(lab)}")
        victim = lab.nodes[1]
        subnet0 = lab.subnets()[victim.name]
        old_pods = [p for p in lab.pods if p.node == victim.name]
        others = [p for p in lab.pods if p.node != victim.name]
        kept_before = sorted(os.listdir(victim.cni_data_dir)), sorted(_ipam_files(victim))
        ping = probes.PingStream(others[0].netns, next(p for p in others if p.node != others[0].node).ip, 0.1)
        t0 = time.monotonic()
        out["timing"] = reboot_node(lab, victim)
        out["run_state_gone"] = True
        out["subnet_kept"] = lab.subnets()[victim.name] == subnet0
        out["var_lib_kept"] = (sorted(os.listdir(victim.cni_data_dir)), sorted(_ipam_files(victim))) == kept_before
        # The runtime cleans up the old sandboxes: DEL with a netns path that no longer exists.
        dels = []
        for pod in old_pods:
            try:
                lab.cni(victim, "DEL", pod)
                dels.append((pod.name, "ok"))
            except Exception as err:        # recorded, asserted by the caller
                dels.append((pod.name, str(err)))
            lab.pods.remove(pod)
        out["dels"] = dels
        out["ipam_after_dels"] = sorted(_ipam_files(victim))
        new = [lab.add_pod(victim, pods_per_node + j) for j in range(1, pods_per_node + 1)]
        ips = [p.ip for p in lab.pods]
        out["new_pod_ips"] = [p.ip for p in new]
        out["collisions"] = sorted({ip for ip in ips if ips.count(ip) > 1})
        converged = wait_for(lambda: not probes.kernel_vs_leases(lab) and lab.check(wait=5, retries=2)["ok"], 60, 0.5)
        out["converge_s"] = time.monotonic() - t0 if converged else None
        out["problems_after"] = [] if converged else probes.kernel_vs_leases(lab)
        out["ping_other_nodes"] = ping.stop()
        stray = [pid for pid in probes.netns_pids(victim.netns) if pid != victim.pid]
        out["leaks"] = [f"processes left in {victim.netns}: {stray}"] if stray else []
    finally:
        if ping is not None:
            ping.stop()
        out.setdefault("leaks", [])
        out["leaks"] = out["leaks"] + teardown(lab)
    out["lost"] = out.get("ping_other_nodes", {}).get("lost")
    out["row"] = Row(out["scenario"], out["lost"], out.get("converge_s"), out["leaks"], None)
    return out


def _ipam_files(node) -> list[str]:
    """host-local's reservations (one file per address) under the node's ipam dataDir."""
    root = os.path.join(node.workdir, "ipam")
    found = []
    for dirpath, _, files in os.walk(root):
        found += [os.path.join(os.path.relpath(dirpath, root), f) for f in files if not f.startswith("lock")]
    return found
