"""A lab's state file: `lab up` saves what it made, so `lab status/check/down` in another process
can find it and stop exactly the processes it started."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
from typing import Callable, Optional

from . import control_plane as cplane
from . import kubelet_node
from .etcd import EtcdServer
from .layout import STATE_DIR, Node, Pod, list_labs
from .netns import LabError


def save(self) -> None:
    """Write the lab (`self`: a Lab) to STATE_DIR/<name>.json, atomically."""
    os.makedirs(STATE_DIR, exist_ok=True)
    state = {"name": self.name, "workdir": self.workdir, "net_conf": self.net_conf,
             "dual_stack": self.dual_stack, "kube": self.kube,
             "daemon_args": self.daemon_args,
             "etcd": {"host": self.etcd.host, "port": self.etcd.port, "peer_port": self.etcd.peer_port,
                      "data_dir": self.etcd.data_dir, "pid": self.etcd.proc.pid} if self.etcd else None,
             "kube_api": self.kube_api.to_dict() if self.kube_api else None,
             "control_plane_options": self.control_plane_options,
             "service_account": [self.sa_namespace, self.sa_name],
             "prometheus": dataclasses.asdict(self.prometheus) if self.prometheus else None,
             "nodes": [dataclasses.asdict(n) for n in self.nodes],
             "pods": [dataclasses.asdict(p) for p in self.pods],
             "kubelet": self.kubelet_nodes.to_dict() if self.kubelet_nodes else None}
    path = os.path.join(STATE_DIR, f"{self.name}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(state, f, indent=1)
    os.rename(path + ".tmp", path)


def load(cls, name: Optional[str] = None, log: Callable[[str], None] = lambda m: None):
    """The Lab (of class cls) that `lab up` in another process saved: by name, or the only one."""
    names = list_labs()
    if name is None:
        if len(names) != 1:
            raise LabError("no lab is up (start one with `overlayd lab up`)" if not names else
                           f"several labs are up ({', '.join(names)}): pass --name")
        name = names[0]
    path = os.path.join(STATE_DIR, f"{name}.json")
    try:
        with open(path) as f:
            state = json.load(f)
    except FileNotFoundError:
        raise LabError(f"no lab named {name!r} (known: {', '.join(names) or 'none'})") from None
    lab = cls(state["name"], net_conf=state["net_conf"], log=log, daemon_args=state.get("daemon_args", ()),
              dual_stack=state.get("dual_stack", False), kube=state.get("kube", False),
              kubelet=bool(state.get("kubelet")))
    if state.get("kubelet"):
        lab.kubelet_nodes = kubelet_node.KubeletNodes.from_dict(state["kubelet"])
    lab.workdir = state["workdir"]
    e = state.get("etcd")
    if e:
        lab.etcd = EtcdServer(e["host"], e["port"], e["peer_port"], e["data_dir"], Detached(e["pid"]), lab.switch)
    if state.get("kube_api"):
        lab.kube_api = cplane.ControlPlane.from_dict(state["kube_api"])
    lab.control_plane_options = state.get("control_plane_options") or {}
    lab.sa_namespace, lab.sa_name = state.get("service_account") or ("", "")
    if state.get("prometheus"):
        from .prometheus import PrometheusServer
        lab.prometheus = PrometheusServer(**state["prometheus"])
    lab.nodes = [Node(**n) for n in state["nodes"]]
    lab.pods = [Pod(**p) for p in state["pods"]]
    return lab


class Detached:
    """Stands in for the Popen of an etcd started by another `overlayd lab` process."""

    def __init__(self, pid: int):
        self.pid = pid

    def poll(self):
        return None if os.path.exists(f"/proc/{self.pid}") else 0

    def terminate(self):
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def kill(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float = 10):
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(0.05)
        return 0
