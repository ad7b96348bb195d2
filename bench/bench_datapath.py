"""Datapath figures at 5,000 peers (issue 4, "Speed"): netlink apply and dump, the daemon's start-up,
one new peer's event-to-kernel latency, the daemon's RSS; each next to `ip -batch` where it applies.

`python -m bench datapath`. Everything runs in a network namespace this benchmark creates and
removes: an underlay veth with 192.0.2.1/24, flannel.1 on it, 5,000 fake peers with PublicIPs in
198.18.0.0/15 and /24 pod subnets inside 10.0.0.0/8. The daemon reads its leases from an in-memory
backend (plain data, no etcd), so the figures are the datapath's. Figures only, nothing asserted:
the machine is shared, so each timing is the best (and the median) of a few runs.
"""
from __future__ import annotations

import ipaddress
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Iterator, Optional

from overlayd.daemon import Daemon
from overlayd.diff import plan_changes
from overlayd.entries import Entries, FdbEntry, NeighEntry, PeerEntries, Plan, RouteEntry
from overlayd.lab.cleanup import Cleanup, interrupts_as_exceptions
from overlayd.lab.netns import add_netns, ip, unique_token
from overlayd.netlink import Netlink, VxlanSpec
from overlayd.netlink_parse import parse_routes
from overlayd.netlink_wire import socket_in_netns
from overlayd.settings import DaemonSettings
from subnet_lease.backend import LeaseHealth
from subnet_lease.config import NetConfig, parse_net_config
from subnet_lease.lease import Lease, LeaseEvent

PEERS = 5000
EVENTS = 200
RUNS = 3
NET_CONF = '{"Network": "10.0.0.0/8", "SubnetLen": 24, "Backend": {"Type": "vxlan", "VNI": 1}}'
UNDERLAY_IP = "192.0.2.1"
OWN_SUBNET = ipaddress.ip_network("10.0.0.0/24")
RTMGRP_IPV4_ROUTE = 0x40

TARGET_APPLY_S = 1.0
TARGET_RATIO = 2.0
TARGET_EVENT_P99_MS = 20.0
TARGET_RSS_MB = 80.0


# -- the fake peers ---------------------------------------------------------------------------------
def peer_lease(i: int) -> Lease:
    """Peer i (0-based): subnet 10.a.b.0/24 (never our own 10.0.0.0/24), PublicIP 198.18.0.0/15 + i + 1."""
    subnet = ipaddress.ip_network(f"10.{(i + 1) >> 8 & 255}.{(i + 1) & 255}.0/24")
    mac = f"0a:58:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}:01"
    return Lease(subnet=subnet, public_ip=ipaddress.ip_address("198.18.0.0") + i + 1,
                 backend_data={"VNI": 1, "VtepMAC": mac})


def peer_entries(lease: Lease) -> PeerEntries:
    vtep, mac = str(lease.subnet.network_address), lease.vtep_mac
    return PeerEntries(route=RouteEntry(str(lease.subnet), vtep), neigh=NeighEntry(vtep, mac),
                       fdb=FdbEntry(mac, str(lease.public_ip)))


class MemoryLeases:
    """subnet_lease.backend.LeaseBackend over a dict: the leases are given, nothing is stored."""

    def __init__(self, peers: list[Lease]):
        self.config: NetConfig = parse_net_config(NET_CONF)
        self.leases = {lease.key: lease for lease in peers}

    def get_network_config(self) -> NetConfig:
        return self.config

    def find_own_lease(self, public_ip) -> Optional[Lease]:
        return None

    def acquire(self, config, template: Lease, previous_subnet=None, **_kwargs) -> Lease:
        own = Lease(subnet=OWN_SUBNET, public_ip=template.public_ip, backend_data=dict(template.backend_data))
        self.leases[own.key] = own
        return own

    def snapshot(self, *, reuse_start_read: bool = False) -> tuple[list[Lease], int]:
        return list(self.leases.values()), 1

    def watch(self, from_revision: int, stop: threading.Event) -> Iterator[list[LeaseEvent]]:
        stop.wait()          # events come from the benchmark, straight onto the daemon's queue
        return
        yield

    def health(self) -> LeaseHealth:
        return LeaseHealth(acquired=True, subnet=OWN_SUBNET)

    def close(self) -> None:
        pass


