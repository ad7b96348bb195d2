"""Sockets in another network namespace, opened without forking (overlayd.netlink's sockets).

Used by overlayd.netlink_wire (the rtnetlink socket) and overlayd.netlink (the link watcher).
"""
from __future__ import annotations

import ctypes
import os
import socket
import threading
from typing import Optional

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/var/run/netns"


def socket_in_netns(netns: Optional[str], family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket that lives in the named network namespace (or a path to one; None: ours).

    A short-lived thread enters the namespace (setns moves only the calling thread), opens the
    socket and ends; the socket stays in the namespace it was made in. No fork (pyroute2's
    create_socket forks a child, which costs a process and, in a process with Python signal
    handlers, lets the child run the parent's code when it is sent SIGTERM).
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
