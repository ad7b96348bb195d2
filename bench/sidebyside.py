"""The bench's small cluster: a switch namespace with a real etcd and a writer of fake peer leases,
and node namespaces in which flanneld or overlayd run as their own processes, timed from outside.

    <tok>-sw  br0 192.0.2.254/24, etcd on :2379, bench.etcd_writer
    <tok>-nI  eth0 192.0.2.I/24; the daemon under test (flanneld or overlayd), flannel.1

Everything lives in namespaces this module creates and the Cleanup removes.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Optional

from overlayd.lab import flanneld
from overlayd.lab.cleanup import Cleanup
from overlayd.lab.cluster import bin_dir
from overlayd.lab.etcd import start_etcd
from overlayd.lab.netns import add_netns, add_veth, ip, sysctl, unique_token
from overlayd.lab.procs import stop_popen, tail

from . import etcd_writer
from .kernel_watch import KernelWatch

SWITCH_IP = "192.0.2.254"
PREFIX = "/coreos.com/network"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Node:
    def __init__(self, lab: "SideLab", i: int):
        self.lab, self.i = lab, i
        self.netns = add_netns(f"{lab.token}-n{i}", lab.cleanup)
        self.ip = f"192.0.2.{i}"
        self.workdir = os.path.join(lab.workdir, f"n{i}")
        os.makedirs(self.workdir)
        add_veth(f"p{i}", lab.switch, "eth0", self.netns, lab.cleanup)
        ip("link", "set", f"p{i}", "master", "br0", "up", netns=lab.switch)
        ip("addr", "add", f"{self.ip}/24", "dev", "eth0", netns=self.netns)
        ip("link", "set", "eth0", "up", netns=self.netns)
        sysctl(self.netns, "net.ipv4.ip_forward", "1")
        self.proc: Optional[subprocess.Popen] = None
        self.kind = ""
        self.started_at = 0.0

    def command(self, kind: str) -> list[str]:
        subnet_file = os.path.join(self.workdir, "subnet.env")
        endpoint = f"http://{SWITCH_IP}:2379"
        if kind == "flanneld":
            return flanneld.command(self.lab.flanneld, underlay_ip=self.ip, subnet_file=subnet_file,
                                    etcd_endpoint=endpoint, etcd_prefix=PREFIX)
        return [os.path.join(bin_dir(), "overlayd"), f"--etcd-endpoints={endpoint}", f"--etcd-prefix={PREFIX}",
                "--iface=eth0", f"--subnet-file={subnet_file}",
                f"--cni-socket={os.path.join(self.workdir, 'cni.sock')}",
                f"--cni-data-dir={os.path.join(self.workdir, 'cni')}"]

    def fresh(self) -> None:
        """No flannel.1 (and so none of its routes, neighbours, FDB entries): a cold start."""
        ip("link", "del", "flannel.1", netns=self.netns, check=False)

    def start(self, kind: str) -> float:
        """exec the daemon; returns the monotonic time just before the exec."""
        log = open(os.path.join(self.workdir, f"{kind}.log"), "a")
        self.kind = kind
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.netns, *self.command(kind)], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                     env=self.lab.daemon_env)
        log.close()
        self.lab.cleanup.push(f"{kind} pid {self.proc.pid}", lambda p=self.proc: stop_popen(p))
        return self.started_at

    def stop(self) -> None:
        if self.proc is not None:
            stop_popen(self.proc)
            self.proc = None

    def status(self, field: str) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(next(line for line in f if line.startswith(field + ":")).split()[1])

    def cpu_ticks(self) -> int:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])          # utime + stime

    def watch(self) -> KernelWatch:
        w = KernelWatch(self.netns)
        self.lab.cleanup.push("kernel watch", w.close)
        return w

    def log_tail(self, n: int = 20) -> str:
        return tail(os.path.join(self.workdir, f"{self.kind}.log"), n)


class SideLab:
    def __init__(self, cleanup: Cleanup, *, with_flanneld: bool = True):
        import tempfile
        self.cleanup = cleanup
        self.token = f"ovs{unique_token()}"
        self.flanneld = flanneld.binary() if with_flanneld else None
        self.workdir = tempfile.mkdtemp(prefix=f"overlayd-bench-{self.token}-")
        cleanup.push("workdir", lambda: subprocess.run(["rm", "-rf", self.workdir]))
        # The daemon runs as installed: pip writes every module's bytecode at install, and a
        # daemon compiling ~50 modules from source at each start (a shell with
        # PYTHONDONTWRITEBYTECODE, a read-only checkout) would measure the compiler. Its caches
        # go to the workdir, never into the source tree; the first (warm-up) start writes them.
        self.daemon_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.daemon_env["PYTHONPYCACHEPREFIX"] = os.path.join(self.workdir, "pycache")
        self.switch = add_netns(f"{self.token}-sw", cleanup)
        ip("link", "add", "br0", "type", "bridge", netns=self.switch)
        ip("addr", "add", f"{SWITCH_IP}/24", "dev", "br0", netns=self.switch)
        ip("link", "set", "br0", "up", netns=self.switch)
        self.etcd = start_etcd(cleanup, host=SWITCH_IP, netns=self.switch, port=2379)
        self.writer = subprocess.Popen(["ip", "netns", "exec", self.switch, sys.executable, "-m", "bench.etcd_writer",
                                        self.etcd.endpoint, PREFIX], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       text=True, cwd=REPO, env={**os.environ, "GRPC_VERBOSITY": "NONE"})
        cleanup.push("etcd writer", lambda: stop_popen(self.writer))
        self._answer()
        self.peers = 0

    def _answer(self) -> list[str]:
        line = self.writer.stdout.readline().split()
        if not line or line[0] != "ok":
            raise RuntimeError(f"the etcd writer answered {line}")
        return line[1:]

    def _ask(self, cmd: str) -> list[str]:
        self.writer.stdin.write(cmd + "\n")
        self.writer.stdin.flush()
        return self._answer()

    def fill(self, peers: int) -> None:
        """Make the store hold peers 0..peers-1 (adding the missing ones)."""
        if peers > self.peers:
            self._ask(f"fill {self.peers} {peers}")
            self.peers = peers

    def put(self, i: int) -> float:
        return float(self._ask(f"put {i}")[0])

    def delete(self, i: int) -> float:
        return float(self._ask(f"del {i}")[0])

    def node(self, i: int) -> Node:
        return Node(self, i)


def routes(peers: range) -> list[tuple]:
    return [("route", etcd_writer.subnet(i)) for i in peers]


def all_entries(peers: range) -> list[tuple]:
    return [k for i in peers for k in etcd_writer.entries(i)]
