"""The one place that turns a netlink errno into meaning (overlayd.netlink's Wire and sockets).

- ENODEV: the device is not there: DeviceMissing (the daemon recreates it and reconciles in full).
- ENOENT, ESRCH, ENODEV, EADDRNOTAVAIL on a delete: already gone, which is what we wanted
  (`is_gone`; the caller decides whether its request was a delete).
- Anything else: DatapathError carrying the errno and the kernel's text.
"""
from __future__ import annotations

import errno as errno_mod
import os

from .errors import DatapathError, DeviceMissing

GONE = frozenset({errno_mod.ENOENT, errno_mod.ESRCH, errno_mod.ENODEV, errno_mod.EADDRNOTAVAIL})


def is_gone(code: int) -> bool:
    return code in GONE


def datapath_error(what: str, code: int, message: str = "") -> DatapathError:
    """The exception for a request `what` the kernel answered with errno `code`."""
    cls = DeviceMissing if code == errno_mod.ENODEV else DatapathError
    return cls(what, code, message or (os.strerror(code) if code else ""))


def error_code(err: BaseException) -> int:
    """The errno of an OSError (.errno), or of an exception with .code (pyroute2's NetlinkError
    shape, which tests and tools may still hand in); 0 if none."""
    return getattr(err, "code", None) or getattr(err, "errno", None) or 0


def from_exception(what: str, err: BaseException) -> DatapathError:
    """datapath_error for a failed call: an OSError (errno, text), or an exception shaped
    (code, text) with .code like pyroute2's NetlinkError."""
    code = error_code(err)
    args = getattr(err, "args", ())
    if hasattr(err, "code") and len(args) > 1:          # NetlinkError(code, text)
        message = str(args[1])
    else:
        message = getattr(err, "strerror", None) or str(err)
    return datapath_error(what, code, message)
