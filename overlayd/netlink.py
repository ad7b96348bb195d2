"""Netlink, and nothing else: the only module that imports pyroute2.

Small functions on plain data (overlayd.entries, LinkInfo). Every pyroute2 error is turned into
DatapathError here, in one place, with the errno meanings decided once:
  - ENOENT/ESRCH on delete: the entry is already gone, which is what we wanted: success.
  - EEXIST on an add we issue with replace/append semantics does not happen; elsewhere it is an error.
A Netlink object must be used from the thread that created it (pyroute2 0.9 binds its loop to it).

Bulk work (the ARP/FDB/route entries of thousands of peers, and their dumps) does not go through
pyroute2 but through Wire below: a raw rtnetlink socket with hand-packed requests sent thousands
at a time and hand-parsed answers. Links, addresses and the link watcher stay on pyroute2.
"""
from __future__ import annotations

import ctypes
import dataclasses
import errno as errno_mod
import fcntl
import ipaddress
import logging
import os
import socket
import struct
import threading
from typing import Callable, Iterable, NamedTuple, Optional

from pyroute2 import IPRoute
from pyroute2 import config as pyroute2_config
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK

from .entries import Entries, FdbEntry, NeighEntry, Plan, RouteEntry
from .errors import DatapathError, DeviceMissing

log = logging.getLogger(__name__)

# IPRoute(netns=...) forks a child that opens the socket inside the namespace, hands it back and
# is then sent SIGTERM. A child still running Python when that arrives would, with an inherited
# Python SIGTERM handler (a daemon's graceful shutdown, the lab's cleanup-on-signal), raise in the
# parent's copied stack and run the parent's finally blocks (closing the shared netlink sockets,
# removing the lab's namespaces); the benchmark saw this as the parent hanging in a pyroute2 call
# that never got its answer. This makes the child restore the default SIGTERM action before it
# hands the socket back, so SIGTERM ends it at once.
pyroute2_config.disable_mp_signal = True

NUD_PERMANENT = 0x80
NTF_SELF = 0x02
RTNH_F_ONLINK = 0x04
RT_TABLE_MAIN = 254
RTPROT_KERNEL = 2
# Routes overlayd installs carry this protocol number, so a direct route on the shared
# underlay device can be told apart from the operator's own routes.
RTPROT_OVERLAYD = 115
AF_INET, AF_INET6, AF_BRIDGE = 2, 10, 7
_GONE = (errno_mod.ENOENT, errno_mod.ESRCH, errno_mod.ENODEV, errno_mod.EADDRNOTAVAIL)


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


def _family(ip: str) -> int:
    return AF_INET6 if ":" in ip else AF_INET


# -- the wire: a raw rtnetlink socket for bulk requests and fast dumps ----------------------------
# pyroute2 builds and parses every message as a tree of Python objects and waits for each answer:
# ~2k requests/s here. A node with 5,000 peers needs 15,000 entries, so the bulk work (datapath
# entries and their dumps) goes over a socket of our own: fixed-layout headers packed with struct,
# thousands of requests per send, each with its own sequence number, and every error answer
# matched back to its request by that number. The kernel handles the requests of one send in
# order, so "all ARP entries, then all FDB entries, then all routes" holds within a batch too.

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP_INTR = 0x1, 0x4, 0x10
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200
NLM_F_REPLACE, NLM_F_CREATE, NLM_F_APPEND, NLM_F_DUMP = 0x100, 0x400, 0x800, 0x300
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
NDA_DST, NDA_LLADDR, NDA_IFINDEX = 1, 2, 8
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
RTN_UNICAST = 1
RT_SCOPE_NOWHERE = 255
SOL_NETLINK = 270
NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK = 10, 11, 12
NLMSGERR_ATTR_MSG = 1
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33
SOCKET_BUFFER = 8 << 20        # asked for; root gets it (…FORCE), others get net.core.*mem_max
ACK_TRUESIZE = 1024            # kernel memory one queued ack costs, generously (skb + data)
MAX_CHUNK = 4096               # requests per send; their acks must fit the receive buffer
DUMP_RETRIES = 5

SIOCETHTOOL = 0x8946
ETHTOOL_GTXCSUM, ETHTOOL_STXCSUM = 0x16, 0x17

