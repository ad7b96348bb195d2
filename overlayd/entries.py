"""The datapath as plain data: what one peer needs in the kernel, and a plan of changes.

Nothing here talks to the kernel; overlayd.netlink turns these into netlink requests.
Addresses are strings in canonical form (ipaddress' str), MACs lower-case.
"""
from __future__ import annotations

import dataclasses
from typing import Optional


# Bytes VXLAN adds to each packet (outer IP + UDP + VXLAN + inner Ethernet), by address family:
# the device's MTU is the underlay's minus this.
OVERHEAD = {4: 50, 6: 70}


@dataclasses.dataclass(frozen=True, slots=True)
class NeighEntry:
    """Permanent ARP/NDP entry on the vxlan device: peer VTEP address -> peer VTEP MAC."""
    ip: str
    mac: str


@dataclasses.dataclass(frozen=True, slots=True)
class FdbEntry:
    """Bridge FDB entry on the vxlan device: peer VTEP MAC -> peer underlay IP."""
    mac: str
    dst: str


@dataclasses.dataclass(frozen=True, slots=True)
class RouteEntry:
    """Route to a peer's pod subnet.

    VXLAN: via the peer's VTEP address (.0), onlink, on the vxlan device.
    DirectRouting: via the peer's underlay IP on the underlay device, no encapsulation.
    """
    dst: str                 # "10.244.2.0/24"
    gateway: str
    direct: bool = False     # True: on the underlay device, not the vxlan device

    @property
    def family(self) -> int:
        return 6 if ":" in self.dst else 4


@dataclasses.dataclass(frozen=True, slots=True)
class PeerEntries:
    """Everything one peer needs, added in this order: ARP, FDB, route (route last)."""
    route: RouteEntry
    neigh: Optional[NeighEntry] = None   # None for a direct-routed peer
    fdb: Optional[FdbEntry] = None


@dataclasses.dataclass
class Entries:
    """A set of datapath entries: the desired set (from leases) or the actual one (a dump)."""
    neighs: dict[str, NeighEntry] = dataclasses.field(default_factory=dict)     # by ip
    fdbs: set[FdbEntry] = dataclasses.field(default_factory=set)
    routes: dict[str, RouteEntry] = dataclasses.field(default_factory=dict)     # by dst

    def add_peer(self, peer: PeerEntries) -> None:
        if peer.neigh is not None:
            self.neighs[peer.neigh.ip] = peer.neigh
        if peer.fdb is not None:
            self.fdbs.add(peer.fdb)
        self.routes[peer.route.dst] = peer.route

    def update(self, other: "Entries") -> None:
        """Add another set's entries (the same key: the other's wins)."""
        self.neighs.update(other.neighs)
        self.fdbs |= other.fdbs
        self.routes.update(other.routes)

    def __len__(self) -> int:
        return len(self.neighs) + len(self.fdbs) + len(self.routes)


@dataclasses.dataclass
class Plan:
    """What to change. Removals run first (route, FDB, ARP); then each peer is added ARP, FDB, route."""
    add: list[PeerEntries] = dataclasses.field(default_factory=list)
    del_routes: list[RouteEntry] = dataclasses.field(default_factory=list)
    del_fdbs: list[FdbEntry] = dataclasses.field(default_factory=list)
    del_neighs: list[NeighEntry] = dataclasses.field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.add or self.del_routes or self.del_fdbs or self.del_neighs)

    def counts(self) -> dict[str, int]:
        return {
            "add_neigh": sum(1 for p in self.add if p.neigh is not None),
            "add_fdb": sum(1 for p in self.add if p.fdb is not None),
            "add_route": len(self.add),
            "del_neigh": len(self.del_neighs),
            "del_fdb": len(self.del_fdbs),
            "del_route": len(self.del_routes),
        }
