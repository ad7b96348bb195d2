"""overlayd's subnet file (flannel's subnet.env): the node's share of the pod network."""
from .errors import CniError, INVALID_CONFIG, TRY_AGAIN_LATER

DEFAULT_PATH = "/run/flannel/subnet.env"


class SubnetEnv:
    """FLANNEL_NETWORK / FLANNEL_SUBNET / FLANNEL_MTU / FLANNEL_IPMASQ (+ the IPv6 pair)."""

    __slots__ = ("network", "subnet", "mtu", "ipmasq", "ipv6_network", "ipv6_subnet")

    def __init__(self, network, subnet, mtu, ipmasq, ipv6_network=None, ipv6_subnet=None):
        self.network, self.subnet, self.mtu, self.ipmasq = network, subnet, mtu, ipmasq
        self.ipv6_network, self.ipv6_subnet = ipv6_network, ipv6_subnet

    def __eq__(self, other):
        return isinstance(other, SubnetEnv) and all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self):
        return "SubnetEnv(" + ", ".join(f"{s}={getattr(self, s)!r}" for s in self.__slots__) + ")"


def _not_ready(path: str) -> CniError:
    return CniError(TRY_AGAIN_LATER, f"subnet file {path} does not exist yet",
                    "overlayd on this node writes it once it holds a subnet lease; "
                    "check that the overlayd pod on this node is running and look at its log")


def read(path: str) -> SubnetEnv:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise _not_ready(path) from None
    except OSError as err:
        raise CniError(TRY_AGAIN_LATER, f"cannot read subnet file {path}: {err.strerror}",
                       "check overlayd on this node and the file's permissions") from None
    return parse(text, path)


def parse(text: str, path: str = "subnet file") -> SubnetEnv:
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if sep:
            values[name.strip()] = value.strip().strip('"')

    def bad(var, why):
        return CniError(INVALID_CONFIG, f"{path}: {var} {why}",
                        "overlayd writes this file; restart overlayd on this node so it rewrites it")

    has_v4 = "FLANNEL_SUBNET" in values or "FLANNEL_NETWORK" in values
    has_v6 = "FLANNEL_IPV6_SUBNET" in values or "FLANNEL_IPV6_NETWORK" in values
    if not has_v4 and not has_v6:
        raise bad("FLANNEL_SUBNET", "is missing")
    for var, is_v6 in (("FLANNEL_NETWORK", False), ("FLANNEL_SUBNET", False),
                       ("FLANNEL_IPV6_NETWORK", True), ("FLANNEL_IPV6_SUBNET", True)):
        if (has_v6 if is_v6 else has_v4):
            value = values.get(var)
            if not value:
                raise bad(var, "is missing")
            if not _is_cidr(value, is_v6):
                raise bad(var, f"is {value!r}, not an IPv{6 if is_v6 else 4} prefix like "
                               f"{'fd00:10:244:3::1/64' if is_v6 else '10.244.3.1/24'}")
    mtu_text = values.get("FLANNEL_MTU")
    if not mtu_text:
        raise bad("FLANNEL_MTU", "is missing")
    try:
        mtu = int(mtu_text)
    except ValueError:
        raise bad("FLANNEL_MTU", f"is {mtu_text!r}, not a number") from None
    if not 576 <= mtu <= 65535:
        raise bad("FLANNEL_MTU", f"is {mtu}, outside 576..65535")
    ipmasq = values.get("FLANNEL_IPMASQ", "false").lower()
    if ipmasq not in ("true", "false"):
        raise bad("FLANNEL_IPMASQ", f"is {ipmasq!r}, not true or false")
    return SubnetEnv(values.get("FLANNEL_NETWORK"), values.get("FLANNEL_SUBNET"), mtu, ipmasq == "true",
                     values.get("FLANNEL_IPV6_NETWORK"), values.get("FLANNEL_IPV6_SUBNET"))


def _is_cidr(value: str, v6: bool) -> bool:
    # Cheap syntax check (the `ipaddress` module costs ~5 ms to import); host-local validates fully.
    addr, sep, plen = value.partition("/")
    if not sep or not plen.isdigit() or int(plen) > (128 if v6 else 32):
        return False
    if v6:
        return ":" in addr and all(c in "0123456789abcdefABCDEF:." for c in addr)
    parts = addr.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) <= 255 for p in parts)
