"""Network namespaces and links for the lab, through iproute2.

The lab is tooling around the product, so it drives `ip` like an operator would;
the daemon itself talks netlink through overlayd.netlink only.
"""
from __future__ import annotations

import os
import secrets
import subprocess
from typing import Sequence

from .cleanup import Cleanup

NETNS_DIR = "/var/run/netns"


class LabError(RuntimeError):
    pass


def run(args: Sequence[str], *, netns: str | None = None, check: bool = True,
        input: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    cmd = list(args)
    if netns is not None:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return run(["ip", *args], netns=netns, check=check)


def unique_token(n: int = 6) -> str:
    """Short, random: names must be unique per run and fit IFNAMSIZ (15 chars)."""
    return secrets.token_hex(n // 2 + 1)[:n]


def netns_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def add_netns(name: str, cleanup: Cleanup) -> str:
    ip("netns", "add", name)
    cleanup.push(f"netns {name}", lambda: delete_netns(name))
    ip("link", "set", "lo", "up", netns=name)
    return name


def delete_netns(name: str) -> None:
    if not netns_exists(name):
        return
    # Processes left inside would keep the namespace (and its links) alive.
    pids = run(["ip", "netns", "pids", name], check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError):
            pass
    ip("netns", "del", name, check=False)


def sysctl(netns: str, key: str, value: str) -> None:
    run(["sysctl", "-qw", f"{key}={value}"], netns=netns)


def add_veth(a: str, a_ns: str | None, b: str, b_ns: str | None, cleanup: Cleanup) -> None:
    """A veth pair with end `a` in namespace a_ns and `b` in b_ns (None = where we are).

    Both ends are created directly inside their namespaces, so a name such as eth0 never
    collides with the root namespace's own links.
    """
    cmd = ["link", "add", a]
    if a_ns:
        cmd += ["netns", a_ns]
    cmd += ["type", "veth", "peer", "name", b]
    if b_ns:
        cmd += ["netns", b_ns]
    ip(*cmd)
    cleanup.push(f"veth {a}", lambda: ip("link", "del", a, netns=a_ns, check=False))
