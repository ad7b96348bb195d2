"""containerd for a lab node: its own config, root, state and socket, run inside the node's
namespaces (overlayd.lab.node_host), with the CRI plugin kubelet talks to.

Debian 12's containerd (1.6.20) and runc (1.1.5): kubelet v1.37 still runs on containerd 1.6.
It asks the runtime for its cgroup driver (the RuntimeConfig CRI call, new in containerd 2.0)
and, when the call is unimplemented, logs "CRI implementation should be updated to support
RuntimeConfig" and uses the driver from its own configuration; it also raises the
kubelet_cri_losing_support{version="1.38.0"} metric: kubelet 1.38 will need containerd 2.
The CNI plugins and configuration are read from /opt/cni/bin and /etc/cni/net.d, which are the
node's own in its mount namespace; the sandbox ("pause") image is the one overlayd.lab.images builds.
"""
from __future__ import annotations

import dataclasses
import os
import time

from . import procs
from .netns import LabError
from .node_host import NodeHost

DISABLED_PLUGINS = ("io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing")


@dataclasses.dataclass(frozen=True)
class ContainerdSettings:
    root: str           # content store, snapshots (the node's /var/lib/containerd)
    state: str          # sockets, shim state (the node's /run/containerd)
    socket: str         # the gRPC (CRI) socket, reachable from this mount namespace too
    sandbox_image: str
    opt_dir: str


def settings_for(host: NodeHost, sandbox_image: str) -> ContainerdSettings:
    return ContainerdSettings(root="/var/lib/containerd", state="/run/containerd",
                              socket=os.path.join(host.workdir, "containerd.sock"),
                              sandbox_image=sandbox_image, opt_dir=os.path.join(host.workdir, "containerd-opt"))


def config_toml(s: ContainerdSettings) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    disabled = ", ".join(f'"{p}"' for p in DISABLED_PLUGINS)
    return f"""version = 2
root = "{s.root}"
state = "{s.state}"
disabled_plugins = [{disabled}]

[grpc]
  address = "{s.socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{s.opt_dir}"

[{cri}]
  sandbox_image = "{s.sandbox_image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  max_container_log_line_size = 16384

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "/opt/cni/bin"
  conf_dir = "/etc/cni/net.d"
"""


def start(host: NodeHost, s: ContainerdSettings, wait: float = 30) -> procs.Proc:
    conf = os.path.join(host.workdir, "containerd.toml")
    with open(conf, "w") as f:
        f.write(config_toml(s))
    log = os.path.join(host.workdir, "containerd.log")
    proc = procs.start(f"containerd {host.name}", [*host.enter(), "containerd", f"--config={conf}"], log)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if not proc.alive():
            raise LabError(f"containerd on {host.name} exited; its log:\n{procs.tail(log)}")
        if os.path.exists(s.socket) and ctr(host, s, "version", check=False).returncode == 0:
            return proc
        time.sleep(0.1)
    proc.stop()
    raise LabError(f"containerd on {host.name} did not answer on {s.socket} within {wait:.0f}s:\n{procs.tail(log)}")


def ctr(host: NodeHost, s: ContainerdSettings, *args: str, check: bool = True, timeout: float = 300):
    """ctr against the node's containerd, in the k8s.io namespace (the CRI plugin's)."""
    return host.run("ctr", f"--address={s.socket}", "--namespace=k8s.io", *args, check=check, timeout=timeout)


def import_image(host: NodeHost, s: ContainerdSettings, archive: str) -> None:
    ctr(host, s, "images", "import", archive)
