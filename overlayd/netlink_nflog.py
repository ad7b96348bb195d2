"""Read denied packets from an nflog group (the rules `--network-policy-log-group N` adds).

A small nfnetlink_log client on a raw netlink socket: bind the group, ask for the packet's
headers, parse prefix and IP/transport headers into plain records. One listener per group
(the kernel's rule), in the network namespace it runs in: the node's.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
import struct
import time
from typing import Iterator, Optional

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET, NFULNL_MSG_CONFIG = 0, 1
NFULA_CFG_CMD, NFULA_CFG_MODE = 1, 2
NFULNL_CFG_CMD_BIND = 1
NFULNL_COPY_PACKET = 2
NFULA_PACKET_HDR, NFULA_PAYLOAD, NFULA_PREFIX = 1, 9, 10
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
PROTOS = {6: "tcp", 17: "udp", 132: "sctp", 1: "icmp", 58: "icmpv6"}


class NflogError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class Denied:
    time: float
    direction: str          # "in" or "eg": which check refused it (the prefix the rule carries)
    src: str
    dst: str
    protocol: str
    dport: Optional[int]

    def line(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.time))
        port = f" {self.dport}" if self.dport is not None else ""
        what = "ingress" if self.direction == "in" else "egress" if self.direction == "eg" else self.direction
        return f"{when} denied {what}: {self.src} -> {self.dst} {self.protocol}{port}"


def _attr(atype: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("HH", length, atype) + payload + b"\0" * ((4 - length % 4) % 4)


def _config(sock: socket.socket, group: int, attrs: bytes, seq: int) -> None:
    body = struct.pack("BBH", socket.AF_UNSPEC, 0, socket.htons(group)) + attrs
    hdr = struct.pack("IHHII", 16 + len(body), (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG,
                      NLM_F_REQUEST | NLM_F_ACK, seq, 0)
    sock.send(hdr + body)
    data = sock.recv(65536)
    _, mtype, _, _, _ = struct.unpack_from("IHHII", data)
    if mtype == NLMSG_ERROR:
        err = struct.unpack_from("i", data, 16)[0]
        if err:
            raise NflogError(f"nflog group {group}: {os.strerror(-err)}"
                             + (" (another reader holds this group)" if -err == 16 else ""))


def open_group(group: int) -> socket.socket:
    if not 1 <= group <= 65535:
        raise NflogError(f"nflog group {group} must be 1-65535 (the daemon's --network-policy-log-group)")
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 0))
    _config(sock, group, _attr(NFULA_CFG_CMD, struct.pack("B", NFULNL_CFG_CMD_BIND)), 1)
    _config(sock, group, _attr(NFULA_CFG_MODE, struct.pack(">IBB", 128, NFULNL_COPY_PACKET, 0)), 2)
    return sock


def parse_packet(payload: bytes, prefix: str, now: float) -> Optional[Denied]:
    if not payload:
        return None
    direction = prefix.rsplit(" ", 1)[-1] if prefix else ""
    version = payload[0] >> 4
    if version == 4 and len(payload) >= 20:
        ihl = (payload[0] & 0x0F) * 4
        proto = payload[9]
        src, dst = str(ipaddress.IPv4Address(payload[12:16])), str(ipaddress.IPv4Address(payload[16:20]))
        l4 = ihl
    elif version == 6 and len(payload) >= 40:
        proto = payload[6]
        src, dst = str(ipaddress.IPv6Address(payload[8:24])), str(ipaddress.IPv6Address(payload[24:40]))
        l4 = 40
    else:
        return None
    dport = None
    if proto in (6, 17, 132) and len(payload) >= l4 + 4:
        dport = struct.unpack_from(">H", payload, l4 + 2)[0]
    return Denied(now, direction, src, dst, PROTOS.get(proto, str(proto)), dport)


def read(sock: socket.socket, timeout: Optional[float] = None) -> Iterator[Denied]:
    """Denied packets as they arrive; stops after `timeout` seconds without one (None: never)."""
    sock.settimeout(timeout)
    while True:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return
        off = 0
        while off + 16 <= len(data):
            length, mtype = struct.unpack_from("IH", data, off)
            if length < 16:
                break
            if mtype == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET:
                payload, prefix = b"", ""
                a = off + 20
                end = off + length
                while a + 4 <= end:
                    alen, atype = struct.unpack_from("HH", data, a)
                    if alen < 4:
                        break
                    value = data[a + 4:a + alen]
                    atype &= 0x7FFF
                    if atype == NFULA_PAYLOAD:
                        payload = value
                    elif atype == NFULA_PREFIX:
                        prefix = value.rstrip(b"\0").decode(errors="replace")
                    a += (alen + 3) & ~3
                record = parse_packet(payload, prefix, time.time())
                if record is not None:
                    yield record
            off += (length + 3) & ~3
