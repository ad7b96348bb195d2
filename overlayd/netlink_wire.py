"""The wire under overlayd.netlink: a raw rtnetlink socket, hand-packed requests, hand-parsed dumps.

Fixed-layout netlink headers packed with struct, thousands of requests per send, answers matched
by sequence number; single acked requests for the rest (links, addresses, route lookups, whose
messages overlayd.netlink_links builds and parses). Plain data in (overlayd.entries), bytes and
tuples out.
"""
from __future__ import annotations

import ctypes
import errno as errno_mod
import fcntl
import ipaddress
import os
import socket
import struct
from typing import Optional

from .entries import FdbEntry, NeighEntry, RouteEntry
from .netlink_netns import socket_in_netns

NUD_PERMANENT = 0x80
NTF_SELF = 0x02
RTNH_F_ONLINK = 0x04
RT_TABLE_MAIN = 254
RTPROT_KERNEL = 2
# Routes overlayd installs carry this protocol number, so a direct route on the shared
# underlay device can be told apart from the operator's own routes.
RTPROT_OVERLAYD = 115
AF_INET, AF_INET6, AF_BRIDGE = 2, 10, 7

def _family(ip: str) -> int:
    return AF_INET6 if ":" in ip else AF_INET


# -- the wire: a raw rtnetlink socket for bulk requests and fast dumps ----------------------------
# pyroute2 (which the daemon no longer uses) builds and parses every message as a tree of Python
# objects and waits for each answer: ~2k requests/s here. A node with 5,000 peers needs 15,000 entries, so the bulk work (datapath
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


def _error_ack(data, off: int, ln: int, flags: int) -> OSError:
    """The OSError of an error ack: its errno, strerror and the kernel's text when it gave one."""
    err = -_I32.unpack_from(data, off + 16)[0]
    text = _ext_ack_message(data, off, ln, flags)
    return OSError(err, f"{os.strerror(err)}: {text}" if text else os.strerror(err))


class Wire:
    """A raw NETLINK_ROUTE socket in a namespace: pipelined requests and dumps, bytes in and out.

    Errors here are OSError (the socket, an error ack of a dump or of one request) or, for the
    pipelined requests, a per-request (errno, text) the caller interprets. Any thread may use it,
    one at a time (it keeps one receive buffer and one sequence counter).
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
            for off, ln, mkind, flags in _answers_to(seq, data):
                interrupted = interrupted or bool(flags & NLM_F_DUMP_INTR)
                if mkind == NLMSG_DONE:
                    chunks.append(data[:off])
                    return chunks, interrupted
                if mkind == NLMSG_ERROR:
                    raise _error_ack(data, off, ln, flags)
            chunks.append(data)

    def request(self, kind: int, flags: int, payload: bytes) -> list[bytes]:
        """One request, acked: the messages it was answered with (each whole), once its ack is in.

        For the requests that are not bulk: a link, an address, `ip route get`. An error ack is
        OSError(errno, "strerror: the kernel's extended-ack text").
        """
        seq = self._next_seqs(1)
        self.sock.send(_HDR.pack(16 + len(payload), kind, flags | NLM_F_REQUEST | NLM_F_ACK, seq, 0) + payload)
        answers = []
        while True:
            data = self.sock.recv(1 << 17)
            for off, ln, mkind, mflags in _answers_to(seq, data):
                if mkind == NLMSG_ERROR:
                    if _I32.unpack_from(data, off + 16)[0]:
                        raise _error_ack(data, off, ln, mflags)
                    return answers
                answers.append(data[off:off + ln])


def _answers_to(seq: int, data: bytes):
    """(offset, length, type, flags) of each whole message in one datagram answering `seq`."""
    off, end = 0, len(data)
    while off + 16 <= end:
        ln, kind, flags, mseq, _ = _HDR.unpack_from(data, off)
        if ln < 16:
            return
        if mseq == seq:
            yield off, ln, kind, flags
        off += (ln + 3) & ~3


# -- requests the dumps start with, and small decoders ---------------------------------------------
def neigh_dump_request(family: int, ifindex: int) -> bytes:
    return _NDMSG.pack(family, 0, 0, 0, 0, 0, 0) + _NLA_IFINDEX + _U32.pack(ifindex)


def fdb_dump_request(ifindex: int) -> bytes:
    return _NDMSG.pack(AF_BRIDGE, 0, 0, ifindex, 0, 0, 0)


def route_dump_request(family: int) -> bytes:
    return _RTMSG.pack(family, 0, 0, 0, RT_TABLE_MAIN, 0, 0, 0, 0) + _NLA_TABLE_MAIN


ip_text = _ip_text


def ethtool_value(sock_fd: int, ifname: str, cmd: int, data: int = 0) -> int:
    """One SIOCETHTOOL ethtool_value command on a link, through a socket in the link's namespace."""
    value = ctypes.create_string_buffer(_ETHTOOL_VALUE.pack(cmd, data), _ETHTOOL_VALUE.size)
    ifreq = bytearray(struct.pack("@16sP", ifname.encode(), ctypes.addressof(value)).ljust(40, b"\0"))
    fcntl.ioctl(sock_fd, SIOCETHTOOL, ifreq)
    return _ETHTOOL_VALUE.unpack(value.raw)[1]
