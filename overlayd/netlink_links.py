"""Links, addresses, route lookups and link events in rtnetlink's terms: bytes in, plain data out.

Pure: no socket here. overlayd.netlink sends what these functions build through
overlayd.netlink_wire.Wire (or reads it from its event socket) and hands the answers back to the
parsers here. A request is netlink_wire's Request: (message type, flags, payload after the
netlink header); a parser takes the reply buffers (whole messages, headers included).
Malformed input values (an IP address, a MAC) are ValueError naming them, before any I/O.
"""
from __future__ import annotations

import socket
import struct
from typing import Iterable, Iterator, Optional

from .netlink_types import Address, LinkEvent, LinkInfo, VxlanSpec
from .netlink_wire import (_HDR_LT, _NLA, _RTMSG, _U32, AF_INET6, NLM_F_CREATE, NLM_F_REPLACE, RT_TABLE_MAIN,
                           RTA_DST, RTA_OIF, RTA_TABLE, RTM_NEWROUTE, Request, _nla, _packed_ip)

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
NLM_F_EXCL = 0x200
RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x1, 0x10, 0x100
IFF_UP = 0x1
IFNAMSIZ = 16
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINKINFO = 1, 3, 4, 18
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_VXLAN_ID, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LEARNING = 1, 3, 4, 7
IFLA_VXLAN_PORT, IFLA_VXLAN_LOCAL6, IFLA_VXLAN_GBP = 15, 17, 23
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
IFA_F_NODAD = 0x02
RTA_MULTIPATH = 9
NLA_TYPE_MASK = 0x3FFF             # without NLA_F_NESTED / NLA_F_NET_BYTEORDER

_IFINFOMSG = struct.Struct("=BxHiII")       # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")        # family, prefixlen, flags, scope, index
_RTNEXTHOP = struct.Struct("=HBBi")         # len, flags, hops, ifindex
_BE16 = struct.Struct("!H")
_EVENT_KINDS = {RTM_NEWLINK: "link-new", RTM_DELLINK: "link-del", RTM_NEWADDR: "addr-new", RTM_DELADDR: "addr-del"}


# -- walking messages and attributes ----------------------------------------------------------------
def _messages(chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes, int, int]]:
    """(type, buffer, offset, length) of every whole message in the buffers."""
    for data in chunks:
        off, total = 0, len(data)
        while off + 16 <= total:
            ln, kind = _HDR_LT.unpack_from(data, off)
            if ln < 16 or off + ln > total:
                break
            yield kind, data, off, ln
            off += (ln + 3) & ~3


def _attrs(data: bytes, start: int, end: int) -> dict[int, bytes]:
    """{attribute type: payload} of the attributes in data[start:end] (the first of each type)."""
    out: dict[int, bytes] = {}
    while start + 4 <= end:
        alen, atype = _NLA.unpack_from(data, start)
        if alen < 4 or start + alen > end:
            break
        out.setdefault(atype & NLA_TYPE_MASK, bytes(data[start + 4:start + alen]))
        start += (alen + 3) & ~3
    return out


def _nested(payload: Optional[bytes]) -> dict[int, bytes]:
    return _attrs(payload, 0, len(payload)) if payload else {}


def _u32(raw: Optional[bytes]) -> Optional[int]:
    return _U32.unpack_from(raw)[0] if raw and len(raw) >= 4 else None


def _text(raw: Optional[bytes]) -> Optional[str]:
    return None if raw is None else raw.split(b"\0", 1)[0].decode(errors="replace")


def _ip(raw: Optional[bytes]) -> Optional[str]:
    """Address text as inet_ntop writes it (4 or 16 bytes), else None."""
    if raw is None or len(raw) not in (4, 16):
        return None
    return socket.inet_ntop(AF_INET6 if len(raw) == 16 else socket.AF_INET, raw)


def _mac_bytes(mac: str) -> bytes:
    try:
        raw = bytes.fromhex(mac.replace(":", ""))
    except ValueError:
        raw = b""
    if not raw:
        raise ValueError(f"{mac!r} is not a MAC address")
    return raw


# -- links ------------------------------------------------------------------------------------------
def link_dump_request() -> bytes:
    """`ip link show`: every link of the namespace."""
    return _IFINFOMSG.pack(0, 0, 0, 0, 0)


def link_get_request(index: int = 0, name: Optional[str] = None) -> bytes:
    """`ip link show dev NAME` (by name) or the link with this index."""
    body = _IFINFOMSG.pack(0, 0, index, 0, 0)
    return body + _nla(IFLA_IFNAME, name.encode() + b"\0") if name is not None else body


