"""What a kube-mode lab does around its real control plane (overlayd.lab.control_plane): start it,
register each Node as a kubelet would, wait for the controller-manager's podCIDRs, and give each
node's overlayd a kubeconfig of the manifest's ServiceAccount. `self` is the Lab."""
from __future__ import annotations

import ipaddress
import json
import os
import time

from . import control_plane as cplane
from . import kube_bins
from .etcd import start_etcd
from .layout import KUBE_API_PORT, SWITCH_IP, Node, registered_node
from .netns import LabError
from .procs import tail


def control_plane_settings(self) -> cplane.ControlPlaneSettings:
    """The control plane a kube lab (`self`) runs: net-conf's networks for node IPAM."""
    conf = self.net_conf
    cidrs, v4, v6 = [], None, None
    if conf.get("EnableIPv4", True) and conf.get("Network"):
        net = ipaddress.ip_network(conf["Network"])
        cidrs.append(str(net))
        v4 = conf.get("SubnetLen") or (24 if net.prefixlen <= 22 else net.prefixlen + 2)
    if conf.get("EnableIPv6") and conf.get("IPv6Network"):
        cidrs.append(conf["IPv6Network"])
        v6 = conf.get("IPv6SubnetLen") or 64
    return cplane.ControlPlaneSettings(workdir=self.workdir, netns=self.switch, host=SWITCH_IP,
                                       cluster_cidrs=tuple(cidrs), node_mask_v4=v4, node_mask_v6=v6,
                                       port=KUBE_API_PORT, **self.control_plane_options)


def start_control_plane(self) -> cplane.ControlPlane:
    settings = control_plane_settings(self)
    etcd = start_etcd(self.cleanup, host=SWITCH_IP, netns=self.switch, port=settings.etcd_port,
                      binary=kube_bins.etcd_binary(log=self.log))
    self.log(f"etcd {etcd.endpoint} for kube-apiserver (in {self.switch})")
    cp = cplane.start(settings, log=self.log)
    self.cleanup.push("control plane", cp.stop)
    # etcd is the control plane's too: `lab down` from another process stops it by its record.
    cp.procs.insert(0, cplane.procs.record("etcd", etcd.proc.pid, etcd.log_path))
    cp.etcd_data_dir = etcd.data_dir
    self.kube_api = cp
    cplane.apply_rbac(cp, settings.manifest)
    self.sa_namespace, self.sa_name = cplane.service_account(settings.manifest)
    self.log(f"applied {settings.manifest}'s RBAC; nodes run as "
             f"system:serviceaccount:{self.sa_namespace}:{self.sa_name}")
    self.log(f"kubectl --kubeconfig {cp.kubeconfig} get nodes")
    return cp


def wait_pod_cidrs(self, node: Node, wait: float = 60) -> list[str]:
    """The podCIDRs the controller-manager's node IPAM gave the node."""
    deadline = time.monotonic() + wait
    while True:
        cidrs = self.api.node(node.name).get("spec", {}).get("podCIDRs") or []
        if cidrs:
            return cidrs
        if time.monotonic() > deadline:
            raise LabError(f"Node {node.name} got no podCIDR within {wait:.0f}s; "
                           f"kube-controller-manager's log:\n{tail(os.path.join(self.workdir, 'kube-controller-manager.log'))}")
        time.sleep(0.1)


def add_node_object(self, node: Node, pod_cidr: bool) -> None:
    """net-conf.json, the Node as a kubelet registers it, its podCIDR, and its ServiceAccount kubeconfig."""
    if self.kube:
        with open(node.net_conf_file, "w") as f:
            json.dump(self.net_conf, f)
        self.api.create_node(registered_node(node))
        cidrs = wait_pod_cidrs(self, node) if pod_cidr else []
        self.log(f"node {node.name}: Node object, spec.podCIDRs {cidrs or 'none yet'}")
        node.kubeconfig = cplane.write_kubeconfig(
            os.path.join(node.workdir, "kubeconfig"), self.kube_api.url, self.kube_api.pki.ca_cert,
            token=cplane.token(self.kube_api, self.sa_namespace, self.sa_name), user=self.sa_name)
