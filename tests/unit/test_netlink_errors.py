"""The one errno-to-meaning mapping both netlink transports use (overlayd.netlink_errors)."""
import errno

from overlayd.errors import DatapathError, DeviceMissing
from overlayd.netlink_errors import datapath_error, from_exception, is_gone


class NetlinkError(Exception):
    """pyroute2's shape: NetlinkError(code, text) with .code."""

    def __init__(self, code, text):
        super().__init__(code, text)
        self.code = code


def test_no_device_is_device_missing_on_both_transports():
    assert type(from_exception("add fdb", NetlinkError(errno.ENODEV, "No such device"))) is DeviceMissing
    assert type(from_exception("dump routes", OSError(errno.ENODEV, "No such device"))) is DeviceMissing
    assert type(datapath_error("add neigh", errno.ENODEV, "x")) is DeviceMissing


def test_other_errors_keep_the_errno_and_the_kernels_text():
    err = from_exception("add route 10.244.2.0/24", NetlinkError(errno.EINVAL, "Invalid argument"))
    assert type(err) is DatapathError and err.errno == errno.EINVAL
    assert str(err) == "add route 10.244.2.0/24: Invalid argument"
    err = from_exception("open netlink socket", OSError(errno.EPERM, "Operation not permitted"))
    assert err.errno == errno.EPERM and "Operation not permitted" in str(err)
    assert "File exists" in str(datapath_error("add", errno.EEXIST))


def test_already_gone_on_delete():
    for code in (errno.ENOENT, errno.ESRCH, errno.ENODEV, errno.EADDRNOTAVAIL):
        assert is_gone(code)
    assert not is_gone(errno.EEXIST) and not is_gone(errno.EPERM) and not is_gone(0)
