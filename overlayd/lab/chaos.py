"""Fault injection for the lab (issue 14): what real outages do, done to a running Lab.

- `Blackhole`: nftables in the switch namespace drops the lease store's packets both ways.
  Nothing is closed: TCP connections stay half-open and clients only notice by their own
  timeouts (call timeouts and TCP keepalive for etcd, watch/request timeouts for the Kubernetes API), which is
  what a partitioned or hung store looks like, unlike a clean stop that resets connections.
- `reboot_node`: the node's processes are killed, its namespaces (node and pods) and /run
  state (subnet file, CNI socket) go away; its /var/lib state (the plugin's cache, host-local's
  reservations) stays; then it comes back on the same underlay address and overlayd starts.
- `SmallDisk`: a tmpfs of a few pages on a lab directory, which tests fill up (a filler file),
  make read-only (remount) and give back; unmounted on cleanup.

Everything here changes only the lab's own namespaces and directories.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Iterable, Optional

from .netns import LabError, delete_netns, netns_exists, run, unique_token

ETCD_PORT = 2379


class Blackhole:
    """Drop TCP to/from `port` on the switch's br0 (optionally only for some node addresses).

    Packets from the switch namespace's own loopback (etcdctl in the lab) still pass, so the
    harness can look at the store while the nodes cannot reach it.
    """

    def __init__(self, netns: str, port: int = ETCD_PORT, sources: Iterable[str] = (),
                 device: str = "br0"):
        self.netns = netns
        self.port = int(port)
        self.sources = list(sources)
        self.device = device
        self.table = f"ovlchaos{unique_token()}"
        self.since: Optional[float] = None

    def ruleset(self) -> str:
        """The nftables table (pure: tests and docs show it)."""
        src = dst = ""
        if self.sources:
            addrs = ", ".join(self.sources)
            src, dst = f"ip saddr {{ {addrs} }} ", f"ip daddr {{ {addrs} }} "
        return (f"table inet {self.table} {{\n"
                f"  chain input {{ type filter hook input priority -300; policy accept;\n"
                f"    iifname \"{self.device}\" {src}tcp dport {self.port} counter drop\n  }}\n"
                f"  chain output {{ type filter hook output priority -300; policy accept;\n"
                f"    oifname \"{self.device}\" {dst}tcp sport {self.port} counter drop\n  }}\n"
                f"}}\n")

    def start(self) -> "Blackhole":
        run(["nft", "-f", "-"], netns=self.netns, input=self.ruleset())
        self.since = time.monotonic()
        return self

    def stop(self) -> float:
        """Lift it; returns how long it lasted (s). Safe to call twice."""
        if netns_exists(self.netns):
            run(["nft", "delete", "table", "inet", self.table], netns=self.netns, check=False)
        lasted = time.monotonic() - self.since if self.since is not None else 0.0
        self.since = None
        return lasted

    def dropped(self) -> int:
        """Packets dropped so far (both directions): proof the blackhole bit."""
        out = run(["nft", "list", "table", "inet", self.table], netns=self.netns, check=False).stdout
        return sum(int(part.split()[0]) for part in out.split("packets")[1:] if part.split())

    def __enter__(self) -> "Blackhole":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def reboot_node(lab, node, *, down_for: float = 0.0) -> dict:
    """Power-cycle one node of `lab`: what goes away and what stays, as on a real reboot.

    Returns the timings (s): 'down' (until the namespace was gone) and 'up' (until overlayd wrote
    its subnet file again). The caller checks convergence, DELs and new pods.
    """
    t0 = time.monotonic()
    if node.pid is not None:
        lab.stop_daemon(node, signal.SIGKILL)
    for pod in [p for p in lab.pods if p.node == node.name]:
        delete_netns(pod.netns)                        # the pods' sandboxes die with the node
    delete_netns(node.netns)                           # its links and routes, and the switch's veth end
    for path in (node.subnet_file, node.cni_socket):   # /run is a tmpfs: gone after a reboot
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    _wait(lambda: not netns_exists(node.netns), 10, f"namespace {node.netns} to go")
    down = time.monotonic() - t0
    time.sleep(down_for)
    lab.replug_node(node)
    lab.start_daemon(node)
    lab.wait_for_subnet_file(node, 60)
    return {"down": down, "up": time.monotonic() - t0}


class SmallDisk:
    """A tmpfs of `size` bytes mounted on `path` (a lab directory), to fill and give back."""

    def __init__(self, path: str, size: int = 256 * 1024):
        self.path = path
        self.size = size
        self.filler = os.path.join(path, ".filler")
        self.mounted = False

    def mount(self) -> "SmallDisk":
        os.makedirs(self.path, exist_ok=True)
        run(["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0755", "tmpfs", self.path])
        self.mounted = True
        return self

    def fill(self) -> int:
        """Take every free byte (ENOSPC from then on); returns how many were taken."""
        written = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 16, 4096, 1):      # big chunks, then the last page, then bytes
                while True:
                    try:
                        n = os.write(fd, b"\0" * size)
                    except OSError:
                        break
                    written += n
                    if n < size:
                        break
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        try:
            os.unlink(self.filler)
        except FileNotFoundError:
            pass

    def read_only(self, ro: bool = True) -> None:
        run(["mount", "-o", f"remount,{'ro' if ro else 'rw'}", self.path])

    def unmount(self) -> None:
        if self.mounted:
            run(["umount", "-l", self.path], check=False)
            self.mounted = False


def _wait(predicate, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")


def kill_quietly(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