_ETHTOOL_VALUE = struct.Struct("=II")
_HDR = struct.Struct("=IHHII")
_HDR_LT = struct.Struct("=IH")
_NDMSG = struct.Struct("=BBHiHBB")
_RTMSG = struct.Struct("=BBBBBBBBI")
_NLA = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")
_NLA_IFINDEX = _NLA.pack(8, NDA_IFINDEX)
_NLA_OIF = _NLA.pack(8, RTA_OIF)
_NLA_TABLE_MAIN = _NLA.pack(8, RTA_TABLE) + _U32.pack(RT_TABLE_MAIN)

# A request is (message type, flags, payload after the netlink header).
Request = tuple[int, int, bytes]


def _nla(kind: int, data: bytes) -> bytes:
    n = 4 + len(data)
    return _NLA.pack(n, kind) + data + b"\0" * (-n % 4)


# Attribute headers of the fixed-size attributes the bulk requests carry, computed once:
# {address length: header} for addresses, and the MAC's (6 bytes + 2 of padding).
_DST_HEAD = {4: _NLA.pack(8, NDA_DST), 16: _NLA.pack(20, NDA_DST)}
_RTA_DST_HEAD = {4: _NLA.pack(8, RTA_DST), 16: _NLA.pack(20, RTA_DST)}
_RTA_GW_HEAD = {4: _NLA.pack(8, RTA_GATEWAY), 16: _NLA.pack(20, RTA_GATEWAY)}
_LLADDR_HEAD = _NLA.pack(10, NDA_LLADDR)
_PAD2 = b"\0\0"
_inet_pton = socket.inet_pton


def _packed_ip(ip: str) -> tuple[int, bytes]:
    """(family, network-order bytes); a malformed address is a ValueError naming it."""
    fam = AF_INET6 if ":" in ip else AF_INET
    try:
        return fam, _inet_pton(fam, ip)
    except OSError:
        raise ValueError(f"{ip!r} is not an IP address") from None


def _mac_attr(mac: str) -> bytes:
    """NDA_LLADDR of a MAC; any length other than 6 bytes is left for the kernel to refuse."""
    try:
        raw = bytes.fromhex(mac.replace(":", ""))
    except ValueError:
        raise ValueError(f"{mac!r} is not a MAC address") from None
    return _LLADDR_HEAD + raw + _PAD2 if len(raw) == 6 else _nla(NDA_LLADDR, raw)


def _ip_text(raw: bytes) -> str:
    """Canonical text (ipaddress' str) of a 4- or 16-byte address."""
    if len(raw) == 4:
        return socket.inet_ntop(AF_INET, raw)
    return str(ipaddress.IPv6Address(raw))


def neigh_request(verb: str, vxlan_index: int, n: NeighEntry) -> Request:
    """`ip neigh replace IP lladdr MAC dev vxlan nud permanent` / `ip neigh del IP dev vxlan`."""
    fam, dst = _packed_ip(n.ip)
    if verb == "del":
        return RTM_DELNEIGH, 0, _NDMSG.pack(fam, 0, 0, vxlan_index, 0, 0, 0) + _DST_HEAD[len(dst)] + dst
    return (RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE,
            _NDMSG.pack(fam, 0, 0, vxlan_index, NUD_PERMANENT, 0, 0) + _DST_HEAD[len(dst)] + dst
            + _mac_attr(n.mac))


def fdb_request(verb: str, vxlan_index: int, f: FdbEntry) -> Request:
    """`bridge fdb append MAC dev vxlan dst IP self permanent` (one MAC may have several dsts)."""
    _, dst = _packed_ip(f.dst)
    body = (_NDMSG.pack(AF_BRIDGE, 0, 0, vxlan_index, NUD_PERMANENT, NTF_SELF, 0)
            + _mac_attr(f.mac) + _DST_HEAD[len(dst)] + dst)
    if verb == "del":
        return RTM_DELNEIGH, 0, body
    return RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_APPEND, body


