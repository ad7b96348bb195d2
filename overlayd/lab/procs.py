"""Long-running processes the lab starts (kube-apiserver, controller-manager, relays, ...).

A process is recorded as plain data (name, pid, its start time from /proc, log file), so a later
`overlayd lab down` in another process stops exactly what this lab started: a pid whose start
time no longer matches belongs to someone else now and is left alone.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from typing import Optional, Sequence

from .netns import LabError


def start_time(pid: int) -> Optional[str]:
    """Field 22 of /proc/<pid>/stat: tells a process from a later one that reuses its pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[19]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


@dataclasses.dataclass
class Proc:
    name: str
    pid: int
    started: str              # field 22 of /proc/<pid>/stat: tells this process from a reused pid
    log: str

    def alive(self) -> bool:
        return start_time(self.pid) == self.started

    def signal(self, sig: int = signal.SIGTERM) -> bool:
        """Signal the process group, if it is still the process we started."""
        if not self.alive():
            return False
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL; only if it is still the process we started."""
        if not self.signal(signal.SIGTERM):
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(self.pid)
            if not self.alive():
                return
            time.sleep(0.05)
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        while self.alive() and time.monotonic() < deadline + 5:
            _reap(self.pid)
            time.sleep(0.05)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_all(processes: list, timeout: float = 10.0) -> None:
    """Stop several at once: SIGTERM them all, then wait for (or kill) each."""
    for p in processes:
        p.signal(signal.SIGTERM)
    for p in processes:
        p.stop(timeout)


def record(name: str, pid: int, log: str) -> Proc:
    """The record of a process started elsewhere (by pid), so it can be stopped the same way."""
    return Proc(name, pid, start_time(pid) or "", log)


def start(name: str, argv: Sequence[str], log: str, *, netns: Optional[str] = None,
          env: Optional[dict] = None) -> Proc:
    """Start argv (inside netns if given) in its own session, output appended to log."""
    cmd = list(argv)
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    with open(log, "a") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env, start_new_session=True)
    started = start_time(p.pid)
    if started is None:
        raise LabError(f"{name} exited at once; its log:\n{tail(log)}")
    return Proc(name, p.pid, started, log)


def stop_popen(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop a child this process started with Popen: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
