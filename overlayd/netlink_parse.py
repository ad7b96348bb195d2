"""Decoding rtnetlink dump replies (neighbours, FDB entries, routes): bytes in, tuples out.

Pure: no socket here; overlayd.netlink_wire reads the bytes.
"""
from __future__ import annotations

from typing import Iterable, NamedTuple, Optional

from .netlink_wire import (_HDR_LT, _NDMSG, _NLA, _RTMSG, _U32, NDA_DST, NDA_LLADDR, NUD_PERMANENT, RT_TABLE_MAIN,
                           RTA_DST, RTA_GATEWAY, RTA_OIF, RTA_TABLE, RTM_NEWNEIGH, RTM_NEWROUTE, _ip_text)


def parse_neighbours(chunks: Iterable[bytes], ifindex: int, permanent_only: bool) -> list[tuple[bytes, bytes]]:
    """(NDA_DST, NDA_LLADDR) of each RTM_NEWNEIGH on ifindex that has both."""
    out = []
    unpack_hdr, unpack_nd, unpack_nla = _HDR_LT.unpack_from, _NDMSG.unpack_from, _NLA.unpack_from
    for data in chunks:
        off, total = 0, len(data)
        while off + 16 <= total:
            ln, kind = unpack_hdr(data, off)
            if ln < 16:
                break
            if kind == RTM_NEWNEIGH:
                _, _, _, idx, state, _, _ = unpack_nd(data, off + 16)
                if idx == ifindex and (state & NUD_PERMANENT or not permanent_only):
                    dst = mac = None
                    a, end = off + 28, off + ln
                    while a + 4 <= end:
                        alen, atype = unpack_nla(data, a)
                        if alen < 4:
                            break
                        if atype == NDA_DST:
                            dst = data[a + 4:a + alen]
                        elif atype == NDA_LLADDR:
                            mac = data[a + 4:a + alen]
                        a += (alen + 3) & ~3
                    if dst and mac:
                        out.append((dst, mac))
            off += (ln + 3) & ~3
    return out


class RouteInfo(NamedTuple):
    """One route of a dump, as the reconcile needs it (a tuple: thousands are made per dump)."""
    dst: str           # "10.244.2.0/24"
    dst_raw: bytes
    dst_len: int
    proto: int
    oif: Optional[int]
    gateway: str


def parse_routes(chunks: Iterable[bytes], table: int = RT_TABLE_MAIN) -> list[RouteInfo]:
    """Every RTM_NEWROUTE in `table` with a destination (the default route has none)."""
    out = []
    unpack_hdr, unpack_rt, unpack_nla, unpack_u32 = (_HDR_LT.unpack_from, _RTMSG.unpack_from,
                                                     _NLA.unpack_from, _U32.unpack_from)
    for data in chunks:
        off, total = 0, len(data)
        while off + 16 <= total:
            ln, kind = unpack_hdr(data, off)
            if ln < 16:
                break
            if kind == RTM_NEWROUTE:
                _, dst_len, _, _, rt_table, proto, _, _, _ = unpack_rt(data, off + 16)
                dst = gw = oif = None
                a, end = off + 28, off + ln
                while a + 4 <= end:
                    alen, atype = unpack_nla(data, a)
                    if alen < 4:
                        break
                    if atype == RTA_DST:
                        dst = data[a + 4:a + alen]
                    elif atype == RTA_GATEWAY:
                        gw = data[a + 4:a + alen]
                    elif atype == RTA_OIF:
                        oif = unpack_u32(data, a + 4)[0]
                    elif atype == RTA_TABLE:
                        rt_table = unpack_u32(data, a + 4)[0]
                    a += (alen + 3) & ~3
                if dst and rt_table == table:
                    out.append(RouteInfo(f"{_ip_text(dst)}/{dst_len}", dst, dst_len, proto, oif,
                                         _ip_text(gw) if gw else ""))
            off += (ln + 3) & ~3
    return out


def within(raw: bytes, plen: int, net) -> bool:
    """raw/plen lies inside the ipaddress network `net` (same family), without building objects."""
    if len(raw) * 8 != net.max_prefixlen or plen < net.prefixlen:
        return False
    return (int.from_bytes(raw, "big") & int(net.netmask)) == int(net.network_address)
