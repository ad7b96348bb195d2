"""A real VXLAN probe: an ICMP echo to each peer's VTEP, encapsulated by hand and sent over UDP.

    this node  --UDP to peer PublicIP:8472--> [VXLAN VNI | Ethernet to peer VtepMAC | IPv4 our
    VTEP .0 -> peer VTEP .0 | ICMP echo]  --> the peer's kernel decapsulates it on flannel.1 and
    answers through ITS route, ARP and FDB entries for us --> our flannel.1 --> a raw ICMP socket.

So a reply proves the underlay carries VXLAN both ways, the peer's device matches its lease and
the peer's entries for this node are right. It does not use this node's own entries for the
peer (the entries check looks at those), so the two findings stay apart.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import select
import socket
import struct
import time
from typing import Sequence

from .facts import Probe

PAYLOAD = b"overlayd-doctor"


@dataclasses.dataclass(frozen=True)
class Target:
    peer: str            # lease key
    public_ip: str
    vtep_ip: str
    vtep_mac: str


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame(*, vni: int, src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, ident: int, seq: int) -> bytes:
    """The UDP payload: VXLAN header, inner Ethernet, IPv4 and ICMP echo request."""
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + PAYLOAD
    icmp = icmp[:2] + struct.pack("!H", _checksum(icmp)) + icmp[4:]
    src, dst = ipaddress.IPv4Address(src_ip).packed, ipaddress.IPv4Address(dst_ip).packed
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), seq, 0, 64, socket.IPPROTO_ICMP, 0, src, dst)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) + b"\x08\x00"
    vxlan = struct.pack("!II", 0x08000000, vni << 8)
    return vxlan + eth + header + icmp


def parse_reply(packet: bytes) -> tuple[str, int, int] | None:
    """(source IP, ident, seq) of an ICMP echo reply as a raw socket receives it (IP header first)."""
    if len(packet) < 28:
        return None
    ihl = (packet[0] & 0x0F) * 4
    icmp_type, _, _, ident, seq = struct.unpack("!BBHHH", packet[ihl:ihl + 8])
    if icmp_type != 0:
        return None
    return socket.inet_ntoa(packet[12:16]), ident, seq


def probe(targets: Sequence[Target], *, vni: int, port: int, local_ip: str, src_mac: str, src_vtep_ip: str,
          timeout: float = 2.0, tries: int = 3) -> list[Probe]:
    """Send each target an encapsulated echo (up to `tries` times), wait for the replies."""
    if not targets:
        return []
    ident = int.from_bytes(os.urandom(2), "big")
    by_seq = {i + 1: t for i, t in enumerate(targets)}
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent_at: dict[int, float] = {}
    replied: dict[int, float] = {}
    errors: dict[int, str] = {}
    try:
        udp.bind((local_ip, 0))
        deadline = time.monotonic() + timeout
        for attempt in range(tries):
            for seq, t in by_seq.items():
                if seq in replied:
                    continue
                try:
                    udp.sendto(frame(vni=vni, src_mac=src_mac, dst_mac=t.vtep_mac, src_ip=src_vtep_ip,
                                     dst_ip=t.vtep_ip, ident=ident, seq=seq), (t.public_ip, port))
                    sent_at.setdefault(seq, time.monotonic())
                except OSError as err:
                    errors[seq] = f"send: {err.strerror or err}"
            resend = min(deadline, time.monotonic() + timeout / tries)
            while len(replied) < len(by_seq) and time.monotonic() < resend:
                ready, _, _ = select.select([raw], [], [], max(0.0, resend - time.monotonic()))
                if not ready:
                    break
                got = parse_reply(raw.recv(2048))
                if got is None:
                    continue
                src, rid, seq = got
                if rid == ident and seq in by_seq and src == by_seq[seq].vtep_ip and seq not in replied:
                    replied[seq] = time.monotonic() - sent_at.get(seq, time.monotonic())
            if len(replied) == len(by_seq):
                break
    finally:
        raw.close()
        udp.close()
    return [Probe(peer=t.peer, public_ip=t.public_ip, vtep_ip=t.vtep_ip, replied=seq in replied,
                  rtt=replied.get(seq), error=errors.get(seq) or (None if seq in replied else
                                                                   f"no reply within {timeout:g}s"))
            for seq, t in by_seq.items()]