def fits_ifname(name: str) -> bool:
    """Whether a link could have this name at all (1-15 bytes): the kernel refuses to look others up."""
    return 0 < len(name.encode()) < IFNAMSIZ


def vxlan_create_request(spec: VxlanSpec) -> Request:
    """`ip link add NAME mtu M [address MAC] type vxlan id VNI dev UNDERLAY local IP dstport PORT
    [no]learning [gbp]`; the device is created down."""
    fam, local = _packed_ip(spec.local_ip)
    data = (_nla(IFLA_VXLAN_ID, _U32.pack(spec.vni)) + _nla(IFLA_VXLAN_LINK, _U32.pack(spec.underlay_index))
            + _nla(IFLA_VXLAN_LOCAL6 if fam == AF_INET6 else IFLA_VXLAN_LOCAL, local)
            + _nla(IFLA_VXLAN_PORT, _BE16.pack(spec.port)) + _nla(IFLA_VXLAN_LEARNING, bytes([int(spec.learning)])))
    if spec.gbp:
        data += _nla(IFLA_VXLAN_GBP, b"")
    attrs = _nla(IFLA_IFNAME, spec.name.encode() + b"\0") + _nla(IFLA_MTU, _U32.pack(spec.mtu))
    if spec.mac:
        attrs += _nla(IFLA_ADDRESS, _mac_bytes(spec.mac))
    attrs += _nla(IFLA_LINKINFO, _nla(IFLA_INFO_KIND, b"vxlan") + _nla(IFLA_INFO_DATA, data))
    return RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, _IFINFOMSG.pack(0, 0, 0, 0, 0) + attrs


def link_set_request(index: int, up: Optional[bool] = None, mtu: Optional[int] = None,
                     mac: Optional[str] = None) -> Request:
    """`ip link set dev INDEX [up|down] [mtu M] [address MAC]`: only what is given changes."""
    flags, change = (0, 0) if up is None else (IFF_UP if up else 0, IFF_UP)
    attrs = b""
    if mtu is not None:
        attrs += _nla(IFLA_MTU, _U32.pack(mtu))
    if mac is not None:
        attrs += _nla(IFLA_ADDRESS, _mac_bytes(mac))
    return RTM_NEWLINK, 0, _IFINFOMSG.pack(0, 0, index, flags, change) + attrs


def link_del_request(index: int) -> Request:
    return RTM_DELLINK, 0, _IFINFOMSG.pack(0, 0, index, 0, 0)


def _link_info(data: bytes, off: int, ln: int) -> LinkInfo:
    _, _, index, flags, _ = _IFINFOMSG.unpack_from(data, off + 16)
    top = _attrs(data, off + 16 + _IFINFOMSG.size, off + ln)
    info = _nested(top.get(IFLA_LINKINFO))
    kind = _text(info.get(IFLA_INFO_KIND))
    vx = _nested(info.get(IFLA_INFO_DATA)) if kind == "vxlan" and IFLA_INFO_DATA in info else None
    get = vx.get if vx is not None else (lambda k: None)
    port = get(IFLA_VXLAN_PORT)
    learning = get(IFLA_VXLAN_LEARNING)
    return LinkInfo(
        index=index, name=_text(top.get(IFLA_IFNAME)), mac=(top.get(IFLA_ADDRESS) or b"").hex(":") or None,
        mtu=_u32(top.get(IFLA_MTU)) or 0, kind=kind, up=bool(flags & IFF_UP),
        vxlan_id=_u32(get(IFLA_VXLAN_ID)), vxlan_port=_BE16.unpack_from(port)[0] if port and len(port) >= 2 else None,
        vxlan_local=_ip(get(IFLA_VXLAN_LOCAL)) or _ip(get(IFLA_VXLAN_LOCAL6)),
        vxlan_link=_u32(get(IFLA_VXLAN_LINK)),
        vxlan_learning=None if vx is None else bool(learning and learning[0]),
        vxlan_gbp=vx is not None and IFLA_VXLAN_GBP in vx,
    )


def parse_links(chunks: Iterable[bytes]) -> list[LinkInfo]:
    """Every RTM_NEWLINK of a dump or of a get's answer."""
    return [_link_info(data, off, ln) for kind, data, off, ln in _messages(chunks) if kind == RTM_NEWLINK]


# -- addresses --------------------------------------------------------------------------------------
def addr_dump_request(family: int) -> bytes:
    """`ip -4|-6 addr show`: every address of the family (parse_addresses picks a link's; asking
    the kernel to filter would make a link that is gone an ENODEV error)."""
    return _IFADDRMSG.pack(family, 0, 0, 0, 0)


