"""A lab node's host: its network namespace plus a private mount namespace in which the paths a
Kubernetes node keeps per machine are the node's own directories.

    /etc/cni/net.d  /opt/cni/bin  /var/lib/kubelet  /run/flannel  /var/lib/cni  /run/netns
    /var/lib/containerd  /run/containerd  /var/log/pods  /var/log/containers

Each is a bind mount of <workdir>/host/<path> made inside the mount namespace, so kubelet,
containerd, the CNI plugins and the DaemonSet's hostPath volumes of node n1 see n1's files and
nothing of n2's. The namespace is held by one `sleep` process (the holder); everything of the
node runs under `nsenter --target <holder> --mount --net`. /sys is not remounted (as
`ip netns exec` would), so the cgroup hierarchies stay visible to kubelet and runc.

The mount points themselves must exist on this machine's filesystem: the empty directories are
created once (mkdir -p) and left in place; nothing is ever mounted on them outside the namespace.

Per node, a cgroup parent (CGROUP_BASE/<lab>/<node>) in every cgroup v1 hierarchy and in the
unified one: kubelet's --cgroup-root. Removing the node kills what is left in it and removes it.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import subprocess
import time
from typing import Optional

from .netns import LabError
from .procs import start_time

NODE_PATHS = ("/etc/cni/net.d", "/opt/cni/bin", "/var/lib/kubelet", "/run/flannel", "/var/lib/cni", "/run/netns",
              "/var/lib/containerd", "/run/containerd", "/var/log/pods", "/var/log/containers")
# kubelet sets these machine-wide sysctls to its liking at start (setupKernelTunables: it would make
# the shared machine reboot 10 s after any kernel oops). In the node's mount namespace each is a
# file with kubelet's value bind-mounted over /proc/sys/<key>: kubelet reads what it wants and
# writes nothing. Containers mount their own /proc and see the machine's values.
KUBELET_SYSCTLS = {"vm/overcommit_memory": "1", "vm/panic_on_oom": "0", "kernel/panic": "10",
                   "kernel/panic_on_oops": "1"}
CGROUP_FS = "/sys/fs/cgroup"
CGROUP_BASE = "overlayd-lab"


@dataclasses.dataclass
class NodeHost:
    """Plain data (saved in the lab's state): where the node's namespaces and files are."""
    name: str
    netns: str
    workdir: str
    cgroup_root: str                 # kubelet's --cgroup-root, e.g. /overlayd-lab/ovlab12/n1
    holder_pid: int = 0
    holder_started: str = ""

    @property
    def host_dir(self) -> str:
        return os.path.join(self.workdir, "host")

    def own(self, path: str) -> str:
        """Where the node's `path` lives on this machine's filesystem."""
        return os.path.join(self.host_dir, path.lstrip("/"))

    def enter(self) -> list[str]:
        """The argv prefix that runs a command on this node (its mount and network namespaces)."""
        return ["nsenter", f"--target={self.holder_pid}", "--mount", "--net", "--"]

    def run(self, *cmd: str, check: bool = True, input: Optional[str] = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        proc = subprocess.run([*self.enter(), *cmd], capture_output=True, text=True, input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise LabError(f"on {self.name}: {' '.join(cmd)} failed ({proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
        return proc

    def alive(self) -> bool:
        return bool(self.holder_pid) and start_time(self.holder_pid) == self.holder_started


def cgroup_hierarchies() -> list[str]:
    """Every mounted cgroup hierarchy under /sys/fs/cgroup (v1 controllers and the unified one)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] in ("cgroup", "cgroup2") and fields[4].startswith(CGROUP_FS + "/"):
                out.append(fields[4])
    return sorted(set(out))