# -- the lab ----------------------------------------------------------------------------------------
def make_node(cleanup: Cleanup) -> str:
    ns = add_netns(f"ovb-{unique_token()}-dp", cleanup)
    ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0p", netns=ns)
    ip("addr", "add", f"{UNDERLAY_IP}/24", "dev", "eth0", netns=ns)
    ip("link", "set", "eth0", "up", netns=ns)
    ip("link", "set", "eth0p", "up", netns=ns)
    return ns


def fresh_device(nl: Netlink, underlay_index: int):
    """flannel.1 as the daemon makes it, empty (an old one is deleted with everything on it)."""
    old = nl.link("flannel.1")
    if old is not None:
        nl.delete_link(old.index)
    dev = nl.create_vxlan(VxlanSpec("flannel.1", 1, 8472, UNDERLAY_IP, underlay_index, 1450))
    nl.set_link(dev.index, up=True)
    return dev


def ip_batch(ns: str, peers: list[PeerEntries]) -> float:
    """The same 15,000 entries through iproute2's batch mode: ARP, then FDB, then routes."""
    neighs = "".join(f"neigh replace {p.neigh.ip} lladdr {p.neigh.mac} dev flannel.1 nud permanent\n" for p in peers)
    fdbs = "".join(f"fdb append {p.fdb.mac} dev flannel.1 dst {p.fdb.dst} self permanent\n" for p in peers)
    routes = "".join(f"route replace {p.route.dst} via {p.route.gateway} dev flannel.1 onlink proto 115\n"
                     for p in peers)
    started = time.perf_counter()
    for tool, script in (("ip", neighs), ("bridge", fdbs), ("ip", routes)):
        subprocess.run(["ip", "netns", "exec", ns, tool, "-batch", "-"], input=script, text=True,
                       check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def best_of(runs: int, fn: Callable[[], float]) -> list[float]:
    return [fn() for _ in range(runs)]


def summary(samples: list[float], unit: str = "s") -> str:
    scale = 1000 if unit == "ms" else 1
    return f"best {min(samples) * scale:.3f} {unit}, median {statistics.median(samples) * scale:.3f} {unit}"


def verdict(ok: bool) -> str:
    return "meets the target" if ok else "MISSES the target"


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered))) - 1))]


# -- figures ----------------------------------------------------------------------------------------
def netlink_figures(ns: str, peers: list[PeerEntries]) -> dict:
    figures = {}
    with Netlink(ns) as nl:
        under = nl.link("eth0")
        want = Entries()
        for p in peers:
            want.add_peer(p)

        def baseline() -> float:
            fresh_device(nl, under.index)
            return ip_batch(ns, peers)

        def ours() -> float:
            dev = fresh_device(nl, under.index)
            started = time.perf_counter()
            result = nl.apply(Plan(add=list(peers)), dev.index, under.index)
            took = time.perf_counter() - started
            assert not result.errors, result.errors[:3]
            return took

        figures["ip_batch"] = best_of(RUNS, baseline)
        figures["apply"] = best_of(RUNS, ours)
        dev = nl.link("flannel.1")
        dumps = []
        for _ in range(5):
            started = time.perf_counter()
            actual = nl.dump_entries(dev.index)
            dumps.append(time.perf_counter() - started)
        assert actual == want, "the dump does not read back what was applied"
        diffs = []
        for _ in range(5):
            started = time.perf_counter()
            plan = plan_changes(want, actual)
            diffs.append(time.perf_counter() - started)
        assert plan.empty
        figures["dump"], figures["diff"] = dumps, diffs

        removal = Plan(del_routes=[p.route for p in peers], del_fdbs=[p.fdb for p in peers],
                       del_neighs=[p.neigh for p in peers])
        started = time.perf_counter()
        result = nl.apply(removal, dev.index, under.index)
        figures["remove"] = [time.perf_counter() - started]
        assert not result.errors and len(nl.dump_entries(dev.index)) == 0

        # The old way, for scale: pyroute2, one request and one answer at a time (1,000 ARP entries).
        from pyroute2 import IPRoute
        with IPRoute(netns=ns, flags=0) as ipr:
            started = time.perf_counter()
            for p in peers[:1000]:
                ipr.neigh("replace", dst=p.neigh.ip, lladdr=p.neigh.mac, ifindex=dev.index, state=0x80)
            figures["pyroute2_ops_per_s"] = 1000 / (time.perf_counter() - started)
        fresh_device(nl, under.index)
    return figures


