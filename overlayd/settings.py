"""The daemon's settings: one typed value, built from flags in daemon_main, passed in everywhere."""
from __future__ import annotations

import dataclasses
from typing import Optional

from cni_plugin.cache import DEFAULT_DATA_DIR
from cni_plugin.request import SOCKET_DEFAULT


@dataclasses.dataclass(frozen=True)
class DaemonSettings:
    subnet_file: str = "/run/flannel/subnet.env"
    ifaces: tuple[str, ...] = ()
    iface_regex: tuple[str, ...] = ()
    iface_can_reach: Optional[str] = None
    public_ip: Optional[str] = None
    public_ipv6: Optional[str] = None
    ip_masq: bool = False
    iptables_forward_rules: bool = True
    healthz_ip: str = "0.0.0.0"
    healthz_port: int = 0                 # 0: no health/metrics server
    resync: float = 60.0                  # seconds between full reconciles
    peer_removal_grace: float = 0.0       # seconds a vanished peer lease stays programmed; 0: remove at once
    lease_resync: float = 600.0           # seconds between full re-reads of the lease store; 0: never
    vxlan_tx_checksum_off: bool = False
    cni_socket: str = SOCKET_DEFAULT         # the CNI service (overlayd.cni_service); "" turns it off
    cni_data_dir: str = DEFAULT_DATA_DIR      # the plugin cache the service shares with the node
    network_policy: bool = False          # enforce NetworkPolicy (overlayd.policy); implies ip_masq
    network_policy_log_group: int = 0     # nflog group for denied packets (overlayd policy log); 0: off
    node_name: Optional[str] = None       # this node's Kubernetes name (--node-name / $NODE_NAME)
    kube_api_url: Optional[str] = None    # the API for the policy watcher (--kube-api-url)
    kubeconfig: Optional[str] = None      # its credentials (--kubeconfig); neither: in-cluster
    netns: Optional[str] = None           # run the datapath in this namespace (tests); None: our own
