"""Real Kubernetes nodes for the lab (`overlayd lab up --kubelet`): per node a private mount
namespace (overlayd.lab.node_host), containerd with the lab's images imported, kubelet and
kube-proxy; for the cluster kube-scheduler; then `kubectl apply -f manifests/overlayd.yaml`.

The lab's underlay, node network namespaces and control plane (kube-apiserver, node IPAM in
kube-controller-manager) come from overlayd.lab.cluster; this module adds what turns a node
namespace into a node. Its state is plain data (KubeletNodes) saved in the lab's state file.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import time
from typing import Callable, Optional

from . import containerd, images, kube_bins, kubelet, kube_proxy, node_host, procs
from .netns import LabError, run

NODE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kubectl", "kubelet", "kube-scheduler", "kube-proxy")
DAEMONSET = ("kube-overlayd", "overlayd")


@dataclasses.dataclass
class KubeletNode:
    host: node_host.NodeHost
    node_ip: str
    runtime_socket: str
    procs: list = dataclasses.field(default_factory=list)      # [procs.Proc]: containerd, kubelet, kube-proxy

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "KubeletNode":
        return cls(host=node_host.NodeHost(**d["host"]), node_ip=d["node_ip"], runtime_socket=d["runtime_socket"],
                   procs=[procs.Proc(**p) for p in d.get("procs", [])])


@dataclasses.dataclass
class KubeletNodes:
    nodes: list = dataclasses.field(default_factory=list)       # [KubeletNode]
    scheduler: Optional[procs.Proc] = None
    images: dict = dataclasses.field(default_factory=dict)      # role -> image name
    kubectl: str = ""

    def to_dict(self) -> dict:
        return {"nodes": [n.to_dict() for n in self.nodes],
                "scheduler": dataclasses.asdict(self.scheduler) if self.scheduler else None,
                "images": dict(self.images), "kubectl": self.kubectl}

    @classmethod
    def from_dict(cls, d: dict) -> "KubeletNodes":
        return cls(nodes=[KubeletNode.from_dict(n) for n in d.get("nodes", [])],
                   scheduler=procs.Proc(**d["scheduler"]) if d.get("scheduler") else None,
                   images=dict(d.get("images") or {}), kubectl=d.get("kubectl", ""))

    def node(self, name: str) -> KubeletNode:
        return next(n for n in self.nodes if n.host.name == name)

    def stop(self) -> list[str]:
        """Every node at once: kubelet and kube-proxy first (nothing restarts containers), then
        containerd, then what is left in the node's cgroup root and network namespace (shims,
        containers), then its mount namespace. Nothing here needs a graceful stop: short timeouts."""
        if not self.nodes:
            left: list[str] = []
        else:
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
                left = [x for part in pool.map(_stop_node, self.nodes) for x in part]
        if self.scheduler:
            self.scheduler.stop()
            self.scheduler = None
        return left


def _stop_node(n: KubeletNode) -> list[str]:
    for p in reversed(n.procs):
        if not p.name.startswith("containerd"):
            p.stop(timeout=3)
    for p in n.procs:
        p.stop(timeout=5)
    n.procs = []
    # the containerd shims (and hostNetwork containers) live in the node's network namespace
    try:
        node_mnt = os.readlink(f"/proc/{n.host.holder_pid}/ns/mnt") if n.host.alive() else None
    except FileNotFoundError:
        node_mnt = None
    for pid in run(["ip", "netns", "pids", n.host.netns], check=False).stdout.split():
        try:
            if node_mnt and os.readlink(f"/proc/{pid}/ns/mnt") == node_mnt:
                os.kill(int(pid), 9)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
    return node_host.stop(n.host)


def ensure_binaries(log) -> str:
    return kube_bins.ensure(NODE_BINARIES, log=log)


def kubeconfig_for(cp, name: str, common_name: str, orgs=(), *, directory: str) -> str:
    from .control_plane import write_kubeconfig
    crt, key = cp.pki.issue(name, common_name, orgs=orgs)
    return write_kubeconfig(os.path.join(directory, f"{name}.kubeconfig"), cp.url, cp.pki.ca_cert,
                            cert=crt, key=key, user=common_name)


def node_kubeconfigs(cp, name: str, workdir: str) -> tuple[str, str]:
    """kubelet's (system:node:<name>, group system:nodes) and kube-proxy's kubeconfigs. Issued one
    node after the other: openssl keeps the CA's serial number in one file."""
    return (kubeconfig_for(cp, f"kubelet-{name}", f"system:node:{name}", ["system:nodes"], directory=workdir),
            kubeconfig_for(cp, f"kube-proxy-{name}", "system:kube-proxy", directory=workdir))


