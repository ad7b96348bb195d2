"""Cut established connections the policies no longer allow: delete their conntrack entries.

The forward chain accepts `ct state established,related` first (replies of allowed connections,
no per-packet policy walk). So after a change, connections it would now refuse must lose their
conntrack entries, or they would live on. We dump the table, keep the entries touching this
node's pods, ask `allowed(src, dst, protocol, port)` (evaluate.still_allowed over the new cluster
state), and delete the rest. A deleted entry's next packet is new again and meets the new rules.

This module alone talks conntrack: ctnetlink on a raw netlink socket, parsed with struct (a
table of 3,000 entries: pyroute2 took 3.5 s to dump it, this takes milliseconds). A delete sends
back the entry's own original-tuple attribute, byte for byte.
"""
from __future__ import annotations

import ctypes
import errno
import ipaddress
import logging
import os
import socket
import struct
import threading
from typing import Callable, Iterator, NamedTuple, Optional

from .policy.evaluate import PROTO_NUMBERS

log = logging.getLogger(__name__)
NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE = 1, 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
CTA_TUPLE_ORIG, CTA_PROTOINFO = 1, 4
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_PROTO_NUM, CTA_PROTO_DST_PORT = 1, 3
CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_STATE = 1, 1
CLOSED_TCP = (7, 8)      # TIME_WAIT, CLOSE: finished connections, nothing left to cut
CLONE_NEWNET = 0x40000000


class Entry(NamedTuple):
    family: int
    src: str
    dst: str
    proto: int
    dport: Optional[int]
    tcp_state: Optional[int]
    orig: bytes                 # the CTA_TUPLE_ORIG attribute as the kernel sent it


def _attrs(buf: bytes, off: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, value offset, value end) of each attribute in buf[off:end]."""
    while off + 4 <= end:
        length, atype = struct.unpack_from("HH", buf, off)
        if length < 4:
            return
        yield atype & 0x3FFF, off + 4, off + length
        off += (length + 3) & ~3


def _parse(buf: bytes, off: int, end: int, family: int) -> Optional[Entry]:
    src = dst = None
    proto, dport, state, orig = 0, None, None, b""
    for atype, vs, ve in _attrs(buf, off, end):
        if atype == CTA_TUPLE_ORIG:
            orig = buf[vs - 4:ve]
            for t, s, e in _attrs(buf, vs, ve):
                if t == CTA_TUPLE_IP:
                    for it, i_s, i_e in _attrs(buf, s, e):
                        if it in (1, 3):
                            src = str(ipaddress.ip_address(buf[i_s:i_e]))
                        elif it in (2, 4):
                            dst = str(ipaddress.ip_address(buf[i_s:i_e]))
                elif t == CTA_TUPLE_PROTO:
                    for pt, p_s, p_e in _attrs(buf, s, e):
                        if pt == CTA_PROTO_NUM:
                            proto = buf[p_s]
                        elif pt == CTA_PROTO_DST_PORT:
                            dport = struct.unpack_from(">H", buf, p_s)[0]
        elif atype == CTA_PROTOINFO:
            for t, s, e in _attrs(buf, vs, ve):
                if t == CTA_PROTOINFO_TCP:
                    for tt, t_s, _ in _attrs(buf, s, e):
                        if tt == CTA_PROTOINFO_TCP_STATE:
                            state = buf[t_s]
    if src is None or dst is None or not orig:
        return None
    return Entry(family, src, dst, proto, dport, state, orig)


def _message(mtype: int, flags: int, family: int, payload: bytes = b"", seq: int = 0) -> bytes:
    body = struct.pack("BBH", family, 0, 0) + payload
    return struct.pack("IHHII", 16 + len(body), (NFNL_SUBSYS_CTNETLINK << 8) | mtype, flags, seq, 0) + body


def open_socket(netns: Optional[str] = None) -> socket.socket:
    """A ctnetlink socket in our namespace, or in /var/run/netns/<netns> (tests): opened in a
    thread that joins the namespace and ends, so no other thread ever changes namespace."""
    if netns is None:
        return _new_socket()
    box: dict = {}

    def inside():
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {netns}")
            finally:
                os.close(fd)
            box["sock"] = _new_socket()
        except OSError as err:
            box["err"] = err
    t = threading.Thread(target=inside)
    t.start()
    t.join()
    if "err" in box:
        raise box["err"]
    return box["sock"]


def _new_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((0, 0))
    sock.settimeout(10)
    return sock


def dump(sock: socket.socket) -> list[Entry]:
    """Every conntrack entry, both families."""
    sock.send(_message(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, socket.AF_UNSPEC, seq=1))
    out: list[Entry] = []
    while True:
        buf = sock.recv(1 << 20)
        off = 0
        while off + 16 <= len(buf):
            length, mtype = struct.unpack_from("IH", buf, off)
            if length < 16:
                return out
            if mtype == NLMSG_DONE:
                return out
            if mtype == NLMSG_ERROR:
                code = -struct.unpack_from("i", buf, off + 16)[0]
                if code:
                    raise OSError(code, f"conntrack dump: {os.strerror(code)}")
            elif mtype & 0xFF == 0 or mtype & 0xFF == IPCTNL_MSG_CT_GET:   # IPCTNL_MSG_CT_NEW replies
                entry = _parse(buf, off + 20, off + length, buf[off + 16])
                if entry is not None:
                    out.append(entry)
            off += (length + 3) & ~3


def delete(sock: socket.socket, entries: list[Entry], batch: int = 100) -> int:
    """Delete entries, in batches; the number the kernel deleted (gone meanwhile is fine)."""
    done = 0
    for i in range(0, len(entries), batch):
        chunk = entries[i:i + batch]
        sock.send(b"".join(_message(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, e.family, e.orig, seq=n + 1)
                           for n, e in enumerate(chunk)))
        acked = 0
        while acked < len(chunk):
            buf = sock.recv(1 << 20)
            off = 0
            while off + 16 <= len(buf):
                length, mtype = struct.unpack_from("IH", buf, off)
                if length < 16:
                    break
                if mtype == NLMSG_ERROR:
                    acked += 1
                    code = -struct.unpack_from("i", buf, off + 16)[0]
                    if code == 0:
                        done += 1
                    elif code != errno.ENOENT:
                        log.warning("conntrack delete failed: %s", os.strerror(code))
                off += (length + 3) & ~3
    return done


def cut(allowed: Callable[[str, str, str, Optional[int]], bool], local_ips: set,
        netns: Optional[str] = None) -> int:
    """Delete entries from/to `local_ips` that `allowed` refuses; the number deleted.
    `netns`: another namespace's table (tests); None: our own."""
    with open_socket(netns) as sock:
        doomed = []
        for e in dump(sock):
            if e.src not in local_ips and e.dst not in local_ips:
                continue
            if e.proto == socket.IPPROTO_TCP and e.tcp_state in CLOSED_TCP:
                continue
            protocol = PROTO_NUMBERS.get(e.proto, f"proto-{e.proto}")
            port = e.dport if e.proto in PROTO_NUMBERS else None
            if not allowed(e.src, e.dst, protocol, port):
                doomed.append(e)
        return delete(sock, doomed)