def route_request(verb: str, vxlan_index: int, underlay_index: int, r: RouteEntry) -> Request:
    """`ip route replace DST via GW dev vxlan onlink proto 115` (direct: via the underlay device)."""
    prefix, _, plen = r.dst.partition("/")
    fam, dst = _packed_ip(prefix)
    bits = len(dst) * 8
    dst_len = int(plen) if plen.isdigit() else (-1 if plen else bits)
    if not 0 <= dst_len <= bits:
        raise ValueError(f"{r.dst!r} has a bad prefix length")
    oif = _NLA_OIF + _U32.pack(underlay_index if r.direct else vxlan_index)
    if verb == "del":
        # Name the route precisely, so an operator's route to the same prefix is never the one
        # removed: a vxlan route by its device, a direct route by its gateway (the underlay
        # device may have been replaced since it was added).
        if r.direct:
            _, gw = _packed_ip(r.gateway)
            which = _RTA_GW_HEAD[len(gw)] + gw
        else:
            which = oif
        return (RTM_DELROUTE, 0, _RTMSG.pack(fam, dst_len, 0, 0, RT_TABLE_MAIN, 0, RT_SCOPE_NOWHERE, 0, 0)
                + _RTA_DST_HEAD[len(dst)] + dst + which)
    gw_fam, gw = _packed_ip(r.gateway)
    if gw_fam != fam:
        raise ValueError(f"gateway {r.gateway} is not of the route's address family")
    return (RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE,
            _RTMSG.pack(fam, dst_len, 0, 0, RT_TABLE_MAIN, RTPROT_OVERLAYD, 0, RTN_UNICAST,
                        0 if r.direct else RTNH_F_ONLINK)
            + _RTA_DST_HEAD[len(dst)] + dst + _RTA_GW_HEAD[len(gw)] + gw + oif)


def _ext_ack_message(data, off: int, ln: int, flags: int) -> str:
    """The kernel's extended-ack text (NLMSGERR_ATTR_MSG) of an error ack, or ''."""
    if not flags & NLM_F_ACK_TLVS:
        return ""
    inner_len = 16 if flags & NLM_F_CAPPED else _U32.unpack_from(data, off + 20)[0]
    a, end = off + 20 + ((inner_len + 3) & ~3), off + ln
    while a + 4 <= end:
        alen, atype = _NLA.unpack_from(data, a)
        if alen < 4:
            break
        if atype == NLMSGERR_ATTR_MSG:
            return bytes(data[a + 4:a + alen]).rstrip(b"\0").decode(errors="replace")
        a += (alen + 3) & ~3
    return ""


CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/var/run/netns"


