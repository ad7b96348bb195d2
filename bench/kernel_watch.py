"""What `ip monitor route neigh` sees, with timestamps: the first RTM_NEWROUTE of each IPv4 route,
RTM_NEWNEIGH of each IPv4 neighbour and of each FDB entry (AF_BRIDGE, keyed by MAC), in one
namespace. A thread reads the multicast socket; callers wait for a set of keys to be complete.

Keys: ("route", "10.1.2.0/24"), ("neigh", "10.1.2.0"), ("fdb", "0a:58:00:00:01:01").
"""
from __future__ import annotations

import errno
import select
import socket
import struct
import threading
import time
from typing import Iterable

from overlayd.netlink_wire import socket_in_netns

RTMGRP_NEIGH, RTMGRP_IPV4_ROUTE = 0x4, 0x40
RTM_NEWROUTE, RTM_NEWNEIGH = 24, 28
AF_INET, AF_BRIDGE = 2, 7
SO_RCVBUFFORCE = 33


def _attrs(data: bytes, offset: int, end: int) -> dict:
    out = {}
    while offset + 4 <= end:
        length, kind = struct.unpack_from("HH", data, offset)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return out


def parse(data: bytes) -> list[tuple]:
    """The keys of the route/neighbour/FDB additions in one netlink datagram."""
    keys, offset = [], 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("IH", data, offset)
        if length < 16:
            break
        body, end = offset + 16, offset + length
        if kind == RTM_NEWROUTE and data[body] == AF_INET:
            dst_len, table = data[body + 1], data[body + 4]
            a = _attrs(data, body + 12, end)
            if 15 in a:
                table = struct.unpack("I", a[15][:4])[0]
            if 1 in a and table == 254:
                keys.append(("route", f"{socket.inet_ntoa(a[1])}/{dst_len}"))
        elif kind == RTM_NEWNEIGH:
            family = data[body]
            a = _attrs(data, body + 12, end)
            if family == AF_INET and 1 in a and 2 in a:
                keys.append(("neigh", socket.inet_ntoa(a[1])))
            elif family == AF_BRIDGE and 1 in a and 2 in a:
                keys.append(("fdb", a[2].hex(":")))
        offset += (length + 3) & ~3
    return keys


class KernelWatch:
    """Subscribes before the daemon starts; seen[key] = monotonic time of the first addition."""

    def __init__(self, ns: str):
        self.sock = socket_in_netns(ns, socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 256 << 20)
        self.sock.bind((0, RTMGRP_IPV4_ROUTE | RTMGRP_NEIGH))
        self.seen: dict[tuple, float] = {}
        self.overflows = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, name="kernel-watch", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stop.is_set():
            if not select.select([self.sock], [], [], 0.1)[0]:
                continue
            try:
                data = self.sock.recv(1 << 20)
            except OSError as err:
                if err.errno == errno.ENOBUFS:
                    self.overflows += 1
                    continue
                raise
            now = time.monotonic()
            keys = parse(data)
            if keys:       # no notify: a waiter checking 15,000 keys per datagram would starve this reader
                with self.lock:
                    for key in keys:
                        self.seen.setdefault(key, now)

    def forget(self, keys: Iterable[tuple] = ()) -> None:
        with self.lock:
            if keys:
                for key in keys:
                    self.seen.pop(key, None)
            else:
                self.seen.clear()

    def wait_all(self, keys: Iterable[tuple], timeout: float) -> float:
        """The time the last of keys was first seen; TimeoutError naming how many are missing."""
        want = set(keys)
        missing = set(want)
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                missing = {k for k in missing if k not in self.seen}
                if not missing:
                    return max(self.seen[k] for k in want)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(missing)} of {len(want)} entries not seen within {timeout:.0f}s "
                                   f"(e.g. {sorted(missing)[:3]}; {self.overflows} socket overflows)")
            time.sleep(min(left, 0.02 if len(missing) < 10 else 0.1))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()
