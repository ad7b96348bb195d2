"""Desired datapath state: a pure function of this node's lease, its peers' leases and the config.

One family at a time: family 4 uses a lease's subnet / PublicIP / BackendData, family 6 its
ipv6 subnet / PublicIPv6 / BackendV6Data (flannel's dual-stack lease layout).
"""
from __future__ import annotations

import ipaddress
import logging
from typing import Iterable, Optional

from subnet_lease.lease import Lease, ip_text

from .entries import Entries, FdbEntry, NeighEntry, PeerEntries, RouteEntry

log = logging.getLogger(__name__)


def lease_fields(lease: Lease, family: int = 4):
    """(subnet, public ip, vtep mac) of a lease for one address family."""
    if family == 6:
        return lease.ipv6_subnet, lease.public_ipv6, lease.vtep_mac_v6
    return lease.subnet, lease.public_ip, lease.vtep_mac


def is_self(own: Lease, peer: Lease) -> bool:
    return (peer.key == own.key or (own.subnet is not None and peer.subnet == own.subnet)
            or (own.public_ip is not None and peer.public_ip == own.public_ip))


def peer_entries(peer: Lease, family: int = 4, *, direct_routing: bool = False,
                 underlay_net: Optional[ipaddress.IPv4Network | ipaddress.IPv6Network] = None
                 ) -> Optional[PeerEntries]:
    """The entries for one peer in one family, or None if its lease cannot be programmed."""
    subnet, public_ip, mac = lease_fields(peer, family)
    if subnet is None or public_ip is None or peer.backend_type != "vxlan":
        return None
    vtep_ip = ip_text(subnet.network_address)
    dst = f"{vtep_ip}/{subnet.prefixlen}"
    if direct_routing and underlay_net is not None and public_ip in underlay_net:
        return PeerEntries(route=RouteEntry(dst=dst, gateway=ip_text(public_ip), direct=True))
    if not mac:
        return None
    return PeerEntries(neigh=NeighEntry(ip=vtep_ip, mac=mac),
                       fdb=FdbEntry(mac=mac, dst=ip_text(public_ip)),
                       route=RouteEntry(dst=dst, gateway=vtep_ip))


def entries_of(peers: Iterable[Optional[PeerEntries]]) -> Entries:
    entries = Entries()
    for pe in peers:
        if pe is not None:
            entries.add_peer(pe)
    return entries


def peer_map(own: Lease, peers: Iterable[Lease], family: int = 4, *, direct_routing: bool = False,
             underlay_net=None) -> dict[str, PeerEntries]:
    """Each peer lease's entries by lease key, except our own; unusable leases are skipped with a warning."""
    out = {}
    for peer in peers:
        if is_self(own, peer):
            continue
        pe = peer_entries(peer, family, direct_routing=direct_routing, underlay_net=underlay_net)
        if pe is None:
            if lease_fields(peer, family)[0] is not None:
                log.warning("lease %s cannot be programmed for IPv%d (backend %s, public ip %s, mac %s); "
                            "skipped", peer.key, family, peer.backend_type, *lease_fields(peer, family)[1:])
            continue
        out[peer.key] = pe
    return out


def desired_entries(own: Lease, peers: Iterable[Lease], family: int = 4, *, direct_routing: bool = False,
                    underlay_net=None) -> Entries:
    """Entries for every peer lease except our own: the desired state of the device."""
    return entries_of(peer_map(own, peers, family, direct_routing=direct_routing,
                               underlay_net=underlay_net).values())
