"""A node namespace routing between two pods and a host outside the cluster.

    pod (10.244.1.2, fd10:244:0:1::2) --veth-- node --veth-- pod2 (10.244.2.2, fd10:244:0:2::2)
                                                 |              (a pod of another subnet, routed by the node)
                                               veth   node 192.0.2.1 / 2001:db8:0:1::1 (underlay)
                                                 |
                                outside 192.0.2.100 / 2001:db8:0:1::100 (no route back to the pods)

Each of pod, pod2 and outside runs a small UDP agent (tests/ops/udp_agent.py) that reports the
source address of every datagram it receives, which is what a user would check with tcpdump.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
from typing import Optional

from overlayd.lab.netns import ip, sysctl, unique_token
from overlayd.masquerade import CommandRunner

AGENT = os.path.join(os.path.dirname(__file__), "udp_agent.py")
PORT = 7777

NETWORK, SUBNET = "10.244.0.0/16", "10.244.1.0/24"
NETWORK6, SUBNET6 = "fd10:244::/56", "fd10:244:0:1::/64"
POD, POD6 = "10.244.1.2", "fd10:244:0:1::2"
POD2, POD2_6 = "10.244.2.2", "fd10:244:0:2::2"
NODE_UNDERLAY, NODE_UNDERLAY6 = "192.0.2.1", "2001:db8:0:1::1"
OUTSIDE, OUTSIDE6 = "192.0.2.100", "2001:db8:0:1::100"


class Agent:
    def __init__(self, netns: str, cleanup) -> None:
        self.netns = netns
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-u", AGENT, str(PORT)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     start_new_session=True)
        cleanup.push(f"udp agent pid {self.proc.pid}", self.stop)
        self.lines: "queue.Queue[str]" = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self.lines.get(timeout=20)
        assert first == "READY", f"udp agent in {netns} said {first!r}"

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def send(self, dst: str, sport: int = 0, payload: str = "x") -> None:
        self.proc.stdin.write(f"send {dst} {PORT} {sport} {payload}\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclasses.dataclass
class Seen:
    source: str
    port: int


class OpsLab:
    def __init__(self, make_netns, cleanup) -> None:
        t = unique_token()
        self.node, self.pod, self.pod2, self.outside = (make_netns(r) for r in ("node", "pod", "pod2", "out"))
        self.runner = CommandRunner(("ip", "netns", "exec", self.node))
        for peer_ns, node_if, node_addrs, peer_addrs, gw in (
            (self.pod, f"vp{t}", ("10.244.1.1/24", "fd10:244:0:1::1/64"), (POD + "/24", POD6 + "/64"),
             ("10.244.1.1", "fd10:244:0:1::1")),
            (self.pod2, f"vq{t}", ("10.244.2.1/24", "fd10:244:0:2::1/64"), (POD2 + "/24", POD2_6 + "/64"),
             ("10.244.2.1", "fd10:244:0:2::1")),
            (self.outside, f"vu{t}", (NODE_UNDERLAY + "/24", NODE_UNDERLAY6 + "/64"),
             (OUTSIDE + "/24", OUTSIDE6 + "/64"), None),
        ):
            # Made inside the node namespace, the peer end created directly in the other one.
            ip("link", "add", node_if, "type", "veth", "peer", "name", "eth0", "netns", peer_ns, netns=self.node)
            for addr in node_addrs:
                ip("addr", "add", addr, "dev", node_if, *(["nodad"] if ":" in addr else []), netns=self.node)
            for addr in peer_addrs:
                ip("addr", "add", addr, "dev", "eth0", *(["nodad"] if ":" in addr else []), netns=peer_ns)
            ip("link", "set", node_if, "up", netns=self.node)
            ip("link", "set", "eth0", "up", netns=peer_ns)
            if gw:
                ip("route", "add", "default", "via", gw[0], netns=peer_ns)
                ip("-6", "route", "add", "default", "via", gw[1], netns=peer_ns)
        sysctl(self.node, "net.ipv4.ip_forward", "1")
        sysctl(self.node, "net.ipv6.conf.all.forwarding", "1")
        self.agents = {ns: Agent(ns, cleanup) for ns in (self.pod, self.pod2, self.outside)}

    def source_seen(self, src_ns: str, dst_ns: str, dst: str, *, sport: int = 0,
                    timeout: float = 5.0) -> Optional[Seen]:
        """Send from src_ns to dst (an address in dst_ns) until it arrives; the source dst_ns saw, or None."""
        token = secrets.token_hex(6)
        sender, receiver = self.agents[src_ns], self.agents[dst_ns]
        deadline = time.monotonic() + timeout
        next_send = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_send:
                sender.send(dst, sport, token)
                next_send = time.monotonic() + 0.25
            try:
                line = receiver.lines.get(timeout=0.05)
            except queue.Empty:
                continue
            parts = line.split()
            if parts[0] == "GOT" and parts[3] == token:
                return Seen(str(ipaddress.ip_address(parts[1])), int(parts[2]))
        return None

    def nft(self, *args: str, input: Optional[str] = None) -> str:
        return self.runner.run(["nft", *args], input=input).stdout

    def iptables(self, *args: str, v6: bool = False) -> str:
        return self.runner.run(["ip6tables" if v6 else "iptables", "-w", "5", *args]).stdout
