"""What doctor gathered on a node, as plain data: the checks (overlayd.doctor.checks_*) read only this.

Every field says where it came from (`*_source`), so a finding can quote its evidence. A part
that could not be read carries the error text instead of a value.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from subnet_lease.config import NetConfig
from subnet_lease.lease import Lease

from ..entries import Entries


@dataclasses.dataclass(frozen=True)
class DoctorSettings:
    """The daemon's settings doctor compares against (it takes the daemon's own flags)."""
    node: str
    subnet_file: str = "/run/flannel/subnet.env"
    ip_masq: bool = False
    cni_socket: str = "/run/flannel/cni.sock"
    health_url: Optional[str] = None          # http://127.0.0.1:8471, None when --healthz-port is 0
    tx_checksum_off: bool = False
    kube: bool = False
    renew_margin: float = 3600.0              # seconds (--subnet-lease-renew-margin)
    cni_conf_dir: str = "/etc/cni/net.d"
    cni_bin_dirs: tuple[str, ...] = ("/opt/cni/bin",)
    probe_timeout: float = 2.0


@dataclasses.dataclass(frozen=True)
class StoreFacts:
    source: str                               # "etcd http://192.0.2.254:2379 prefix /coreos.com/network"
    error: Optional[str] = None               # the store could not be read
    config: Optional[NetConfig] = None
    config_error: Optional[str] = None
    leases: tuple[Lease, ...] = ()
    own: Optional[Lease] = None
    own_by: str = ""                          # how the own lease was recognised (public ip / node name)
    elapsed: float = 0.0


@dataclasses.dataclass(frozen=True)
class Link:
    """A link as netlink dumped it (overlayd.netlink.LinkInfo's fields), without importing netlink."""
    index: int
    name: str
    mac: Optional[str]
    mtu: int
    kind: Optional[str]
    up: bool
    vxlan_id: Optional[int] = None
    vxlan_port: Optional[int] = None
    vxlan_local: Optional[str] = None
    vxlan_link: Optional[int] = None
    vxlan_learning: Optional[bool] = None
    vxlan_gbp: bool = False


@dataclasses.dataclass(frozen=True)
class UnderlayFacts:
    name: str
    index: int
    ip: str
    mtu: int
    network: str


@dataclasses.dataclass(frozen=True)
class Port:
    name: str
    mtu: int


@dataclasses.dataclass(frozen=True)
class KernelFacts:
    underlay: Optional[UnderlayFacts] = None
    underlay_error: Optional[str] = None
    device_name: str = "flannel.1"
    device: Optional[Link] = None
    device_addresses: tuple[str, ...] = ()
    tx_checksum: Optional[bool] = None
    entries: Optional[Entries] = None         # what netlink dumps on the device (+ our routes)
    bridge: Optional[Link] = None         # cni0
    bridge_ports: tuple[Port, ...] = ()       # the pods' host-side veths
    sysctls: dict = dataclasses.field(default_factory=dict)    # key -> value, None if absent
    nat_rules: Optional[str] = None           # iptables-save -t nat
    error: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class ConfFile:
    name: str
    text: Optional[str] = None
    error: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Binary:
    name: str
    path: Optional[str]                       # where it was found, None if nowhere
    mode: Optional[int] = None                # st_mode of the file the path resolves to
    error: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class CniFacts:
    conf_dir: str
    files: tuple[ConfFile, ...] = ()          # every *.conf, *.conflist, *.json, sorted by name
    conf_dir_error: Optional[str] = None
    bin_dirs: tuple[str, ...] = ()
    binaries: tuple[Binary, ...] = ()         # the ones the active config needs
    socket_path: str = ""
    socket_kind: Optional[str] = None         # "socket", "missing", "not a socket"
    socket_error: Optional[str] = None        # connect() failed


@dataclasses.dataclass(frozen=True)
class HealthFacts:
    url: Optional[str]
    healthz: Optional[tuple[int, str]] = None
    readyz: Optional[tuple[int, str]] = None
    metrics: Optional[str] = None
    error: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Probe:
    peer: str                                 # the peer lease's key
    public_ip: str
    vtep_ip: str
    replied: bool
    rtt: Optional[float] = None
    error: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class NodeFacts:
    settings: DoctorSettings
    store: StoreFacts
    subnet_env: Optional[dict]                # None: the file does not exist
    kernel: KernelFacts
    cni: CniFacts
    health: HealthFacts
    probes: tuple[Probe, ...] = ()
    probe_note: str = ""                      # why no probe ran