class RouteWatcher:
    """Timestamps of RTM_NEWROUTE notifications in the namespace, by destination."""

    def __init__(self, ns: str):
        self.sock = socket_in_netns(ns, socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((0, RTMGRP_IPV4_ROUTE))

    def wait_for(self, dst: str, timeout: float = 5.0) -> float:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                raise TimeoutError(f"route {dst} did not appear within {timeout}s")
            data = self.sock.recv(1 << 16)
            seen = time.monotonic()
            if any(r.dst == dst for r in parse_routes([data])):
                return seen

    def close(self) -> None:
        self.sock.close()


def daemon_settings(ns: str, subnet_dir: str) -> DaemonSettings:
    return DaemonSettings(subnet_file=os.path.join(subnet_dir, "subnet.env"), ifaces=("eth0",), netns=ns,
                          resync=3600.0)


def daemon_figures(ns: str, leases: list[Lease]) -> dict:
    figures: dict = {"start": [], "start_apply": [], "resync": []}
    applies: list[float] = []
    original_apply = Netlink.apply

    def timed_apply(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return original_apply(self, *args, **kwargs)
        finally:
            applies.append(time.perf_counter() - started)

    with tempfile.TemporaryDirectory() as tmp, Netlink(ns) as nl:
        under = nl.link("eth0")
        Netlink.apply = timed_apply            # the apply phase, timed from outside the daemon
        try:
            for run in range(RUNS):
                fresh_device(nl, under.index)
                daemon = Daemon(daemon_settings(ns, tmp), MemoryLeases(leases))
                applies.clear()
                started = time.perf_counter()
                daemon.start()
                figures["start"].append(time.perf_counter() - started)
                figures["start_apply"].append(sum(applies))
                dev = nl.link("flannel.1")
                count = len(nl.dump_entries(dev.index))
                assert count == 3 * len(leases), f"{count} entries in the kernel after start-up"
                if run < RUNS - 1:
                    daemon.shutdown()
        finally:
            Netlink.apply = original_apply

        for _ in range(5):                     # a resync of an in-sync device: dump, diff, nothing to apply
            started = time.perf_counter()
            daemon.full_reconcile("bench")
            figures["resync"].append(time.perf_counter() - started)

        watcher = RouteWatcher(ns)
        loop = threading.Thread(target=daemon.run, name="daemon-loop", daemon=True)
        loop.start()
        latencies = []
        try:
            for n in range(EVENTS):
                lease = peer_lease(PEERS + n)
                put_at = time.monotonic()
                daemon.events.put(("leases", [LeaseEvent("added", lease)], put_at))
                latencies.append(watcher.wait_for(str(lease.subnet)) - put_at)
                time.sleep(0.005)          # one event per batch: the figure is per event
        finally:
            daemon.shutdown()
            loop.join(5)
            watcher.close()
        figures["event"] = latencies
    return figures


def rss_child(ns: str, subnet_dir: str) -> None:
    """In a subprocess: a daemon with 5,000 peers, its RSS printed before and after start-up."""
    def rss_kb() -> int:
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])

    leases = [peer_lease(i) for i in range(PEERS)]
    before = rss_kb()
    daemon = Daemon(daemon_settings(ns, subnet_dir), MemoryLeases(leases))
    daemon.start()
    print(f"imported {before} started", flush=True)
    sys.stdin.read()                       # until the parent closes our stdin
    daemon.shutdown()