def socket_in_netns(netns: Optional[str], family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket that lives in the named network namespace (or a path to one; None: ours).

    A short-lived thread enters the namespace (setns moves only the calling thread), opens the
    socket and ends; the socket stays in the namespace it was made in. No fork: pyroute2's
    create_socket forks a child, which costs a process and, in a process with Python signal
    handlers, lets the child run the parent's code when it is sent SIGTERM.
    A missing namespace is FileNotFoundError; it is never created.
    """
    if not netns:
        return socket.socket(family, kind, proto)
    path = netns if "/" in netns else os.path.join(NETNS_RUN_DIR, netns)
    box: dict = {}

    def enter_and_open() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc().setns(fd, CLONE_NEWNET) != 0:
                    code = ctypes.get_errno()
                    raise OSError(code, f"setns {path}: {os.strerror(code)}")
            finally:
                os.close(fd)
            box["sock"] = socket.socket(family, kind, proto)
        except BaseException as err:
            box["err"] = err

    t = threading.Thread(target=enter_and_open, name=f"setns-{netns}", daemon=True)
    t.start()
    t.join()
    if "err" in box:
        raise box["err"]
    return box["sock"]


_LIBC: Optional[ctypes.CDLL] = None


def _libc() -> ctypes.CDLL:
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


class Wire:
    """A raw NETLINK_ROUTE socket in a namespace: pipelined requests and dumps, bytes in and out.

    Errors here are OSError (the socket) or a per-request (errno, text) the caller interprets.
    """

    def __init__(self, netns: Optional[str] = None):
        sock = socket_in_netns(netns, socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            sock.bind((0, 0))
            for forced, plain in ((SO_SNDBUFFORCE, socket.SO_SNDBUF), (SO_RCVBUFFORCE, socket.SO_RCVBUF)):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, forced, SOCKET_BUFFER)
                except OSError:   # not CAP_NET_ADMIN: capped at net.core.[rw]mem_max
                    sock.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER)
            for opt in (NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK):
                try:
                    sock.setsockopt(SOL_NETLINK, opt, 1)
                except OSError:
                    pass
            # A request that never gets an answer must not hang the daemon.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("@ll", 30, 0))
            rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            sndbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.chunk = max(8, min(MAX_CHUNK, rcvbuf // ACK_TRUESIZE))
        self.chunk_bytes = max(16 << 10, sndbuf // 2)
        self._buf = bytearray(1 << 16)
        self._seq = 0

    def close(self) -> None:
        self.sock.close()

    def fileno(self) -> int:
        return self.sock.fileno()

    def _next_seqs(self, n: int) -> int:
        if self._seq + n >= 1 << 31:
            self._seq = 0
        base = self._seq + 1
        self._seq += n
        return base

    def requests(self, reqs: list[Request]) -> dict[int, tuple[int, str]]:
        """Send the requests pipelined; {index: (errno, kernel text)} of those that failed.

        The kernel answers a request without NLM_F_ACK only when it fails, and handles the
        requests of one socket in order. So only the last request of each chunk asks for an
        ack: once its answer is in, every earlier request of the chunk is done and each failure
        has already arrived, matched to its request by sequence number. A chunk is never larger
        than the receive buffer can hold answers for, even if every request in it fails.
        """
        failures: dict[int, tuple[int, str]] = {}
        sock, buf, pack = self.sock, self._buf, _HDR.pack
        start, total = 0, len(reqs)
        while start < total:
            base = self._next_seqs(min(self.chunk, total - start))
            parts, size, end = [], 0, start
            while end < total and end - start < self.chunk and size < self.chunk_bytes:
                kind, flags, payload = reqs[end]
                parts.append(pack(16 + len(payload), kind, flags | NLM_F_REQUEST, base + end - start, 0))
                parts.append(payload)
                size += 16 + len(payload)
                end += 1
            last = len(parts) - 2          # the chunk's last request carries NLM_F_ACK
            kind, flags, payload = reqs[end - 1]
            parts[last] = pack(16 + len(payload), kind, flags | NLM_F_REQUEST | NLM_F_ACK, base + end - 1 - start, 0)
            sock.send(b"".join(parts))
            count, final = end - start, end - 1 - start
            done = False
            while not done:
                got = sock.recv_into(buf)
                off = 0
                while off + 16 <= got:
                    ln, kind, flags, seq, _ = _HDR.unpack_from(buf, off)
                    if ln < 16:
                        break
                    idx = seq - base
                    if kind == NLMSG_ERROR and 0 <= idx < count:
                        err = -_I32.unpack_from(buf, off + 16)[0]
                        if err:
                            failures[start + idx] = (err, _ext_ack_message(buf, off, ln, flags))
                        done = done or idx == final
                    off += (ln + 3) & ~3
            start = end
        return failures

    def dump(self, kind: int, payload: bytes) -> list[bytes]:
        """The raw reply buffers of one dump request (complete and consistent, else OSError)."""
        for _ in range(DUMP_RETRIES):
            chunks, interrupted = self._dump_once(kind, payload)
            if not interrupted:
                return chunks
        raise OSError(errno_mod.EAGAIN, "the dump kept changing under us (NLM_F_DUMP_INTR)")

    def _dump_once(self, kind: int, payload: bytes) -> tuple[list[bytes], bool]:
        seq = self._next_seqs(1)
        self.sock.send(_HDR.pack(16 + len(payload), kind, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + payload)
        chunks, interrupted = [], False
        while True:
            data = self.sock.recv(1 << 17)
            off, end = 0, len(data)
            while off + 16 <= end:
                ln, mkind, flags, mseq, _ = _HDR.unpack_from(data, off)
                if ln < 16:
                    break
                if mseq == seq:
                    interrupted = interrupted or bool(flags & NLM_F_DUMP_INTR)
                    if mkind == NLMSG_DONE:
                        chunks.append(data[:off])
                        return chunks, interrupted
                    if mkind == NLMSG_ERROR:
                        err = -_I32.unpack_from(data, off + 16)[0]
                        raise OSError(err, f"{os.strerror(err)} {_ext_ack_message(data, off, ln, flags)}".strip())
                off += (ln + 3) & ~3
            chunks.append(data)


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


def _within(raw: bytes, plen: int, net) -> bool:
    """raw/plen lies inside the ipaddress network `net` (same family), without building objects."""
    if len(raw) * 8 != net.max_prefixlen or plen < net.prefixlen:
        return False
    return (int.from_bytes(raw, "big") & int(net.netmask)) == int(net.network_address)


class Netlink:
    def __init__(self, netns: Optional[str] = None):
        self.netns = netns
        self._wire: Optional[Wire] = None      # the bulk socket, opened on first use
        try:
            self._ipr = IPRoute(netns=netns, flags=0) if netns else IPRoute()
        except (NetlinkError, OSError) as err:
            raise DatapathError(f"open netlink socket (netns {netns})", getattr(err, "code", 0) or getattr(err, "errno", 0) or 0, str(err)) from None

    def close(self) -> None:
        if self._wire is not None:
            self._wire.close()
            self._wire = None
        self._ipr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- errors -----------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable, *args, ok_if_gone: bool = False, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NetlinkError as err:
            if ok_if_gone and err.code in _GONE:
                return None
            if err.code in (errno_mod.ENODEV,):
                raise DeviceMissing(what, err.code, err.args[1] if len(err.args) > 1 else str(err)) from None
            raise DatapathError(what, err.code, err.args[1] if len(err.args) > 1 else str(err)) from None
        except OSError as err:
            raise DatapathError(what, err.errno or 0, str(err)) from None

    # -- links --------------------------------------------------------------------------------
    @staticmethod
    def _link_info(msg) -> LinkInfo:
        kind = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
        data = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA") if kind == "vxlan" else None
        get = (lambda k: data.get(k)) if data is not None else (lambda k: None)
        return LinkInfo(
            index=msg["index"], name=msg.get("IFLA_IFNAME"), mac=(msg.get("IFLA_ADDRESS") or None),
            mtu=msg.get("IFLA_MTU") or 0, kind=kind, up=bool(msg["flags"] & 1),
            vxlan_id=get("IFLA_VXLAN_ID"), vxlan_port=get("IFLA_VXLAN_PORT"),
            vxlan_local=get("IFLA_VXLAN_LOCAL") or get("IFLA_VXLAN_LOCAL6"),
            vxlan_link=get("IFLA_VXLAN_LINK"),
            vxlan_learning=None if data is None else bool(get("IFLA_VXLAN_LEARNING")),
            vxlan_gbp=data is not None and get("IFLA_VXLAN_GBP") is not None,
        )

    def links(self) -> list[LinkInfo]:
        return [self._link_info(m) for m in self._call("dump links", self._ipr.get_links)]

    def link(self, name: Optional[str] = None, index: Optional[int] = None) -> Optional[LinkInfo]:
        if index is None:
            found = self._call(f"look up link {name}", self._ipr.link_lookup, ifname=name)
            if not found:
                return None
            index = found[0]
        msgs = self._call(f"get link {name or index}", self._ipr.get_links, index, ok_if_gone=True)
        return self._link_info(msgs[0]) if msgs else None

    def create_vxlan(self, spec: VxlanSpec) -> LinkInfo:
        kwargs = dict(ifname=spec.name, kind="vxlan", vxlan_id=spec.vni, vxlan_port=spec.port,
                      vxlan_link=spec.underlay_index, vxlan_learning=int(spec.learning), mtu=spec.mtu)
        kwargs["vxlan_local6" if ":" in spec.local_ip else "vxlan_local"] = spec.local_ip
        if spec.gbp:
            kwargs["vxlan_gbp"] = True
        if spec.mac:
            kwargs["address"] = spec.mac
        self._call(f"create vxlan device {spec.name}", self._ipr.link, "add", **kwargs)
        info = self.link(spec.name)
        if info is None:
            raise DeviceMissing(f"create vxlan device {spec.name}", errno_mod.ENODEV, "gone right after creation")
        return info

    def delete_link(self, index: int) -> None:
        self._call(f"delete link {index}", self._ipr.link, "del", index=index, ok_if_gone=True)

    def set_link(self, index: int, *, up: Optional[bool] = None, mtu: Optional[int] = None,
                 mac: Optional[str] = None) -> None:
        kwargs = {}
        if up is not None:
            kwargs["state"] = "up" if up else "down"
        if mtu is not None:
            kwargs["mtu"] = mtu
        if mac is not None:
            kwargs["address"] = mac
        if kwargs:
            self._call(f"set link {index} {kwargs}", self._ipr.link, "set", index=index, **kwargs)

    # -- addresses ----------------------------------------------------------------------------
    def addresses(self, index: Optional[int] = None, family: int = AF_INET) -> list[Address]:
        kwargs = {"family": family}
        if index is not None:
            kwargs["index"] = index
        out = []
        for m in self._call("dump addresses", self._ipr.get_addr, **kwargs):
            ip = m.get("IFA_ADDRESS") if family == AF_INET6 else (m.get("IFA_LOCAL") or m.get("IFA_ADDRESS"))
            if ip:
                out.append(Address(m["index"], ip, m["prefixlen"]))
        return out

    def ensure_only_address(self, index: int, ip: str, prefixlen: int) -> bool:
        """Make `ip/prefixlen` the only address of this family on the device. True if it changed."""
        fam = _family(ip)
        have = [a for a in self.addresses(index, fam) if not (fam == AF_INET6 and a.ip.startswith("fe80:"))]
        changed = False
        for a in have:
            if (a.ip, a.prefixlen) != (ip, prefixlen):
                self._call(f"remove address {a.ip}/{a.prefixlen}", self._ipr.addr, "del", index=index,
                           address=a.ip, prefixlen=a.prefixlen, ok_if_gone=True)
                changed = True
        if not any((a.ip, a.prefixlen) == (ip, prefixlen) for a in have):
            self._call(f"add address {ip}/{prefixlen}", self._ipr.addr, "replace", index=index,
                       address=ip, prefixlen=prefixlen)
            changed = True
        return changed

    # -- routing lookups ------------------------------------------------------------------------
    def default_route_index(self, family: int = AF_INET) -> Optional[int]:
        for r in self._call("dump routes", self._ipr.get_routes, family=family, table=RT_TABLE_MAIN):
            if r["dst_len"] == 0 and r.get("RTA_OIF"):
                return r.get("RTA_OIF")
            mp = r.get("RTA_MULTIPATH")
            if r["dst_len"] == 0 and mp:
                return mp[0]["oif"]
        return None

    def route_get_index(self, dst: str) -> Optional[int]:
        msgs = self._call(f"route get {dst}", self._ipr.route, "get", dst=dst, ok_if_gone=True)
        return msgs[0].get("RTA_OIF") if msgs else None

    # -- datapath entries -----------------------------------------------------------------------
    def _bulk(self) -> Wire:
        if self._wire is None:
            try:
                self._wire = Wire(self.netns)
            except OSError as err:
                raise DatapathError(f"open netlink socket (netns {self.netns})", err.errno or 0, str(err)) from None
        return self._wire

    def _dump(self, what: str, kind: int, payload: bytes) -> list[bytes]:
        try:
            return self._bulk().dump(kind, payload)
        except OSError as err:
            code = err.errno or 0
            cls = DeviceMissing if code == errno_mod.ENODEV else DatapathError
            raise cls(what, code, err.strerror or str(err)) from None

    def dump_entries(self, vxlan_index: int, family: int = AF_INET, *,
                     direct_within: Optional[ipaddress.IPv4Network | ipaddress.IPv6Network] = None) -> Entries:
        """What the kernel has: permanent neighbours and FDB entries on the vxlan device, our routes.

        Routes count as ours when they leave through the vxlan device, or (DirectRouting) carry
        our protocol number and lie inside `direct_within`.
        """
        actual = Entries()
        addr_len = 16 if family == AF_INET6 else 4
        neigh_req = _NDMSG.pack(family, 0, 0, 0, 0, 0, 0) + _NLA_IFINDEX + _U32.pack(vxlan_index)
        for dst, mac in parse_neighbours(self._dump("dump neighbours", RTM_GETNEIGH, neigh_req),
                                         vxlan_index, permanent_only=True):
            if len(dst) == addr_len:
                ip = _ip_text(dst)
                actual.neighs[ip] = NeighEntry(ip=ip, mac=mac.hex(":"))
        fdb_req = _NDMSG.pack(AF_BRIDGE, 0, 0, vxlan_index, 0, 0, 0)
        for dst, mac in parse_neighbours(self._dump("dump fdb", RTM_GETNEIGH, fdb_req),
                                         vxlan_index, permanent_only=False):
            if len(dst) == addr_len:
                actual.fdbs.add(FdbEntry(mac=mac.hex(":"), dst=_ip_text(dst)))
        route_req = _RTMSG.pack(family, 0, 0, 0, RT_TABLE_MAIN, 0, 0, 0, 0) + _NLA_TABLE_MAIN
        for r in parse_routes(self._dump("dump routes", RTM_GETROUTE, route_req)):
            if r.proto == RTPROT_KERNEL or r.dst_len == 0:
                continue
            if r.oif == vxlan_index:
                actual.routes[r.dst] = RouteEntry(dst=r.dst, gateway=r.gateway)
            elif (r.proto == RTPROT_OVERLAYD and direct_within is not None
                  and _within(r.dst_raw, r.dst_len, direct_within)):
                actual.routes[r.dst] = RouteEntry(dst=r.dst, gateway=r.gateway, direct=True)
        return actual

    def _send(self, items: list, encode: Callable[[object], Request], describe: Callable[[object], str],
              ok_if_gone: bool = False) -> list[Optional[DatapathError]]:
        """Encode and send one request per item, pipelined; per item None (done) or its error."""
        errors: list[Optional[DatapathError]] = [None] * len(items)
        reqs, where = [], []
        for i, item in enumerate(items):
            try:
                reqs.append(encode(item))
                where.append(i)
            except ValueError as err:    # refused before it reached the kernel
                errors[i] = DatapathError(describe(item), errno_mod.EINVAL, str(err))
        if not reqs:
            return errors
        try:
            failures = self._bulk().requests(reqs)
        except OSError as err:
            raise DatapathError(f"{describe(items[where[0]])} and {len(reqs) - 1} more requests",
                                err.errno or 0, err.strerror or str(err)) from None
        for j, (code, text) in failures.items():
            if ok_if_gone and code in _GONE:
                continue
            item = items[where[j]]
            cls = DeviceMissing if code == errno_mod.ENODEV else DatapathError
            errors[where[j]] = cls(describe(item), code, f"{os.strerror(code)}{': ' + text if text else ''}")
        return errors

    def _neighs(self, verb: str, vxlan_index: int, items: list[NeighEntry], **kw) -> list[Optional[DatapathError]]:
        return self._send(items, lambda n: neigh_request(verb, vxlan_index, n),
                          lambda n: f"{verb} neighbour {n.ip} lladdr {n.mac}", **kw)

    def _fdbs(self, verb: str, vxlan_index: int, items: list[FdbEntry], **kw) -> list[Optional[DatapathError]]:
        return self._send(items, lambda f: fdb_request(verb, vxlan_index, f),
                          lambda f: f"{verb} fdb {f.mac} dst {f.dst}", **kw)

    def _routes(self, verb: str, vxlan_index: int, underlay_index: int, items: list[RouteEntry],
                **kw) -> list[Optional[DatapathError]]:
        return self._send(items, lambda r: route_request(verb, vxlan_index, underlay_index, r),
                          lambda r: f"{verb} route {r.dst} via {r.gateway}", **kw)

    def apply(self, plan: Plan, vxlan_index: int, underlay_index: int) -> "ApplyResult":
        """Removals (route, FDB, ARP; best effort), then ARP, FDB, route for every peer.

        Each step is one pipelined batch over all peers, and a peer's next step is only sent if
        its previous one succeeded, so a route never points at a missing ARP or FDB entry. A peer
        whose step failed is rolled back (its FDB, then its ARP entry removed). DeviceMissing is
        raised once the batch and the rollback are done.
        """
        result = ApplyResult()
        missing: list[DeviceMissing] = []

        def settle(kind: str, errors: list[Optional[DatapathError]]) -> None:
            for err in errors:
                if err is None:
                    result.count(kind)
                else:
                    result.errors.append(err)
                    if isinstance(err, DeviceMissing):
                        missing.append(err)

        settle("del_route", self._routes("del", vxlan_index, underlay_index, plan.del_routes, ok_if_gone=True))
        settle("del_fdb", self._fdbs("del", vxlan_index, plan.del_fdbs, ok_if_gone=True))
        settle("del_neigh", self._neighs("del", vxlan_index, plan.del_neighs, ok_if_gone=True))
        if missing:
            raise missing[0]

        peers = plan.add
        failed: dict[int, DatapathError] = {}
        have_neigh, have_fdb = set(), set()

        def step(kind: str, picked: list[int], errors: list[Optional[DatapathError]], done: set) -> None:
            for i, err in zip(picked, errors):
                if err is None:
                    result.count(kind)
                    done.add(i)
                else:
                    failed[i] = err

        picked = [i for i, p in enumerate(peers) if p.neigh is not None]
        step("add_neigh", picked, self._neighs("replace", vxlan_index, [peers[i].neigh for i in picked]), have_neigh)
        picked = [i for i, p in enumerate(peers) if p.fdb is not None and i not in failed]
        step("add_fdb", picked, self._fdbs("append", vxlan_index, [peers[i].fdb for i in picked]), have_fdb)
        picked = [i for i in range(len(peers)) if i not in failed]
        step("add_route", picked, self._routes("replace", vxlan_index, underlay_index,
                                               [peers[i].route for i in picked]), set())
        for i in sorted(failed):
            result.errors.append(failed[i])
            if isinstance(failed[i], DeviceMissing):
                missing.append(failed[i])
        if failed and not missing:   # roll the half-added peers back, newest step first
            undo_fdb = [peers[i].fdb for i in sorted(failed) if i in have_fdb]
            undo_neigh = [peers[i].neigh for i in sorted(failed) if i in have_neigh]
            for err in self._fdbs("del", vxlan_index, undo_fdb, ok_if_gone=True):
                if err is not None:
                    result.errors.append(err)
            for err in self._neighs("del", vxlan_index, undo_neigh, ok_if_gone=True):
                if err is not None:
                    result.errors.append(err)
        if missing:
            raise missing[0]
        return result

    # -- tx checksum offload (flannel #2152) ------------------------------------------------------
    def _ethtool(self, index: int, cmd: int, data: int = 0) -> int:
        """One SIOCETHTOOL ethtool_value command on the link; returns the value the kernel wrote."""
        info = self.link(index=index)
        if info is None:
            raise DeviceMissing(f"ethtool on link {index}", errno_mod.ENODEV, "no such device")
        value = ctypes.create_string_buffer(_ETHTOOL_VALUE.pack(cmd, data), _ETHTOOL_VALUE.size)
        ifreq = bytearray(struct.pack("@16sP", info.name.encode(), ctypes.addressof(value)).ljust(40, b"\0"))
        try:
            # The ioctl acts on the socket's namespace: our netlink socket already lives in it.
            fcntl.ioctl(self._bulk().fileno(), SIOCETHTOOL, ifreq)
        except OSError as err:
            cls = DeviceMissing if err.errno == errno_mod.ENODEV else DatapathError
            raise cls(f"ethtool command {cmd:#x} on {info.name}", err.errno or 0, os.strerror(err.errno or 0)) from None
        return _ETHTOOL_VALUE.unpack(value.raw)[1]

    def set_tx_checksum(self, index: int, enabled: bool) -> None:
        """`ethtool -K DEV tx on|off`: switch every tx checksum offload of the link on or off."""
        self._ethtool(index, ETHTOOL_STXCSUM, int(enabled))

    def tx_checksum(self, index: int) -> bool:
        """Whether the link offloads tx checksums now (`ethtool -k DEV`'s tx-checksumming)."""
        return bool(self._ethtool(index, ETHTOOL_GTXCSUM))

    # -- events ---------------------------------------------------------------------------------
    @staticmethod
    def watch_links(netns: Optional[str], stop: threading.Event, on_event: Callable[[LinkEvent], None],
                    ready: Optional[threading.Event] = None) -> None:
        """Blocking loop (run it in its own thread): report link and address changes until stop."""
        mon = IPRoute(netns=netns, flags=0) if netns else IPRoute()
        try:
            mon.bind(groups=RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
            if ready is not None:
                ready.set()
            kinds = {"RTM_NEWLINK": "link-new", "RTM_DELLINK": "link-del",
                     "RTM_NEWADDR": "addr-new", "RTM_DELADDR": "addr-del"}
            while not stop.is_set():
                for msg in mon.get():
                    kind = kinds.get(msg.get("event"))
                    if kind:
                        on_event(LinkEvent(kind, msg.get("index", 0), msg.get("IFLA_IFNAME")))
        finally:
            mon.close()


@dataclasses.dataclass
class ApplyResult:
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    errors: list[DatapathError] = dataclasses.field(default_factory=list)

    def count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
