"""What a user checks after an outage, measured from outside the daemons (issue 14).

- the leases in the store, and the kernel entries each node programmed for them
  (kernel == leases: no stale and no missing route, FDB or neighbour entry);
- a process's resident memory, open file descriptors and threads (leaks);
- pod traffic: a ping stream counting lost echoes, a TCP stream (iperf3) reporting gaps.

Plain data out; the tests and `make soak` decide what is acceptable.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Optional

from subnet_lease.kube_backend import Annotations, lease_from_node
from subnet_lease.lease import LeaseFormatError, lease_from_json

from .netns import run

VXLAN_DEV = "flannel.1"


# -- leases and kernel entries ----------------------------------------------------------------
def store_leases(lab) -> dict[str, dict]:
    """Every lease in the lab's store: subnet -> {public_ip, mac} (etcd or Kubernetes Nodes)."""
    out = {}
    if lab.kube:
        ann = Annotations("flannel.alpha.coreos.com")
        for node in lab.api.nodes():
            try:
                lease = lease_from_node(node, ann)
            except (LeaseFormatError, ValueError):
                continue
            if lease is not None and lease.subnet is not None:
                out[str(lease.subnet)] = {"public_ip": str(lease.public_ip), "mac": lease.vtep_mac}
        return out
    from .cluster import ETCD_PREFIX
    text = lab.etcd.etcdctl("get", "--prefix", f"{ETCD_PREFIX}/subnets/").stdout.splitlines()
    for key, value in zip(text[0::2], text[1::2]):
        try:
            lease = lease_from_json(key.rsplit("/", 1)[-1], value)
        except LeaseFormatError:
            continue
        if lease.subnet is not None:
            out[str(lease.subnet)] = {"public_ip": str(lease.public_ip), "mac": lease.vtep_mac}
    return out


@dataclasses.dataclass
class KernelEntries:
    routes: set          # destination subnets routed over the VXLAN device
    fdb: set             # (mac, underlay dst)
    neigh: set           # (vtep ip, mac)
    mac: Optional[str]   # the device's own MAC


def kernel_entries(netns: str) -> KernelEntries:
    def js(*args, tool="ip"):
        out = run([tool, "-j", *args], netns=netns, check=False).stdout.strip()
        return json.loads(out) if out else []
    link = js("link", "show", "dev", VXLAN_DEV)
    routes = {r["dst"] for r in js("route", "show", "dev", VXLAN_DEV) if "/" in r.get("dst", "")}
    fdb = {(f["mac"], f["dst"]) for f in js("fdb", "show", "dev", VXLAN_DEV, tool="bridge") if f.get("dst")}
    neigh = {(n["dst"], n.get("lladdr")) for n in js("-4", "neigh", "show", "dev", VXLAN_DEV, "nud", "permanent")}
    return KernelEntries(routes, fdb, neigh, link[0].get("address") if link else None)


def kernel_vs_leases(lab, nodes=None) -> list[str]:
    """Differences between each running node's kernel and the store's leases ([] = equal)."""
    leases = store_leases(lab)
    problems = []
    for node in nodes if nodes is not None else lab.nodes:
        k = kernel_entries(node.netns)
        own = {s for s, v in leases.items() if v["public_ip"] == node.underlay_ip}
        peers = {s: v for s, v in leases.items() if s not in own}
        want_routes = set(peers)
        want_fdb = {(v["mac"], v["public_ip"]) for v in peers.values()}
        want_neigh = {(str(ipaddress.ip_network(s).network_address), v["mac"]) for s, v in peers.items()}
        for what, have, want in (("route", k.routes, want_routes), ("fdb", k.fdb, want_fdb),
                                 ("neigh", k.neigh, want_neigh)):
            if have - want:
                problems.append(f"{node.name}: stale {what} {sorted(have - want)}")
            if want - have:
                problems.append(f"{node.name}: missing {what} {sorted(want - have)}")
    return problems


# -- processes ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Usage:
    rss_kb: int
    fds: int
    threads: int


def usage(pid: int) -> Usage:
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    return Usage(int(status["VmRSS"].split()[0]), len(os.listdir(f"/proc/{pid}/fd")),
                 int(status["Threads"]))


