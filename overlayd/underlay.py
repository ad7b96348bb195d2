"""Choosing the underlay interface and the address peers reach us on (flanneld's rules).

--iface (name or IP, repeatable, first match wins), then --iface-regex (against names, then IPs),
then --iface-can-reach (the interface the kernel would route to that address), else the
default-route interface. --public-ip overrides the address peers use.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Optional, Sequence

from .errors import SettingsError
from .netlink import Address, LinkInfo, Netlink


@dataclasses.dataclass(frozen=True)
class Underlay:
    name: str
    index: int
    ip: str                         # the interface's own address (vxlan `local`)
    prefixlen: int
    mtu: int
    public_ip: str                  # what peers use (= ip unless --public-ip)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.ip_interface(f"{self.ip}/{self.prefixlen}").network


def _candidate(link: LinkInfo, addrs: Sequence[Address], want_ip: Optional[str] = None):
    for a in addrs:
        if a.index == link.index and (want_ip is None or a.ip == want_ip):
            return a
    return None


def choose_underlay(links: Sequence[LinkInfo], addrs: Sequence[Address], *,
                    ifaces: Sequence[str] = (), iface_regex: Sequence[str] = (),
                    reach_index: Optional[int] = None, default_index: Optional[int] = None,
                    public_ip: Optional[str] = None) -> Underlay:
    """Pure: pick the underlay from the links and IPv4 addresses a dump returned."""
    by_index = {l.index: l for l in links}

    def build(link: LinkInfo, addr: Address) -> Underlay:
        return Underlay(link.name, link.index, addr.ip, addr.prefixlen, link.mtu, public_ip or addr.ip)

    for want in ifaces:
        try:
            ip = str(ipaddress.ip_address(want))
        except ValueError:
            ip = None
        for link in links:
            if ip is None and link.name != want:
                continue
            addr = _candidate(link, addrs, ip)
            if addr is not None:
                return build(link, addr)
    if ifaces:
        raise SettingsError(f"--iface {', '.join(ifaces)}: no such interface with an IPv4 address; "
                            f"name an interface (ip -br link) or one of its addresses (ip -br addr)")
    for pattern in iface_regex:
        try:
            rx = re.compile(pattern)
        except re.error as err:
            raise SettingsError(f"--iface-regex {pattern!r} is not a regular expression: {err}") from None
        for link in links:
            if link.name and rx.fullmatch(link.name) and _candidate(link, addrs):
                return build(link, _candidate(link, addrs))
        for a in addrs:
            if rx.fullmatch(a.ip) and a.index in by_index:
                return build(by_index[a.index], a)
    if iface_regex:
        raise SettingsError(f"--iface-regex {', '.join(iface_regex)}: no interface or address matches")
    for index, what in ((reach_index, "--iface-can-reach"), (default_index, "the default route")):
        if index is not None and index in by_index:
            addr = _candidate(by_index[index], addrs)
            if addr is not None:
                return build(by_index[index], addr)
            raise SettingsError(f"interface {by_index[index].name} (from {what}) has no IPv4 address; "
                                f"pick another with --iface")
    raise SettingsError("no default route, so no underlay interface: pass --iface NAME or --iface-regex")


def select_underlay(nl: Netlink, *, ifaces: Sequence[str] = (), iface_regex: Sequence[str] = (),
                    can_reach: Optional[str] = None, public_ip: Optional[str] = None) -> Underlay:
    links = nl.links()
    addrs = [a for a in nl.addresses() if not a.ip.startswith("127.")]
    reach = nl.route_get_index(can_reach) if can_reach else None
    if can_reach and reach is None:
        raise SettingsError(f"--iface-can-reach {can_reach}: no route to it")
    default = None if (ifaces or iface_regex or can_reach) else nl.default_route_index()
    return choose_underlay(links, addrs, ifaces=ifaces, iface_regex=iface_regex, reach_index=reach,
                           default_index=default, public_ip=public_ip)


def same_underlay(a: Underlay, b: Underlay) -> bool:
    """Same interface, same local address, same address peers use: nothing to move."""
    return (a.ip, a.index, a.public_ip) == (b.ip, b.index, b.public_ip)
