"""What `overlayd lab check` asks of a lab: routes converged, and the pod-by-pod ping matrix."""
from __future__ import annotations

import concurrent.futures
import ipaddress
import time

from ..subnet_file import read_subnet_file as read_env
from .layout import Pod
from .netns import ip, run


def routes_converged(lab) -> bool:
    """Every node has a route to every other node's subnet."""
    subnets = {n.name: str(ipaddress.ip_interface(s).network) for n, s in
               ((n, read_env(n.subnet_file).get("FLANNEL_SUBNET")) for n in lab.nodes) if s}
    if len(subnets) != len(lab.nodes):
        return False
    for node in lab.nodes:
        routes = ip("route", "show", netns=node.netns).stdout
        for other, subnet in subnets.items():
            if other != node.name and f"{subnet} " not in routes:
                return False
    return True


def wait_converged(lab, wait: float = 30) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if routes_converged(lab):
            return True
        time.sleep(0.2)
    return False


def ping(src: Pod, dst_ip: str, count: int = 1, timeout: float = 2) -> bool:
    proc = run(["ping", "-c", str(count), "-W", str(int(timeout)), "-q", dst_ip], netns=src.netns, check=False)
    return proc.returncode == 0


def check(lab, *, wait: float = 30, retries: int = 3) -> dict:
    """The pod-by-pod matrix: every ordered pair of pods, one ICMP echo (retried)."""
    converged = wait_converged(lab, wait)
    pairs = [(s, d) for s in lab.pods for d in lab.pods if s is not d]

    def probe(pair):
        src, dst = pair
        for _ in range(retries):
            if ping(src, dst.ip):
                return True
        return False

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(probe, pairs))
    rows = [{"src": s.name, "dst": d.name, "src_ip": s.ip, "dst_ip": d.ip,
             "cross_node": s.node != d.node, "ok": ok} for (s, d), ok in zip(pairs, results)]
    return {"lab": lab.name, "converged": converged, "ok": all(results), "pairs": rows}
