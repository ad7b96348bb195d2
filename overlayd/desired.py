"""Desired datapath state: a pure function of this node's lease, its peers' leases and the config."""
from __future__ import annotations

import ipaddress
import logging
from typing import Iterable, Optional

from subnet_lease.lease import Lease

from .entries import Entries, FdbEntry, NeighEntry, PeerEntries, RouteEntry

log = logging.getLogger(__name__)


def peer_entries(peer: Lease, *, direct_routing: bool = False,
                 underlay_net: Optional[ipaddress.IPv4Network] = None) -> Optional[PeerEntries]:
    """The IPv4 entries for one peer, or None if its lease cannot be programmed."""
    if peer.subnet is None or peer.public_ip is None:
        return None
    if peer.backend_type != "vxlan":
        return None
    vtep_ip = str(peer.subnet.network_address)
    dst = str(peer.subnet)
    if direct_routing and underlay_net is not None and peer.public_ip in underlay_net:
        return PeerEntries(route=RouteEntry(dst=dst, gateway=str(peer.public_ip), direct=True))
    mac = peer.vtep_mac
    if not mac:
        return None
    return PeerEntries(
        neigh=NeighEntry(ip=vtep_ip, mac=mac),
        fdb=FdbEntry(mac=mac, dst=str(peer.public_ip)),
        route=RouteEntry(dst=dst, gateway=vtep_ip),
    )


def desired_entries(own: Lease, peers: Iterable[Lease], *, direct_routing: bool = False,
                    underlay_net: Optional[ipaddress.IPv4Network] = None) -> Entries:
    """Entries for every peer lease except our own; unusable leases are skipped with a warning."""
    entries = Entries()
    for peer in peers:
        if peer.subnet == own.subnet or (own.public_ip is not None and peer.public_ip == own.public_ip):
            continue
        pe = peer_entries(peer, direct_routing=direct_routing, underlay_net=underlay_net)
        if pe is None:
            log.warning("lease %s cannot be programmed (backend %s, public ip %s, mac %s); skipped",
                        peer.key, peer.backend_type, peer.public_ip, peer.vtep_mac)
            continue
        entries.add_peer(pe)
    return entries