def children(pid: int) -> list[int]:
    """Every live descendant of pid (the CNI service's delegates, helpers...)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            kids = []
        out += kids
        todo += kids
    return out


def netns_pids(netns: str) -> list[int]:
    return [int(p) for p in run(["ip", "netns", "pids", netns], check=False).stdout.split()]


def lab_namespaces(lab_name: str) -> list[str]:
    return sorted(n for n in os.listdir("/var/run/netns") if n.startswith(f"{lab_name}-"))


# -- traffic --------------------------------------------------------------------------------
class PingStream:
    """`ping -q -i interval` from a pod to an address until stop(); counts lost echoes.

    Quiet: only the summary is printed, so a long stream never fills the pipe and stalls ping."""

    def __init__(self, netns: str, dst: str, interval: float = 0.05):
        self.dst = dst
        self.summary: Optional[dict] = None
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, "ping", "-n", "-q", "-i", str(interval), dst],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)

    def stop(self) -> dict:
        """{'sent', 'received', 'lost'}; SIGINT makes ping print its summary. Safe to call twice."""
        if self.summary is not None:
            return self.summary
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        m = re.search(r"(\d+) packets transmitted, (\d+) received", out or "")
        sent, got = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
        # The echo in flight when SIGINT came is not lost: at most one reply may be missing.
        self.summary = {"dst": self.dst, "sent": sent, "received": got, "lost": max(0, sent - got - 1)}
        return self.summary


class Iperf:
    """An iperf3 server in one pod, a client stream from another, JSON intervals at the end."""

    def __init__(self, server_ns: str, server_ip: str, client_ns: str, seconds: float,
                 interval: float = 0.5, bitrate: Optional[str] = None, port: int = 5201):
        self.server_ns, self.port = server_ns, port
        self.server = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-p", str(port)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       start_new_session=True)
        args = ["iperf3", "-c", server_ip, "-p", str(port), "-t", str(seconds), "-i", str(interval), "-J"]
        if bitrate:
            args += ["-b", bitrate]
        self.args = ["ip", "netns", "exec", client_ns, *args]
        self.client: Optional[subprocess.Popen] = None

    def start(self, wait: float = 20) -> "Iperf":
        """Start the client once the server listens (a client that finds no server just fails)."""
        deadline = time.monotonic() + wait
        while not self._listening() and time.monotonic() < deadline and self.server.poll() is None:
            time.sleep(0.05)
        self.client = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, start_new_session=True)
        return self

    def _listening(self) -> bool:
        out = run(["ss", "-Hltn", f"sport = :{self.port}"], netns=self.server_ns, check=False).stdout
        return bool(out.strip())

    def result(self, timeout: float = 120) -> dict:
        """{'intervals': [bits/s...], 'gaps': n intervals at 0, 'bps': mean, 'retransmits', 'error'}."""
        out, err = self.client.communicate(timeout=timeout)
        self.server.kill()
        self.server.wait(5)
        try:
            doc = json.loads(out)
        except ValueError:
            return {"error": (err or out or "no output").strip()[-500:], "intervals": [], "gaps": 0, "bps": 0}
        ivs = [i["sum"]["bits_per_second"] for i in doc.get("intervals", [])]
        end = doc.get("end", {}).get("sum_sent", {})
        return {"intervals": ivs, "gaps": sum(1 for b in ivs if b == 0), "bps": end.get("bits_per_second", 0),
                "retransmits": end.get("retransmits"), "error": doc.get("error")}

    def kill(self) -> None:
        """Stop both ends (idempotent)."""
        for p in (self.client, self.server):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(5)


# -- the daemon's own endpoints (--healthz-port), reached inside the node's namespace ----------
HEALTH_PORT = 10258       # what the chaos labs pass as --healthz-port (each node has its own namespace)


_HTTP_GET = """
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
        code, body = r.status, r.read()
except urllib.error.HTTPError as e:
    code, body = e.code, e.read()
except OSError as e:
    code, body = 0, str(e).encode()
sys.stdout.write(body.decode(errors="replace") + chr(10) + str(code))
"""


def http_get(netns: str, path: str, port: int = HEALTH_PORT) -> tuple[int, str]:
    """(HTTP status, body) of GET http://127.0.0.1:port/path inside netns; (0, why) if unreachable."""
    url = f"http://127.0.0.1:{port}{path}"
    curl = shutil.which("curl")       # ~5 ms; an interpreter is the fallback (~50 ms a poll)
    cmd = ([curl, "-s", "-m", "3", "-o", "-", "-w", "\n%{http_code}", url] if curl
           else [sys.executable, "-c", _HTTP_GET, url])
    proc = run(cmd, netns=netns, check=False)
    body, _, code = proc.stdout.rpartition("\n")
    return (int(code) if code.isdigit() else 0), body


def ready(netns: str, port: int = HEALTH_PORT) -> bool:
    return http_get(netns, "/readyz", port)[0] == 200


def metrics(netns: str, port: int = HEALTH_PORT) -> dict[str, float]:
    """The daemon's Prometheus samples: 'name{labels}' -> value."""
    code, body = http_get(netns, "/metrics", port)
    out = {}
    if code == 200:
        for line in body.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                try:
                    out[key] = float(value)
                except ValueError:
                    pass
    return out
