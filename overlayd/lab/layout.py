"""The lab's layout as plain data: addresses, names, and the Node and Pod records every part of the
lab passes around (overlayd.lab.cluster composes them)."""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import sys
from typing import Optional

# Where `lab up` leaves the state that `lab status/check/down` read. OVERLAYD_LAB_STATE_DIR moves it
# (several checkouts running labs side by side each keep their own "the only lab").
STATE_DIR = os.environ.get("OVERLAYD_LAB_STATE_DIR", "/run/overlayd-lab")
UNDERLAY = ipaddress.ip_network("192.0.2.0/24")
SWITCH_IP = "192.0.2.254"
UNDERLAY6 = ipaddress.ip_network("2001:db8:1::/64")
SWITCH_IP6 = "2001:db8:1::fe"
DEFAULT_NET_CONF = {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}
DUAL_STACK_NET_CONF = {"Network": "10.244.0.0/16", "EnableIPv6": True, "IPv6Network": "fd10:244::/56",
                       "Backend": {"Type": "vxlan"}}
ETCD_PREFIX = "/coreos.com/network"
KUBE_API_PORT = 6443
HEALTHZ_PORT = 8471           # every node's /healthz, /readyz, /metrics (as in the manifests), inside its netns
# The reference plugins a node's CNI bin dir holds beside `overlay` (the DaemonSet installs the same four).
REFERENCE_PLUGINS = ("bridge", "host-local", "portmap", "loopback")
REFERENCE_PLUGIN_DIR = "/usr/lib/cni"


def bin_dir() -> str:
    """Where `overlayd` and the `overlay` CNI plugin are installed (beside this interpreter)."""
    return os.path.dirname(os.path.abspath(sys.executable))


@dataclasses.dataclass
class Pod:
    name: str
    node: str
    netns: str
    container_id: str
    ip: Optional[str] = None
    ip6: Optional[str] = None
    # Pods made by `lab pod add` (overlayd.lab.pods): a Kubernetes namespace, labels, containerPorts
    # and the pod agent serving them; the lab's own pods (n1p1, ...) have no namespace.
    namespace: Optional[str] = None
    labels: dict = dataclasses.field(default_factory=dict)
    ports: list = dataclasses.field(default_factory=list)
    agent_pid: Optional[int] = None
    agent_socket: Optional[str] = None


@dataclasses.dataclass
class Node:
    name: str
    netns: str
    underlay_ip: str
    workdir: str
    underlay_ip6: Optional[str] = None
    pid: Optional[int] = None
    extra_args: list = dataclasses.field(default_factory=list)
    daemon: str = "overlayd"       # or "flanneld" (overlayd.lab.flanneld): set_daemon() switches in place
    kubeconfig: Optional[str] = None      # kube mode: the node's ServiceAccount kubeconfig

    @property
    def subnet_file(self) -> str:
        return os.path.join(self.workdir, "subnet.env")

    @property
    def cni_data_dir(self) -> str:
        return os.path.join(self.workdir, "cni")

    @property
    def cni_socket(self) -> str:
        return os.path.join(self.workdir, "cni.sock")

    @property
    def log_file(self) -> str:
        return os.path.join(self.workdir, f"{self.daemon}.log")

    @property
    def net_conf_file(self) -> str:
        """net-conf.json in kube mode (the DaemonSet mounts it from the ConfigMap)."""
        return os.path.join(self.workdir, "net-conf.json")

    @property
    def cni_conf_dir(self) -> str:
        """The node's /etc/cni/net.d: 10-overlay.conflist, as install-cni writes it on a real node."""
        return os.path.join(self.workdir, "net.d")

    def conflist(self, network_name: str = "overlay-lab") -> dict:
        plugin = {k: v for k, v in self.netconf(network_name).items() if k not in ("cniVersion", "name")}
        return {"cniVersion": "1.0.0", "name": network_name,
                "plugins": [plugin, {"type": "portmap", "capabilities": {"portMappings": True}}]}

    def netconf(self, network_name: str = "overlay-lab") -> dict:
        return {"cniVersion": "1.0.0", "name": network_name, "type": "overlay",
                "subnetFile": self.subnet_file, "dataDir": self.cni_data_dir,
                "cniSocket": self.cni_socket,
                "ipam": {"dataDir": os.path.join(self.workdir, "ipam")},
                "delegate": {"hairpinMode": True, "isDefaultGateway": True}}


def registered_node(node: Node) -> dict:
    """A Node as a kubelet registers it: its name, hostname label and InternalIP(s)."""
    addresses = [{"type": "InternalIP", "address": node.underlay_ip}]
    if node.underlay_ip6:
        addresses.append({"type": "InternalIP", "address": node.underlay_ip6})
    addresses.append({"type": "Hostname", "address": node.name})
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node.name, "labels": {"kubernetes.io/hostname": node.name,
                                                       "kubernetes.io/os": "linux"}},
            "status": {"addresses": addresses}}


def _index(node: Node) -> int:
    """Node nI -> I (the lab names nodes n1, n2, ...)."""
    return int(node.name.lstrip("n"))


def list_labs() -> list[str]:
    try:
        return sorted(f[:-5] for f in os.listdir(STATE_DIR) if f.endswith(".json"))
    except FileNotFoundError:
        return []
