"""Chaos scenarios (issue 14): each brings up its own lab, breaks it, measures, and tears it down.

Every scenario returns a plain dict: the table's columns (`row`: scenario, packets lost, time
to converge, leaks found, memory growth) and the details the tests assert on. `make soak` and
`tests/chaos` call the same functions, the tests with short durations.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from typing import Callable, Optional

from . import probes
from .chaos import Blackhole, reboot_node
from .cluster import KUBE_API_PORT, Lab
from .etcd import free_port  # noqa: F401  (re-exported for the soak)
from .netns import run

# What a restarting overlayd spends its start-up CPU on (the kernel-alone run burns the same).
STARTUP_IMPORTS = ("import overlayd.daemon_main, overlayd.daemon, overlayd.cni_service, overlayd.health, "
                   "subnet_lease.etcd_backend, subnet_lease.kube_backend, prometheus_client")

# Leak bounds for a daemon that lived through a fault (its own process, measured before/after).
FD_SLACK = 4            # a reconnect may leave a new socket or timer fd in place of the old one
THREAD_SLACK = 4        # gRPC may start a poller thread per new channel


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


# -- 1 and 2: the lease store blackholed ------------------------------------------------------
def store_blackhole(*, seconds: float = 60.0, lease_ttl: Optional[int] = None, kube: bool = False,
                    nodes: int = 3, grace: float = 0.0, log=lambda m: None) -> dict:
    """Drop the lease store's packets for `seconds` while pods talk across nodes.

    Returned details: ping/TCP results, the subnets before/after, whether the store dropped the
    leases meanwhile (TTL shorter than the partition), whether any node touched its kernel
    entries during the partition, convergence after it, a new node's convergence (the watches
    work again), leaks.
    """
    name = "Kubernetes API" if kube else "etcd"
    args = ((f"--subnet-lease-ttl={lease_ttl}",) if lease_ttl else ()) + \
        ((f"--peer-removal-grace={grace:g}",) if grace else ())
    lab = Lab(kube=kube, daemon_args=args, log=log)
    out = {"scenario": f"{name} blackholed {seconds:.0f} s" + (f" (lease TTL {lease_ttl} s)" if lease_ttl else "")
           + (f", grace {grace:g} s" if grace else "")}
    pings, iperf = [], None
    try:
        lab.up(nodes, 1)
        if not lab.wait_converged(30):
            raise AssertionError(f"lab never converged: {probes.kernel_vs_leases(lab)}")
        subnets0, ips0 = lab.subnets(), public_ips(lab)
        kernel0 = {n.name: probes.kernel_entries(n.netns) for n in lab.nodes}
        before = snapshot(lab)
        pings = [probes.PingStream(a.netns, b.ip, 0.1) for a, b in cross_node_pairs(lab)]
        iperf = probes.Iperf(lab.pods[1].netns, lab.pods[1].ip, lab.pods[0].netns,
                             seconds=int(seconds + 25), interval=1, bitrate="2M").start()
        time.sleep(2)                              # the streams are established before the fault
        hole = Blackhole(lab.switch, KUBE_API_PORT if kube else 2379).start()
        store_lost_leases, kernel_changed = False, []
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            time.sleep(min(2.0, max(0.0, t_end - time.monotonic())))
            if not kube and not probes.store_leases(lab):
                store_lost_leases = True           # etcd expired them (the harness still reaches it)
            for n in lab.nodes:
                if probes.kernel_entries(n.netns) != kernel0[n.name]:
                    kernel_changed.append(n.name)
        out["dropped_packets"] = hole.dropped()
        hole.stop()
        t_lift = time.monotonic()

        def healed():
            return (lab.subnets() == subnets0 and public_ips(lab) == ips0
                    and not probes.kernel_vs_leases(lab))
        ok = wait_for(healed, 60)
        out["converge_s"] = time.monotonic() - t_lift if ok else None
        out["after_problems"] = [] if ok else probes.kernel_vs_leases(lab)
        # The watches work again: a node joining after the outage is seen by everyone.
        newcomer = lab.add_node(nodes + 1)
        lab.start_daemon(newcomer)
        lab.wait_for_subnet_file(newcomer, 60)
        out["newcomer_converged"] = bool(wait_for(lambda: lab.routes_converged()
                                                  and not probes.kernel_vs_leases(lab), 60))
        out["pings"] = [p.stop() for p in pings]
        out["tcp"] = iperf.result(timeout=seconds + 60)
        after = snapshot(lab)
        out["leaks"], out["rss_growth_kb"] = leaks_between(before, after)
        out.update(subnets_before=subnets0, subnets_after=lab.subnets(), store_lost_leases=store_lost_leases,
                   kernel_changed_during=sorted(set(kernel_changed)))
    finally:
        for p in pings:
            p.stop()
        if iperf is not None:
            iperf.kill()
        out.setdefault("leaks", [])
        out["leaks"] = out["leaks"] + teardown(lab)
    out["lost"] = sum(p["lost"] for p in out.get("pings", []))
    out["row"] = Row(out["scenario"], out["lost"], out.get("converge_s"), out["leaks"], out.get("rss_growth_kb"))
    return out


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


# -- 6: a full or read-only disk under the node's state -------------------------------------
def cni_attempt(lab: Lab, node, pod, command: str, netconf: dict) -> dict:
    """One CNI call as the runtime makes it: {'rc', 'code', 'msg'} (rc 0: success)."""
    from cni_plugin.invoke import run_plugin
    rc, doc, err = run_plugin(lab.plugin, command, netconf, pod.container_id, f"/var/run/netns/{pod.netns}",
                              "eth0", [os.path.dirname(lab.plugin), "/usr/lib/cni"], run_in_netns=node.netns)
    doc = doc if isinstance(doc, dict) else {}
    return {"rc": rc, "code": doc.get("code"), "msg": f"{doc.get('msg', '')} {doc.get('details', '')}".strip(),
            "ips": [i["address"] for i in doc.get("ips", [])] if rc == 0 else []}


def disk_files(root: str) -> dict:
    """Every file under root with its content problems: {'path': problem or ''} (pure reading)."""
    import json
    found = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, root)
            if f in (".filler", ".lock") or f.startswith(("lock", ".version-")):
                continue
            problem = ""
            try:
                with open(path) as fh:
                    text = fh.read()
            except OSError as err:
                problem = str(err)
            else:
                if ".tmp" in f or f.startswith(".subnet.env."):
                    problem = "temporary file left behind"
                elif f == "subnet.env":
                    keys = {line.split("=", 1)[0] for line in text.splitlines() if "=" in line}
                    if not {"FLANNEL_NETWORK", "FLANNEL_SUBNET", "FLANNEL_MTU", "FLANNEL_IPMASQ"} <= keys:
                        problem = f"truncated subnet.env: {text!r}"
                elif rel.startswith("cni"):
                    try:
                        json.loads(text)
                    except ValueError:
                        problem = f"corrupt cache entry: {text[:80]!r}"
                elif rel.startswith("ipam") and not f.startswith("last_reserved_ip") and not text.strip():
                    problem = "empty host-local reservation"
            found[rel] = problem
    return found


def disk_trouble(*, log=lambda m: None) -> dict:
    """subnet.env and the plugin cache on one small tmpfs, host-local's reservations on another;
    each filled, given back, made read-only and writable again, with ADD/DEL and a daemon restart
    in between. Every step's CNI result, readiness and the files' state are returned."""
    from .chaos import SmallDisk
    from .cluster import Pod
    from .netns import add_netns
    lab = Lab(log=log, daemon_args=(f"--healthz-port={probes.HEALTH_PORT}",))
    out = {"scenario": "disk full / read-only (subnet.env, CNI cache, host-local)", "steps": {}}
    disks = []
    steps = out["steps"]
    try:
        lab.up(1, 0)
        node = lab.nodes[0]
        lab.stop_daemon(node)
        state = SmallDisk(os.path.join(node.workdir, "state"))
        ipam = SmallDisk(os.path.join(node.workdir, "ipam-disk"))
        for d in (state, ipam):
            disks.append(d.mount())
        subnet_file = os.path.join(state.path, "subnet.env")
        node.extra_args = [f"--subnet-file={subnet_file}", f"--cni-data-dir={state.path}/cni"]
        lab.start_daemon(node)
        wait_for(lambda: probes.ready(node.netns), 30)
        conf = dict(node.netconf(), subnetFile=subnet_file, dataDir=f"{state.path}/cni",
                    ipam={"dataDir": ipam.path})
        pods = {}
        for j in range(1, 4):
            pods[j] = Pod(name=f"d{j}", node=node.name, netns=f"{node.netns}d{j}", container_id=f"{lab.name}-d{j}")
            add_netns(pods[j].netns, lab.cleanup)

        def step(name, command, j):
            result = cni_attempt(lab, node, pods[j], command, conf)
            result["files"] = {**{f"state/{k}": v for k, v in disk_files(state.path).items()},
                               **{f"ipam/{k}": v for k, v in disk_files(ipam.path).items()}}
            result["veths"] = len([l for l in run(["ip", "-o", "link", "show", "type", "veth"],
                                                  netns=node.netns).stdout.splitlines() if l.strip()])
            result["pod_has_eth0"] = run(["ip", "link", "show", "eth0"], netns=pods[j].netns, check=False).returncode == 0
            steps[name] = result
            return result

        step("add a (room)", "ADD", 1)
        ipam.fill()
        step("add b (host-local's disk full)", "ADD", 2)
        state.fill()
        step("add b (cache disk full too)", "ADD", 2)
        subnet_before = open(subnet_file).read()
        lab.stop_daemon(node)                    # a restart that must rewrite subnet.env (new ipmasq)
        node.extra_args.append("--ip-masq")
        lab.start_daemon(node)
        steps["daemon restart (disk full)"] = {
            "readyz": wait_for(lambda: (lambda r: r if r[0] == 503 and "No space" in r[1] else None)(
                probes.http_get(node.netns, "/readyz")), 30),
            "alive": lab.daemon_alive(node), "subnet_env_unchanged": open(subnet_file).read() == subnet_before}
        step("del a (disks full)", "DEL", 1)
        state.free()
        ipam.free()
        t0 = time.monotonic()
        steps["space back"] = {"ready": bool(wait_for(lambda: probes.ready(node.netns), 30)),
                               "ready_after_s": time.monotonic() - t0,
                               "subnet_env_new": "FLANNEL_IPMASQ=true" in open(subnet_file).read()}
        step("add b (room again)", "ADD", 2)
        state.read_only()
        ipam.read_only()
        step("add c (read-only)", "ADD", 3)
        step("del b (read-only)", "DEL", 2)
        state.read_only(False)
        ipam.read_only(False)
        step("add c (writable again)", "ADD", 3)
        step("del b (writable again)", "DEL", 2)
        out["leaks"] = [f"processes left in {node.netns}: {s}" for s in
                        [[p for p in probes.netns_pids(node.netns) if p != node.pid]] if s]
    finally:
        if lab.nodes:
            lab.stop_daemon(lab.nodes[0])
        for d in disks:
            d.unmount()
        out.setdefault("leaks", [])
        out["leaks"] = out["leaks"] + teardown(lab) + [f"mount {d.path}" for d in disks if os.path.ismount(d.path)]
    out["row"] = Row(out["scenario"], None, out["steps"].get("space back", {}).get("ready_after_s"), out["leaks"], None)
    return out


# -- 1b: only the owner cut off, past its TTL ----------------------------------------------
def owner_cut_off_past_ttl(*, lease_ttl: int = 8, newcomer: bool = False, log=lambda m: None) -> dict:
    """Only n1 loses etcd (nftables drops its packets), longer than its lease TTL; etcd expires
    its lease while n1 lives. With `newcomer`, the pool (4 subnets) has its one spare reserved
    and a fourth node joins during the partition: the only subnet it can get is n1's expired one
    (the gap docs/chaos.md describes)."""
    net_conf = {"Network": "10.244.0.0/16", "SubnetMin": "10.244.1.0", "SubnetMax": "10.244.4.0",
                "Backend": {"Type": "vxlan"}}
    lab = Lab(log=log, net_conf=net_conf, daemon_args=(f"--subnet-lease-ttl={lease_ttl}",))
    out = {"scenario": f"owner alone cut off {'+ newcomer ' if newcomer else ''}past TTL ({lease_ttl} s)"}
    hole = None
    try:
        lab.up(3, 1)
        if not lab.wait_converged(30):
            raise AssertionError(f"lab never converged: {probes.kernel_vs_leases(lab)}")
        owner, peers = lab.nodes[0], lab.nodes[1:]
        subnet0 = lab.subnets()[owner.name]
        own_net = [s for s, v in probes.store_leases(lab).items() if v["public_ip"] == owner.underlay_ip][0]
        kernel0 = probes.kernel_entries(owner.netns)
        hole = Blackhole(lab.switch, 2379, sources=[owner.underlay_ip]).start()
        t0 = time.monotonic()
        out["expired_s"] = (time.monotonic() - t0) if wait_for(
            lambda: own_net not in probes.store_leases(lab), lease_ttl * 4) else None
        out["peers_dropped_owner_s"] = (time.monotonic() - t0) if wait_for(
            lambda: all(own_net not in probes.kernel_entries(p.netns).routes for p in peers), 30) else None
        if newcomer:
            free = [f"10.244.{i}.0/24" for i in range(1, 5) if f"10.244.{i}.0/24" not in probes.store_leases(lab)
                    and f"10.244.{i}.0/24" != own_net]
            for net in free:                           # reserve the spare: only n1's is left
                lab.etcd.etcdctl("put", f"/coreos.com/network/subnets/{net.replace('/', '-')}",
                                 '{"PublicIP":"198.18.0.99","BackendType":"vxlan","BackendData":'
                                 '{"VNI":1,"VtepMAC":"02:00:00:00:00:99"}}')
            n4 = lab.add_node(4)
            lab.start_daemon(n4)
            try:
                lab.wait_for_subnet_file(n4, 20)
            except Exception:
                pass
            out["newcomer_subnet"] = lab.subnets().get("n4")
            out["newcomer_took_owners_subnet"] = out["newcomer_subnet"] == subnet0
        out["owner_kernel_kept"] = probes.kernel_entries(owner.netns) == kernel0
        out["owner_subnet_file_kept"] = lab.subnets()[owner.name] == subnet0
        out["partition_s"] = hole.stop()
        t_lift = time.monotonic()
        ok = wait_for(lambda: not probes.kernel_vs_leases(lab) and lab.routes_converged(), 60)
        out["converge_s"] = time.monotonic() - t_lift if ok else None
        out["owner_subnet_after"] = lab.subnets()[owner.name]
        out["owner_kept_subnet"] = out["owner_subnet_after"] == subnet0
        out["subnets_after"] = lab.subnets()
        out["problems_after"] = [] if ok else probes.kernel_vs_leases(lab)
        out["leaks"] = []
    finally:
        if hole is not None:
            hole.stop()
        out.setdefault("leaks", [])
        out["leaks"] = out["leaks"] + teardown(lab)
    collision = out.get("newcomer_took_owners_subnet")
    out["row"] = Row(out["scenario"], None, out.get("converge_s"),
                     out["leaks"] + (["newcomer handed the live owner's subnet"] if collision else []), None)
    return out
