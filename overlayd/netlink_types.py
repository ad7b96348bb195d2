"""The plain values the netlink module takes and returns (no netlink here)."""
from __future__ import annotations

import dataclasses
from typing import Optional

from .errors import DatapathError


@dataclasses.dataclass(frozen=True)
class VxlanSpec:
    name: str
    vni: int
    port: int
    local_ip: str
    underlay_index: int
    mtu: int
    mac: Optional[str] = None
    learning: bool = False
    gbp: bool = False


@dataclasses.dataclass(frozen=True)
class LinkInfo:
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

    def matches(self, spec: VxlanSpec) -> bool:
        """True if this existing device can be adopted for spec (MTU and MAC are fixed in place)."""
        return (self.kind == "vxlan" and self.vxlan_id == spec.vni and self.vxlan_port == spec.port
                and self.vxlan_local == spec.local_ip and self.vxlan_link == spec.underlay_index
                and bool(self.vxlan_learning) == spec.learning and self.vxlan_gbp == spec.gbp)


@dataclasses.dataclass(frozen=True)
class Address:
    index: int
    ip: str
    prefixlen: int


@dataclasses.dataclass(frozen=True)
class LinkEvent:
    """Something about links or addresses changed: kind is link-new/link-del/addr-new/addr-del."""
    kind: str
    index: int
    name: Optional[str] = None


@dataclasses.dataclass
class ApplyResult:
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    errors: list[DatapathError] = dataclasses.field(default_factory=list)

    def count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