def rss_figures(ns: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp, Netlink(ns) as nl:
        fresh_device(nl, nl.link("eth0").index)
        proc = subprocess.Popen([sys.executable, "-m", "bench.bench_datapath", "--rss-child", ns, tmp],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        try:
            line = proc.stdout.readline().split()
            if len(line) < 3:
                raise RuntimeError(f"the daemon subprocess did not start: {line}")
            status = dict(l.split(":", 1) for l in open(f"/proc/{proc.pid}/status").read().splitlines() if ":" in l)
            return {"imported_kb": int(line[1]), "rss_kb": int(status["VmRSS"].split()[0]),
                    "hwm_kb": int(status["VmHWM"].split()[0])}
        finally:
            proc.stdin.close()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> None:
    leases = [peer_lease(i) for i in range(PEERS)]
    peers = [peer_entries(lease) for lease in leases]
    with interrupts_as_exceptions(), Cleanup() as cleanup:
        ns = make_node(cleanup)
        nlf = netlink_figures(ns, peers)
        dmf = daemon_figures(ns, leases)
        rss = rss_figures(ns)

    entries = 3 * PEERS
    base, apply_ = min(nlf["ip_batch"]), min(nlf["apply"])
    print(f"{PEERS} peers = {entries} entries (ARP, FDB, route) on an empty flannel.1, best of {RUNS} runs:")
    print(f"  ip -batch + bridge -batch:    {summary(nlf['ip_batch'])}  ({entries / base:,.0f} entries/s)")
    print(f"  Netlink.apply (pipelined):    {summary(nlf['apply'])}  ({entries / apply_:,.0f} entries/s)")
    print(f"    ratio apply / ip -batch:    {apply_ / base:.2f}x  (target ≤ {TARGET_RATIO:.0f}x: "
          f"{verdict(apply_ / base <= TARGET_RATIO)}); ≤ {TARGET_APPLY_S:.0f} s: {verdict(apply_ <= TARGET_APPLY_S)}")
    print(f"  pyroute2 one call at a time:  {nlf['pyroute2_ops_per_s']:,.0f} entries/s "
          f"(would take {entries / nlf['pyroute2_ops_per_s']:.1f} s)")
    print(f"  dump_entries of {entries} entries: {summary(nlf['dump'], 'ms')}")
    print(f"  plan_changes (in sync):       {summary(nlf['diff'], 'ms')}")
    print(f"  removing all {PEERS} peers:      {nlf['remove'][0]:.3f} s")

    start, start_apply = min(dmf["start"]), min(dmf["start_apply"])
    print(f"daemon, {PEERS} peer leases in memory, empty device, best of {RUNS} runs:")
    print(f"  Daemon.start() until all {entries} entries are in the kernel: {summary(dmf['start'])}")
    print(f"    of which Netlink.apply:     {summary(dmf['start_apply'])}")
    print(f"    ratio start / ip -batch:    {start / base:.2f}x; apply phase / ip -batch: {start_apply / base:.2f}x "
          f"(target ≤ {TARGET_RATIO:.0f}x: {verdict(start / base <= TARGET_RATIO)}); "
          f"≤ {TARGET_APPLY_S:.0f} s: {verdict(start <= TARGET_APPLY_S)}")
    print(f"  full reconcile of the in-sync device (dump, diff, no changes): {summary(dmf['resync'], 'ms')}")
    ev = [x * 1000 for x in dmf["event"]]
    print(f"  one new peer, lease event on the queue -> its route in the kernel ({len(ev)} events, "
          f"incremental path): p50 {statistics.median(ev):.1f} ms, p99 {pct(ev, 0.99):.1f} ms, max {max(ev):.1f} ms "
          f"(target p99 ≤ {TARGET_EVENT_P99_MS:.0f} ms: {verdict(pct(ev, 0.99) <= TARGET_EVENT_P99_MS)})")
    mb = rss["rss_kb"] / 1024
    print(f"  RSS of a daemon process with {PEERS} peers: {mb:.1f} MB (peak {rss['hwm_kb'] / 1024:.1f} MB, "
          f"{rss['imported_kb'] / 1024:.1f} MB after imports; target ≤ {TARGET_RSS_MB:.0f} MB: "
          f"{verdict(mb <= TARGET_RSS_MB)})")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--rss-child":
        rss_child(sys.argv[2], sys.argv[3])
    else:
        main()
