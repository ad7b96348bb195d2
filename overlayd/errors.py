"""The project's own exceptions; layers above netlink never see a netlink socket's OSError."""


class OverlayError(Exception):
    """Base of overlayd's errors."""


class DatapathError(OverlayError):
    """A netlink request failed. `errno` is the kernel's answer, `what` the request."""

    def __init__(self, what: str, errno: int = 0, message: str = ""):
        self.what = what
        self.errno = errno
        super().__init__(f"{what}: {message or f'errno {errno}'}")


class DeviceMissing(DatapathError):
    """The vxlan device (or the underlay device) is not there."""


class SettingsError(OverlayError):
    """A flag or setting is wrong; the message names it and the fix."""
