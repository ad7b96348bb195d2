"""A multi-node cluster on one machine: an underlay switch, nodes, pods, a real etcd.

    switch netns  <name>-sw : bridge br0 192.0.2.254/24, etcd on 192.0.2.254:2379
    node netns    <name>-nI : eth0 192.0.2.I/24 (default via .254), overlayd, cni0 + pods
    pod netns     <name>-nIpJ: eth0 from the CNI plugin (bridge + host-local)

Kube mode (`Lab(kube=True)`, `overlayd lab up --kube`) runs a real control plane in the switch
namespace (overlayd.lab.control_plane): etcd, kube-apiserver on https://192.0.2.254:6443 and
kube-controller-manager with node IPAM. The lab registers a Node per node as a kubelet would
(name, InternalIP), waits for the podCIDR the controller-manager gives it, writes net-conf.json
into the node's work directory and starts each daemon with --kube-subnet-mgr, NODE_NAME=nI and a
kubeconfig holding a token of the ServiceAccount manifests/overlayd.yaml defines, as the DaemonSet
does. The lab reaches the API server through a relay on 127.0.0.1, so nothing is added to the
root namespace.

Every node has its own subnet file, CNI data and host-local directories under one work
directory, so the nodes share this machine's filesystem without sharing state.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Callable, Optional

from cni_plugin.invoke import run_plugin
from cni_plugin.launcher import write as write_launcher

from ..subnet_file import read_subnet_file as read_env
from . import checks, kube_nodes, kubelet_node, state
from . import control_plane as cplane
from . import flanneld
from .cleanup import Cleanup
from .etcd import EtcdServer, start_etcd
from .kube_client import HttpsApiClient
from .layout import (DEFAULT_NET_CONF, DUAL_STACK_NET_CONF, ETCD_PREFIX, HEALTHZ_PORT, KUBE_API_PORT,  # noqa: F401
                     REFERENCE_PLUGIN_DIR, REFERENCE_PLUGINS, STATE_DIR, SWITCH_IP, SWITCH_IP6, UNDERLAY,
                     UNDERLAY6, Node, Pod, _index, bin_dir, list_labs)
from .state import Detached as _Detached
from .netns import LabError, add_netns, add_veth, delete_netns, ip, netns_exists, sysctl, unique_token
from .procs import tail

class Lab:
    def __init__(self, name: Optional[str] = None, *, net_conf: Optional[dict] = None,
                 log: Callable[[str], None] = lambda msg: None, daemon_args: tuple = (),
                 dual_stack: bool = False, kube: bool = False, flanneld_nodes: tuple = (),
                 prometheus: bool = False, control_plane_options: Optional[dict] = None,
                 kubelet: bool = False):
        self.name = name or f"ovl{unique_token()}"
        self.want_prometheus = prometheus
        self.dual_stack = dual_stack
        # kubelet: real nodes (overlayd.lab.kubelet_node): kubelet + containerd per node, overlayd
        # from manifests/overlayd.yaml; implies kube, and the node lifecycle controller runs.
        self.kubelet = kubelet
        self.kube = kube or kubelet
        self.kubelet_nodes: Optional[kubelet_node.KubeletNodes] = None
        # Extra ControlPlaneSettings fields (e.g. apiserver_args, node_lifecycle), as plain data.
        self.control_plane_options = dict(control_plane_options or {})
        if kubelet:
            self.control_plane_options.setdefault("node_lifecycle", True)
        self.sa_namespace, self.sa_name = "", ""
        self.net_conf = net_conf or (DUAL_STACK_NET_CONF if dual_stack else DEFAULT_NET_CONF)
        self.log = log
        self.daemon_args = list(daemon_args)
        self.flanneld_nodes = tuple(flanneld_nodes)     # node names ("n2") that run the real flanneld
        self.cleanup = Cleanup()
        self.workdir = ""
        self.switch = f"{self.name}-sw"
        self.etcd: Optional[EtcdServer] = None
        self.kube_api: Optional[cplane.ControlPlane] = None
        self.prometheus = None            # overlayd.lab.prometheus.PrometheusServer with prometheus=True
        self.nodes: list[Node] = []
        self.pods: list[Pod] = []

    # -- bring-up -------------------------------------------------------------------------------
    def up(self, nodes: int = 3, pods_per_node: int = 2, *, wait: float = 60) -> "Lab":
        if not 1 <= nodes <= 200:
            raise LabError(f"--nodes {nodes}: choose 1 to 200")
        try:
            self._make_underlay()
            if self.kubelet:
                kubelet_node.up(self, nodes)
                self.save_state()
                return self
            for i in range(1, nodes + 1):
                self.add_node(i)
            for node in self.nodes:
                self.start_daemon(node)
            for node in self.nodes:
                self.wait_for_subnet_file(node, wait)
            for node in self.nodes:
                for j in range(1, pods_per_node + 1):
                    self.add_pod(node, j)
            if self.want_prometheus:
                self.start_prometheus()
            self.save_state()
            return self
        except BaseException:
            self.down()
            raise

    @property
    def plugin(self) -> str:
        return os.path.join(self.workdir, "bin", "overlay")

    @property
    def cni_bin_dir(self) -> str:
        """The lab's /opt/cni/bin: `overlay` (+ overlay.d) and links to the reference plugins."""
        return os.path.dirname(self.plugin)

    def _make_underlay(self) -> None:
        self.workdir = tempfile.mkdtemp(prefix=f"overlayd-lab-{self.name}-")
        self.cleanup.push(f"workdir {self.workdir}", lambda: shutil.rmtree(self.workdir, ignore_errors=True))
        write_launcher(os.path.dirname(self.plugin))   # the fast `overlay` executable (cni_plugin.launcher)
        for name in REFERENCE_PLUGINS:                  # one bin dir per lab, like a node's /opt/cni/bin
            os.symlink(os.path.join(REFERENCE_PLUGIN_DIR, name), os.path.join(self.cni_bin_dir, name))
        self.log(f"underlay switch {self.switch} ({UNDERLAY})")
        add_netns(self.switch, self.cleanup)
        ip("link", "add", "br0", "type", "bridge", netns=self.switch)
        ip("addr", "add", f"{SWITCH_IP}/{UNDERLAY.prefixlen}", "dev", "br0", netns=self.switch)
        if self.dual_stack:
            ip("addr", "add", f"{SWITCH_IP6}/{UNDERLAY6.prefixlen}", "dev", "br0", "nodad", netns=self.switch)
        ip("link", "set", "br0", "up", netns=self.switch)
        if self.kube:
            self.kube_api = self._start_control_plane()
            return
        self.etcd = start_etcd(self.cleanup, host=SWITCH_IP, netns=self.switch, port=2379)
        self.log(f"etcd {self.etcd.endpoint} (in {self.switch})")
        self.etcd.etcdctl("put", f"{ETCD_PREFIX}/config", json.dumps(self.net_conf))

    # -- kube mode (overlayd.lab.kube_nodes) -----------------------------------------------------
    def control_plane_settings(self) -> cplane.ControlPlaneSettings:
        return kube_nodes.control_plane_settings(self)

    def _start_control_plane(self) -> cplane.ControlPlane:
        return kube_nodes.start_control_plane(self)

    def wait_pod_cidrs(self, node: Node, wait: float = 60) -> list[str]:
        return kube_nodes.wait_pod_cidrs(self, node, wait)

    def _add_node_object(self, node: Node, i: int, pod_cidr: bool) -> None:
        kube_nodes.add_node_object(self, node, pod_cidr)

    @property
    def api(self) -> HttpsApiClient:
        """The admin's client (system:masters), what kubectl does."""
        if self.kube_api is None:
            raise LabError(f"lab {self.name} runs etcd, not the Kubernetes API (bring it up with kube=True / --kube)")
        return self.kube_api.client

    def kubectl(self, *args: str, **kw):
        """kubectl with the lab's admin kubeconfig."""
        if self.kube_api is None:
            raise LabError(f"lab {self.name} runs etcd, not the Kubernetes API (bring it up with kube=True / --kube)")
        return self.kube_api.kubectl(*args, **kw)

    def stop_controller_manager(self) -> None:
        """Stop kube-controller-manager (its node IPAM stops giving podCIDRs)."""
        cplane.stop_controller_manager(self.kube_api)

    def start_controller_manager(self) -> None:
        cplane.start_controller_manager(self.kube_api, self.control_plane_settings())
        self.save_state()

    def add_node(self, i: int, *, pod_cidr: bool = True, register: bool = True) -> Node:
        """A node namespace on the underlay; in kube mode also its Node object, registered as a
        kubelet does, and (unless pod_cidr=False) the podCIDR the controller-manager gives it."""
        node = Node(name=f"n{i}", netns=f"{self.name}-n{i}", underlay_ip=str(UNDERLAY.network_address + i),
                    workdir=os.path.join(self.workdir, f"n{i}"),
                    daemon="flanneld" if f"n{i}" in self.flanneld_nodes else "overlayd")
        os.makedirs(node.workdir)
        os.makedirs(node.cni_conf_dir)
        with open(os.path.join(node.cni_conf_dir, "10-overlay.conflist"), "w") as f:
            json.dump(node.conflist(), f, indent=1)
        self._plug(node, i)
        self.nodes.append(node)
        if register:                  # register=False: the node's kubelet registers it (--kubelet)
            self._add_node_object(node, i, pod_cidr)
        return node

    def _plug(self, node: Node, i: int) -> None:
        """The node's namespace, its veth into the switch, its underlay address and default route."""
        self.log(f"node {node.name}: netns {node.netns}, underlay {node.underlay_ip}")
        add_netns(node.netns, self.cleanup)
        add_veth(f"{self.name[-6:]}n{i}", self.switch, "eth0", node.netns, self.cleanup)
        ip("link", "set", f"{self.name[-6:]}n{i}", "master", "br0", "up", netns=self.switch)
        ip("addr", "add", f"{node.underlay_ip}/{UNDERLAY.prefixlen}", "dev", "eth0", netns=node.netns)
        ip("link", "set", "eth0", "up", netns=node.netns)
        ip("route", "add", "default", "via", SWITCH_IP, netns=node.netns)
        sysctl(node.netns, "net.ipv4.ip_forward", "1")
        if self.dual_stack:
            node.underlay_ip6 = str(UNDERLAY6.network_address + i)
            ip("addr", "add", f"{node.underlay_ip6}/{UNDERLAY6.prefixlen}", "dev", "eth0", "nodad", netns=node.netns)
            ip("-6", "route", "add", "default", "via", SWITCH_IP6, netns=node.netns)
            sysctl(node.netns, "net.ipv6.conf.all.forwarding", "1")

    def replug_node(self, node: Node) -> None:
        """A node whose namespace went away (overlayd.lab.chaos.reboot_node) back on its old address."""
        i = _index(node)
        deadline = time.monotonic() + 10      # the kernel frees a deleted namespace's veths lazily
        while ip("link", "show", f"{self.name[-6:]}n{i}", netns=self.switch, check=False).returncode == 0:
            if time.monotonic() > deadline:
                raise LabError(f"the switch's end of {node.name}'s old veth is still there after 10 s")
            time.sleep(0.05)
        self._plug(node, i)

    def restart_etcd(self, down_for: float = 0.0) -> None:
        """Stop etcd and start it again on the same address and data (an etcd hiccup)."""
        self.etcd.stop()
        time.sleep(down_for)
        self.etcd.start()

    # -- daemons --------------------------------------------------------------------------------
    def daemon_command(self, node: Node) -> list[str]:
        if node.daemon == "flanneld":
            return self._flanneld_command(node)
        if self.kube:
            store = ["--kube-subnet-mgr", f"--kubeconfig-file={node.kubeconfig}",
                     f"--net-config-path={node.net_conf_file}"]
        else:
            store = [f"--etcd-endpoints={self.etcd.endpoint}", f"--etcd-prefix={ETCD_PREFIX}"]
        return [os.path.join(bin_dir(), "overlayd"), *store, f"--subnet-file={node.subnet_file}",
                f"--cni-socket={node.cni_socket}", f"--cni-data-dir={node.cni_data_dir}",
                f"--healthz-port={HEALTHZ_PORT}", *self.daemon_args, *node.extra_args]

    def _flanneld_command(self, node: Node) -> list[str]:
        binary = flanneld.binary()
        if binary is None:
            raise LabError(flanneld.missing_reason())
        if self.kube:
            kubeconfig = getattr(node, "kubeconfig", None)     # the real control plane's ServiceAccount kubeconfig
            if not kubeconfig:
                raise LabError("flanneld in kube mode needs the lab's real kube-apiserver and a node kubeconfig "
                               "(overlayd.lab.control_plane); the API emulator is not enough")
            return flanneld.command(binary, underlay_ip=node.underlay_ip, subnet_file=node.subnet_file,
                                    kubeconfig=kubeconfig, net_conf_file=node.net_conf_file,
                                    extra=tuple(node.extra_args))
        return flanneld.command(binary, underlay_ip=node.underlay_ip, subnet_file=node.subnet_file,
                                etcd_endpoint=self.etcd.endpoint, etcd_prefix=ETCD_PREFIX, extra=tuple(node.extra_args))

    def set_daemon(self, node: Node, daemon: str) -> None:
        """Which daemon start_daemon() runs on the node next ("overlayd" or "flanneld"), for in-place migration."""
        if daemon not in ("overlayd", "flanneld"):
            raise LabError(f"daemon {daemon!r}: choose overlayd or flanneld")
        node.daemon = daemon

    def daemon_env(self, node: Node) -> dict:
        """The daemon's environment: in kube mode NODE_NAME, as the DaemonSet's downward API sets it."""
        env = dict(os.environ)
        if self.kube:
            env["NODE_NAME"] = node.name
        return env

    def start_daemon(self, node: Node) -> None:
        with open(node.log_file, "a") as log:
            proc = subprocess.Popen(["ip", "netns", "exec", node.netns, *self.daemon_command(node)],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=self.daemon_env(node), start_new_session=True)
        node.pid = proc.pid
        self._procs = getattr(self, "_procs", {})
        self._procs[proc.pid] = proc
        self.cleanup.push(f"{node.daemon} pid {proc.pid}", lambda pid=proc.pid: self._stop_pid(pid))
        self.log(f"node {node.name}: {node.daemon} pid {proc.pid}")

    def _stop_pid(self, pid: int, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        proc = getattr(self, "_procs", {}).pop(pid, None)
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None:
                if proc.poll() is not None:
                    return
            elif not os.path.exists(f"/proc/{pid}"):
                return
            time.sleep(0.05)
        try:
            os.kill(pid, signal.SIGUSR1)     # overlayd writes its threads' stacks to its log
            time.sleep(0.5)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if proc is not None:
            proc.wait(5)

    def stop_daemon(self, node: Node, sig: int = signal.SIGTERM) -> None:
        if node.pid is not None:
            self._stop_pid(node.pid, sig)
            node.pid = None

    def daemon_alive(self, node: Node) -> bool:
        proc = getattr(self, "_procs", {}).get(node.pid)
        if proc is not None:
            return proc.poll() is None
        return node.pid is not None and os.path.exists(f"/proc/{node.pid}")

    def wait_for_subnet_file(self, node: Node, wait: float = 60) -> dict:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            values = read_env(node.subnet_file)
            if values.get("FLANNEL_SUBNET"):
                return values
            if not self.daemon_alive(node):
                raise LabError(f"{node.daemon} on {node.name} exited; its log:\n{tail(node.log_file)}")
            time.sleep(0.1)
        raise LabError(f"{node.daemon} on {node.name} wrote no {node.subnet_file} within {wait:.0f}s; "
                       f"its log:\n{tail(node.log_file)}")

    def start_prometheus(self) -> None:
        """A real Prometheus in the switch namespace, scraping every node (overlayd.lab.prometheus)."""
        from . import prometheus
        self.prometheus = prometheus.start(self.switch, self.workdir,
                                           [(n.name, f"{n.underlay_ip}:{HEALTHZ_PORT}") for n in self.nodes],
                                           self.cleanup)
        self.log(f"Prometheus {prometheus.LISTEN} in {self.switch}, scraping {len(self.nodes)} nodes "
                 f"(from this namespace: {self.prometheus.socket})")

    # -- pods -----------------------------------------------------------------------------------
    def cni(self, node: Node, command: str, pod: Pod, netconf: Optional[dict] = None) -> dict:
        """Run the `overlay` plugin in the node's namespace exactly as a container runtime does."""
        rc, out, err = run_plugin(self.plugin, command, netconf or node.netconf(), pod.container_id,
                                  f"/var/run/netns/{pod.netns}", "eth0", [self.cni_bin_dir],
                                  run_in_netns=node.netns)
        doc = out if isinstance(out, dict) else {}
        if rc != 0:
            raise LabError(f"CNI {command} for {pod.name} on {node.name} failed ({rc}): "
                           f"{doc.get('msg') or out} {doc.get('details', '')} {err.strip()}")
        return doc

    def add_pod(self, node: Node, j: int) -> Pod:
        pod = Pod(name=f"{node.name}p{j}", node=node.name, netns=f"{node.netns}p{j}",
                  container_id=f"{self.name}-{node.name}-p{j}")
        add_netns(pod.netns, self.cleanup)
        result = self.cni(node, "ADD", pod)
        ips = result.get("ips") or []
        if not ips:
            raise LabError(f"CNI ADD for {pod.name} returned no IP: {result}")
        for entry in ips:
            addr = entry["address"].split("/")[0]
            if ":" in addr:
                pod.ip6 = pod.ip6 or addr
            else:
                pod.ip = pod.ip or addr
        self.pods.append(pod)
        self.log(f"pod {pod.name} on {node.name}: {pod.ip}" + (f", {pod.ip6}" if pod.ip6 else ""))
        return pod

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    # -- checks (overlayd.lab.checks) ------------------------------------------------------------
    def subnets(self) -> dict[str, str]:
        return {n.name: read_env(n.subnet_file).get("FLANNEL_SUBNET", "") for n in self.nodes}

    def routes_converged(self) -> bool:
        return checks.routes_converged(self)

    def wait_converged(self, wait: float = 30) -> bool:
        return checks.wait_converged(self, wait)

    def ping(self, src: Pod, dst_ip: str, count: int = 1, timeout: float = 2) -> bool:
        return checks.ping(src, dst_ip, count, timeout)

    def check(self, *, wait: float = 30, retries: int = 3) -> dict:
        return checks.check(self, wait=wait, retries=retries)

    def status(self) -> dict:
        return {
            "lab": self.name, "workdir": self.workdir, "switch": self.switch,
            "etcd": self.etcd.endpoint if self.etcd else None,
            "prometheus": ({"socket": self.prometheus.socket, "log": self.prometheus.log_file}
                           if self.prometheus else None),
            "kube_api": ({"url": self.kube_api.url, "local_url": self.kube_api.local_url,
                          "kubeconfig": self.kube_api.kubeconfig, "version": self.kube_api.version,
                          "socket": os.path.join(self.workdir, "kube-apiserver.sock"), "log": self.kube_api.log}
                         if self.kube_api else None),
            "nodes": [{"name": n.name, "netns": n.netns, "underlay_ip": n.underlay_ip, "kubeconfig": n.kubeconfig,
                       "subnet": read_env(n.subnet_file).get("FLANNEL_SUBNET"),
                       "daemon_pid": n.pid, "daemon_alive": self.daemon_alive(n),
                       "log": n.log_file} for n in self.nodes],
            "pods": [{**dataclasses.asdict(p), "ips": [a for a in (p.ip, p.ip6) if a]} for p in self.pods],
            **(kubelet_node.status(self.kubelet_nodes) if self.kubelet_nodes else {}),
        }

    # -- state, for `lab up` then `lab check`/`lab down` in other processes (overlayd.lab.state) --
    def save_state(self) -> None:
        state.save(self)

    @classmethod
    def load(cls, name: Optional[str] = None, log: Callable[[str], None] = lambda m: None) -> "Lab":
        return state.load(cls, name, log)

    def down(self) -> list[str]:
        """Remove everything: daemons (SIGTERM), namespaces, etcd, files. Safe to call twice."""
        for node in self.nodes:       # signal every daemon first, so they stop in parallel
            if node.pid is not None:
                try:
                    os.kill(node.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for node in self.nodes:
            if node.pid is not None:
                self._stop_pid(node.pid)
                node.pid = None
        if self.kubelet_nodes is not None:     # before the namespaces go: kubelets, containers, mounts
            self.kubelet_nodes.stop()
        failed = self.cleanup.run()
        if self.kube_api is not None:          # also when loaded from the state file
            self.kube_api.stop()
            if self.kube_api.etcd_data_dir:
                shutil.rmtree(self.kube_api.etcd_data_dir, ignore_errors=True)
        if self.etcd is not None and isinstance(self.etcd.proc, _Detached):
            self.etcd.stop()
        # A lab loaded from its state file has no in-process cleanup registry: remove by name.
        for ns in [p.netns for p in self.pods] + [n.netns for n in self.nodes] + [self.switch]:
            if netns_exists(ns):
                delete_netns(ns)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self.etcd is not None and self.etcd.data_dir:
            shutil.rmtree(self.etcd.data_dir, ignore_errors=True)
        try:
            os.unlink(os.path.join(STATE_DIR, f"{self.name}.json"))
        except FileNotFoundError:
            pass
        return failed


