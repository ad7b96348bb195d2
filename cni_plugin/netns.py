"""Looking inside the pod's network namespace from the (single-threaded) plugin process.

setns(2) in-process: Python 3.11 has no os.setns, so one libc call through ctypes; helpers
spawned while inside inherit the pod's namespace, which is how CHECK runs `ip` there.
"""
import os

from .errors import CniError, INVALID_ENVIRONMENT

CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):  # Python >= 3.12
        os.setns(fd, CLONE_NEWNET)
        return
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def cannot_open(path: str, why: str) -> CniError:
    return CniError(INVALID_ENVIRONMENT, f"CNI_NETNS {path} cannot be opened: {why}",
                    "the pod sandbox's network namespace is gone or the path is wrong")


def cannot_enter(path: str, why: str) -> CniError:
    return CniError(INVALID_ENVIRONMENT, f"CNI_NETNS {path} is not a network namespace: {why}",
                    "pass the path of the sandbox's netns, e.g. /var/run/netns/<name>")


class inside:
    """`with inside(path):` run the block in that network namespace, then come back."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            target = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            os.close(self._home)
            raise cannot_open(self.path, err.strerror) from None
        try:
            _setns(target)
        except OSError as err:
            os.close(self._home)
            raise cannot_enter(self.path, err.strerror) from None
        finally:
            os.close(target)
        return self

    def __exit__(self, *exc):
        try:
            _setns(self._home)
        finally:
            os.close(self._home)


def interface_exists(path: str, ifname: str) -> bool:
    import _socket
    with inside(path):
        try:
            _socket.if_nametoindex(ifname)
            return True
        except OSError:
            return False
