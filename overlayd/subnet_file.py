"""subnet.env: the file the CNI plugin reads (flannel's variable names), written atomically."""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import tempfile
from typing import Optional


@dataclasses.dataclass(frozen=True)
class SubnetFile:
    network: Optional[ipaddress.IPv4Network]
    subnet: Optional[ipaddress.IPv4Interface]        # first host address / subnet length
    mtu: int
    ipmasq: bool
    ipv6_network: Optional[ipaddress.IPv6Network] = None
    ipv6_subnet: Optional[ipaddress.IPv6Interface] = None

    def render(self) -> str:
        lines = []
        if self.network is not None:
            lines.append(f"FLANNEL_NETWORK={self.network}")
        if self.subnet is not None:
            lines.append(f"FLANNEL_SUBNET={self.subnet}")
        if self.ipv6_network is not None:
            lines.append(f"FLANNEL_IPV6_NETWORK={self.ipv6_network}")
        if self.ipv6_subnet is not None:
            lines.append(f"FLANNEL_IPV6_SUBNET={self.ipv6_subnet}")
        lines.append(f"FLANNEL_MTU={self.mtu}")
        lines.append(f"FLANNEL_IPMASQ={'true' if self.ipmasq else 'false'}")
        return "\n".join(lines) + "\n"


def first_host(subnet: ipaddress.IPv4Network | ipaddress.IPv6Network):
    """flannel writes the subnet's first host address, e.g. 10.244.3.1/24."""
    return ipaddress.ip_interface(f"{subnet.network_address + 1}/{subnet.prefixlen}")


def write_subnet_file(path: str, content: SubnetFile) -> bool:
    """Write atomically (temp file, fsync, rename). Returns False if the content was already there."""
    text = content.render()
    try:
        with open(path) as f:
            if f.read() == text:
                return False
    except FileNotFoundError:
        pass
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".subnet.env.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return True


def read_subnet_file(path: str) -> dict[str, str]:
    """The variables of an existing subnet file ({} if there is none)."""
    values = {}
    try:
        with open(path) as f:
            for line in f:
                key, sep, value = line.strip().partition("=")
                if sep and key:
                    values[key] = value
    except FileNotFoundError:
        pass
    return values


def previous_subnet(path: str, family: int = 4):
    """The subnet an earlier run wrote (FLANNEL_SUBNET / FLANNEL_IPV6_SUBNET), None if absent or garbled."""
    raw = read_subnet_file(path).get("FLANNEL_IPV6_SUBNET" if family == 6 else "FLANNEL_SUBNET")
    try:
        net = ipaddress.ip_interface(raw).network if raw else None
    except ValueError:
        return None
    return net if net is not None and net.version == family else None