def make_cgroup_root(path: str) -> None:
    for h in cgroup_hierarchies():
        d = h + path
        try:
            os.makedirs(d, exist_ok=True)
        except FileNotFoundError:        # another lab removed the empty shared base just then
            os.makedirs(d, exist_ok=True)
        if os.path.basename(h) == "cpuset":
            # A new cpuset starts empty: no task may join it until cpus and mems are set.
            parts = path.strip("/").split("/")
            for i in range(len(parts)):
                sub, parent = h + "/" + "/".join(parts[:i + 1]), h + "/" + "/".join(parts[:i])
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    with open(os.path.join(parent, knob)) as f:
                        value = f.read().strip()
                    with open(os.path.join(sub, knob)) as f:
                        if f.read().strip():
                            continue
                    with open(os.path.join(sub, knob), "w") as f:
                        f.write(value)


def cgroup_pids(path: str) -> set[int]:
    pids = set()
    for h in cgroup_hierarchies():
        for root, _dirs, _files in os.walk(h + path):
            try:
                with open(os.path.join(root, "cgroup.procs")) as f:
                    pids.update(int(p) for p in f.read().split())
            except (FileNotFoundError, OSError):
                pass
    return pids


def remove_cgroup_root(path: str, wait: float = 10) -> list[str]:
    """Kill every process left under path (all hierarchies), then remove the cgroups, deepest first."""
    deadline = time.monotonic() + wait
    while True:
        pids = cgroup_pids(path)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not pids or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    left = []
    for h in cgroup_hierarchies():
        top = h + path
        for root, _dirs, _files in sorted(os.walk(top), key=lambda t: -t[0].count("/")):
            try:
                os.rmdir(root)
            except FileNotFoundError:
                pass
            except OSError:
                left.append(root)
    # the per-lab parent and the shared base, if they are empty now (another lab's are not)
    for h in cgroup_hierarchies():
        for parent in (os.path.dirname(h + path), os.path.dirname(os.path.dirname(h + path))):
            try:
                os.rmdir(parent)
            except OSError:
                break
    return left


def start(host: NodeHost, wait: float = 10) -> NodeHost:
    """Make the node's directories, its cgroup root, and the holder of its mount namespace."""
    os.makedirs(host.host_dir, exist_ok=True)
    mounts = []
    for path in NODE_PATHS:
        os.makedirs(path, exist_ok=True)
        os.makedirs(host.own(path), exist_ok=True)
        mounts.append(f"mount --bind {shlex.quote(host.own(path))} {shlex.quote(path)}")
    os.makedirs(os.path.join(host.workdir, "sysctl"), exist_ok=True)
    for key, value in KUBELET_SYSCTLS.items():
        fake = os.path.join(host.workdir, "sysctl", key.replace("/", "."))
        with open(fake, "w") as f:
            f.write(value + "\n")
        mounts.append(f"mount --bind {shlex.quote(fake)} /proc/sys/{key}")
    ready = os.path.join(host.workdir, "host.ready")
    script = " && ".join(mounts + [f"touch {shlex.quote(ready)}", "exec sleep infinity"])
    make_cgroup_root(host.cgroup_root)
    with open(os.path.join(host.workdir, "host.log"), "a") as log:
        proc = subprocess.Popen(["nsenter", f"--net=/var/run/netns/{host.netns}", "--",
                                 "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    host.holder_pid = proc.pid
    host.holder_started = start_time(proc.pid) or ""
    deadline = time.monotonic() + wait
    while not os.path.exists(ready):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(host)
            with open(os.path.join(host.workdir, "host.log")) as f:
                raise LabError(f"node {host.name}: its mount namespace could not be set up: {f.read()[-2000:]}")
        time.sleep(0.02)
    return host


def stop(host: NodeHost) -> list[str]:
    """Kill what runs in the node's cgroup root, then the holder: the mount namespace goes with it."""
    left = remove_cgroup_root(host.cgroup_root)
    if host.alive():
        try:
            os.kill(host.holder_pid, signal.SIGKILL)
            os.waitpid(host.holder_pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    return left