def addr_request(verb: str, index: int, ip: str, prefixlen: int) -> Request:
    """`ip addr replace IP/PLEN dev INDEX` (IPv6: nodad) / `ip addr del IP/PLEN dev INDEX`."""
    fam, raw = _packed_ip(ip)
    if not 0 <= prefixlen <= len(raw) * 8:
        raise ValueError(f"{ip}/{prefixlen} has a bad prefix length")
    attrs = _nla(IFA_LOCAL, raw) + _nla(IFA_ADDRESS, raw)
    if verb == "del":
        return RTM_DELADDR, 0, _IFADDRMSG.pack(fam, prefixlen, 0, 0, index) + attrs
    # IPv6: no duplicate address detection (see Netlink.ensure_only_address): the flag in the
    # header's 8 bits and in IFA_FLAGS, which the kernel prefers when present.
    flags = IFA_F_NODAD if fam == AF_INET6 else 0
    if flags:
        attrs += _nla(IFA_FLAGS, _U32.pack(flags))
    return RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, _IFADDRMSG.pack(fam, prefixlen, flags, 0, index) + attrs


def parse_addresses(chunks: Iterable[bytes], family: int, index: Optional[int] = None) -> list[Address]:
    """The addresses of one family (on one link, unless index is None). IPv4 reports the local
    address (IFA_LOCAL; IFA_ADDRESS is the peer's on a point-to-point link), IPv6 IFA_ADDRESS."""
    out = []
    for kind, data, off, ln in _messages(chunks):
        if kind != RTM_NEWADDR:
            continue
        fam, plen, _, _, idx = _IFADDRMSG.unpack_from(data, off + 16)
        if fam != family or (index is not None and idx != index):
            continue
        attrs = _attrs(data, off + 16 + _IFADDRMSG.size, off + ln)
        ip = _ip(attrs.get(IFA_ADDRESS)) if family == AF_INET6 else (_ip(attrs.get(IFA_LOCAL))
                                                                      or _ip(attrs.get(IFA_ADDRESS)))
        if ip:
            out.append(Address(idx, ip, plen))
    return out


# -- routing lookups --------------------------------------------------------------------------------
def default_route_oif(chunks: Iterable[bytes], table: int = RT_TABLE_MAIN) -> Optional[int]:
    """The interface of the first default route of a route dump in `table`: its RTA_OIF, or for a
    multipath route the first next hop's."""
    for kind, data, off, ln in _messages(chunks):
        if kind != RTM_NEWROUTE:
            continue
        _, dst_len, _, _, rt_table, _, _, _, _ = _RTMSG.unpack_from(data, off + 16)
        if dst_len != 0:
            continue
        attrs = _attrs(data, off + 16 + _RTMSG.size, off + ln)
        if (_u32(attrs.get(RTA_TABLE)) or rt_table) != table:
            continue
        oif = _u32(attrs.get(RTA_OIF))
        if oif:
            return oif
        hops = attrs.get(RTA_MULTIPATH)
        if hops and len(hops) >= _RTNEXTHOP.size:
            return _RTNEXTHOP.unpack_from(hops)[3]
    return None


def route_get_request(dst: str) -> bytes:
    """`ip route get DST`."""
    fam, raw = _packed_ip(dst)
    return _RTMSG.pack(fam, len(raw) * 8, 0, 0, 0, 0, 0, 0, 0) + _nla(RTA_DST, raw)


def parse_route_oif(chunks: Iterable[bytes]) -> Optional[int]:
    """RTA_OIF of the route `ip route get` answered with, or None."""
    for kind, data, off, ln in _messages(chunks):
        if kind == RTM_NEWROUTE:
            return _u32(_attrs(data, off + 16 + _RTMSG.size, off + ln).get(RTA_OIF))
    return None


# -- events -----------------------------------------------------------------------------------------
WATCH_GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR


def parse_events(data: bytes) -> list[LinkEvent]:
    """The link and address changes in what an RTMGRP_LINK/IFADDR socket received. A link event
    names the link (IFLA_IFNAME); an address event carries only the link's index."""
    out = []
    for kind, buf, off, ln in _messages((data,)):
        what = _EVENT_KINDS.get(kind)
        if what is None:
            continue
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            index = _IFINFOMSG.unpack_from(buf, off + 16)[2]
            name = _text(_attrs(buf, off + 16 + _IFINFOMSG.size, off + ln).get(IFLA_IFNAME))
        else:
            index, name = _IFADDRMSG.unpack_from(buf, off + 16)[4], None
        out.append(LinkEvent(what, index, name))
    return out