def start_node(node: KubeletNode, cp, *, cluster_cidrs: tuple, bins: str, imgs: dict,
               log: Callable[[str], None]) -> KubeletNode:
    """Turn a node network namespace into a Kubernetes node (on failure: the caller stops it)."""
    host, name, workdir = node.host, node.host.name, node.host.workdir
    kcfg, pcfg = os.path.join(workdir, f"kubelet-{name}.kubeconfig"), os.path.join(workdir, f"kube-proxy-{name}.kubeconfig")
    node_host.start(host)
    s = containerd.settings_for(host, imgs["pause"].name)
    node.runtime_socket = s.socket
    node.procs.append(containerd.start(host, s))
    for img in imgs.values():
        containerd.import_image(host, s, img.archive)
    log(f"node {name}: containerd {s.socket}, images {', '.join(i.name for i in imgs.values())}")
    node.procs.append(kubelet.start(kubelet.KubeletSettings(
        node_name=name, node_ip=node.node_ip, kubeconfig=kcfg, ca_cert=cp.pki.ca_cert, runtime_socket=s.socket,
        cgroup_root=host.cgroup_root, binary=os.path.join(bins, "kubelet")), host))
    node.procs.append(kube_proxy.start_proxy(kube_proxy.KubeProxySettings(
        node_name=name, kubeconfig=pcfg, cluster_cidrs=tuple(cluster_cidrs),
        binary=os.path.join(bins, "kube-proxy")), host))
    log(f"node {name}: kubelet (cgroup root {host.cgroup_root}) and kube-proxy started")
    return node


def start_scheduler(cp, workdir: str, netns: str, bins: str) -> procs.Proc:
    crt, key = cp.pki.cert("scheduler")
    from .control_plane import write_kubeconfig
    kcfg = write_kubeconfig(os.path.join(workdir, "scheduler.kubeconfig"), cp.url, cp.pki.ca_cert,
                            cert=crt, key=key, user="system:kube-scheduler")
    return kube_proxy.start_scheduler(os.path.join(bins, "kube-scheduler"), kcfg, workdir, netns)


def wait_for(what: str, check: Callable[[], bool], wait: float, why: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + wait
    while not check():
        if time.monotonic() > deadline:
            raise LabError(f"{what}: not within {wait:.0f}s. {why()}")
        time.sleep(0.5)


def nodes_ready(cp, names: list[str]) -> bool:
    out = cp.kubectl("get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=='Ready')].status}{'\\n'}{end}",
                     check=False).stdout
    ready = dict(line.split("=", 1) for line in out.split() if "=" in line)
    return all(ready.get(n) == "True" for n in names)


def install_overlayd(cp, manifest: str, names: list[str], log, wait: float = 300) -> None:
    """`kubectl apply -f manifests/overlayd.yaml`, then wait for the DaemonSet and Ready nodes."""
    log(f"kubectl apply -f {manifest}")
    cp.kubectl("apply", "-f", manifest)
    ns, ds = DAEMONSET
    cp.kubectl("-n", ns, "rollout", "status", f"daemonset/{ds}", f"--timeout={int(wait)}s", timeout=wait + 10)
    wait_for("every node Ready", lambda: nodes_ready(cp, names), wait,
             lambda: cp.kubectl("get", "nodes", "-o", "wide", check=False).stdout)
    log(f"overlayd runs on {', '.join(names)}; every node is Ready")


def build_images(log) -> dict:
    return images.all_images(log)


# -- the lab's hooks (overlayd.lab.cluster calls these for Lab(kubelet=True)) ----------------------

def up(lab, nodes: int, wait: float = 300) -> KubeletNodes:
    """After the lab's underlay and control plane: the nodes, the scheduler, overlayd's manifest."""
    from .control_plane import MANIFEST
    bins = ensure_binaries(lab.log)
    imgs = build_images(lab.log)
    kn = KubeletNodes(images={role: img.name for role, img in imgs.items()}, kubectl=os.path.join(bins, "kubectl"))
    lab.kubelet_nodes = kn
    lab.cleanup.push("kubelet nodes", kn.stop)
    kn.scheduler = start_scheduler(lab.kube_api, lab.workdir, lab.switch, bins)
    cidrs = tuple(lab.control_plane_settings().cluster_cidrs)
    for i in range(1, nodes + 1):
        net = lab.add_node(i, register=False)
        node_kubeconfigs(lab.kube_api, net.name, net.workdir)
        kn.nodes.append(KubeletNode(host=node_host.NodeHost(net.name, net.netns, net.workdir,
                                                            cgroup_root=f"/{node_host.CGROUP_BASE}/{lab.name}/{net.name}"),
                                    node_ip=net.underlay_ip, runtime_socket=""))
    lab.save_state()          # from here on `lab down` in another process finds every node
    # The nodes start side by side: most of the time goes to importing the overlayd image.
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(kn.nodes)) as pool:
        for f in [pool.submit(start_node, n, lab.kube_api, cluster_cidrs=cidrs, bins=bins, imgs=imgs, log=lab.log)
                  for n in kn.nodes]:
            f.result()
    lab.save_state()
    install_overlayd(lab.kube_api, MANIFEST, [n.host.name for n in kn.nodes], lab.log, wait)
    return kn


def status(kn: KubeletNodes) -> dict:
    """The lab status's additions: `images` (test: the preloaded test image) and `kubelet`."""
    return {"images": dict(kn.images),
            "kubelet": {"kubectl": kn.kubectl,
                        "scheduler_log": kn.scheduler.log if kn.scheduler else None,
                        "nodes": [{"name": n.host.name, "netns": n.host.netns, "enter": n.host.enter(),
                                   "cgroup_root": n.host.cgroup_root, "runtime_socket": n.runtime_socket,
                                   "logs": {p.name.split()[0]: p.log for p in n.procs},
                                   "running": {p.name.split()[0]: p.alive() for p in n.procs}}
                                  for n in kn.nodes]}}
