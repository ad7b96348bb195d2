"""net-conf.json: flannel's network configuration, parsed into one typed value.

Field names, defaults and checks are flannel's (pkg/subnet/config.go): SubnetLen is 24 when
the Network is /22 or wider, else the Network's prefix + 2; SubnetMin skips the first subnet;
SubnetMax is the last one; both must lie inside the Network and on a SubnetLen boundary.
Unlike flannel, a missing Backend means vxlan. Every refusal names the field, the value and
the rule it breaks.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
from typing import Optional, Union

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

KNOWN_FIELDS = {"Network", "SubnetLen", "SubnetMin", "SubnetMax", "EnableIPv4", "EnableIPv6",
                "IPv6Network", "IPv6SubnetLen", "IPv6SubnetMin", "IPv6SubnetMax", "Backend",
                "EnableNFTables"}


class ConfigError(ValueError):
    """The network config breaks a rule; the message names the field, the value and the rule."""


@dataclasses.dataclass(frozen=True)
class BackendConfig:
    type: str = "vxlan"
    vni: int = 1
    port: int = 8472
    gbp: bool = False
    direct_routing: bool = False
    mtu: Optional[int] = None          # None: underlay MTU minus the encapsulation overhead
    learning: bool = False


@dataclasses.dataclass(frozen=True)
class NetConfig:
    network: Optional[ipaddress.IPv4Network]
    subnet_len: int = 24
    subnet_min: Optional[ipaddress.IPv4Address] = None
    subnet_max: Optional[ipaddress.IPv4Address] = None
    enable_ipv4: bool = True
    enable_ipv6: bool = False
    ipv6_network: Optional[ipaddress.IPv6Network] = None
    ipv6_subnet_len: int = 64
    ipv6_subnet_min: Optional[ipaddress.IPv6Address] = None
    ipv6_subnet_max: Optional[ipaddress.IPv6Address] = None
    backend: BackendConfig = BackendConfig()

    def to_dict(self) -> dict:
        """flannel's net-conf.json form (what `etcdctl put <prefix>/config` takes)."""
        doc: dict = {}
        if self.network is not None:
            doc.update(Network=str(self.network), SubnetLen=self.subnet_len,
                       SubnetMin=str(self.subnet_min), SubnetMax=str(self.subnet_max))
        doc["EnableIPv4"] = self.enable_ipv4
        doc["EnableIPv6"] = self.enable_ipv6
        if self.ipv6_network is not None:
            doc.update(IPv6Network=str(self.ipv6_network), IPv6SubnetLen=self.ipv6_subnet_len,
                       IPv6SubnetMin=str(self.ipv6_subnet_min), IPv6SubnetMax=str(self.ipv6_subnet_max))
        b = self.backend
        backend = {"Type": b.type, "VNI": b.vni, "Port": b.port, "GBP": b.gbp,
                   "DirectRouting": b.direct_routing}
        if b.mtu is not None:
            backend["MTU"] = b.mtu
        if b.learning:
            backend["Learning"] = True
        doc["Backend"] = backend
        return doc


def parse_net_config(text: str | bytes) -> NetConfig:
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise ConfigError(f"net-conf.json is not valid JSON: {err}") from None
    if not isinstance(doc, dict):
        raise ConfigError("net-conf.json must be a JSON object such as "
                          '{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}')
    return net_config_from_dict(doc)


def load_net_config(path: str) -> NetConfig:
    """Read and check a net-conf.json file (kube mode's --net-config-path)."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as err:
        raise ConfigError(f"cannot read the network config {path}: {err.strerror}; "
                          f"mount kube-flannel-cfg there or pass --net-config-path") from None
    try:
        return parse_net_config(text)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def _network(doc: dict, field: str, version: int):
    raw = doc.get(field)
    if raw in (None, ""):
        return None
    example = "10.244.0.0/16" if version == 4 else "fc00::/48"
    if not isinstance(raw, str):     # ipaddress would take a number (or true) as an address
        raise ConfigError(f"{field} {raw!r} must be a string; write it like \"{example}\"")
    try:
        net = ipaddress.ip_network(raw, strict=True)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{field} {raw!r} is not a CIDR network ({err}); "
                          f'write it like "{example}"') from None
    if net.version != version:
        raise ConfigError(f"{field} {raw!r} must be an IPv{version} network")
    return net


def _bool(doc: dict, field: str, default: bool) -> bool:
    raw = doc.get(field, default)
    if not isinstance(raw, bool):
        raise ConfigError(f"{field} {raw!r} must be true or false")
    return raw


def _int(doc: dict, field: str, default: int) -> int:
    raw = doc.get(field, default)
    if raw is None or raw == 0:
        return default
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise ConfigError(f"{field} {raw!r} must be an integer")
    return raw


def _subnet_len(doc: dict, field: str, net, bits: int) -> int:
    """flannel's rule: given, it must fit at least four times and leave room for hosts; else default."""
    max_len = bits - 2          # a /30 (v4) or /126 (v6): tunnel and bridge addresses per host
    default_len = 24 if bits == 32 else 64
    if field in doc and doc[field] not in (None, 0):
        raw = doc[field]
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise ConfigError(f"{field} {raw!r} must be an integer prefix length such as {default_len}")
        if raw > max_len:
            raise ConfigError(f"{field} {raw} is too long: it must be at most {max_len} "
                              f"so every node gets room for hosts")
        if raw < net.prefixlen + 2:
            raise ConfigError(f"{field} {raw} is too short for the /{net.prefixlen} network: it must be "
                              f"at least {net.prefixlen + 2} so the network holds at least four subnets")
        return raw
    if net.prefixlen > max_len - 2:
        raise ConfigError(f"{'Network' if bits == 32 else 'IPv6Network'} {net} is too small: "
                          f"the minimum useful prefix is /{max_len - 2}")
    if net.prefixlen <= default_len - 2:
        return default_len
    return net.prefixlen + 2


def _bound(doc: dict, field: str, net, subnet_len: int, default):
    raw = doc.get(field)
    if raw in (None, ""):
        return default
    try:
        if not isinstance(raw, str):     # ipaddress would take a number as an address
            raise TypeError(raw)
        addr = ipaddress.ip_address(raw)
    except (ValueError, TypeError):
        raise ConfigError(f"{field} {raw!r} is not an IP address; write it like "
                          f'"{default}"') from None
    if addr.version != net.version or addr not in net:
        raise ConfigError(f"{field} {raw} is not in the range of the network {net}")
    size = 1 << (net.max_prefixlen - subnet_len)
    if int(addr) % size:
        raise ConfigError(f"{field} {raw} is not on a /{subnet_len} boundary "
                          f"(SubnetLen); e.g. {ipaddress.ip_address(int(addr) - int(addr) % size)}")
    return addr


def _range(doc: dict, prefix: str, net, subnet_len: int):
    size = 1 << (net.max_prefixlen - subnet_len)
    # The first subnet is skipped: its .0 would be the Network's own address.
    lo = _bound(doc, f"{prefix}SubnetMin", net, subnet_len, net.network_address + size)
    hi = _bound(doc, f"{prefix}SubnetMax", net, subnet_len,
                ipaddress.ip_address(int(net.broadcast_address) + 1 - size))
    if lo > hi:
        raise ConfigError(f"{prefix}SubnetMin {lo} is above {prefix}SubnetMax {hi}: "
                          f"no subnet can be handed out")
    return lo, hi


def _backend(raw) -> BackendConfig:
    if raw is None:
        return BackendConfig()
    if not isinstance(raw, dict):
        raise ConfigError(f"Backend {raw!r} must be an object such as {{\"Type\": \"vxlan\"}}")
    btype = str(raw.get("Type", "vxlan") or "vxlan").lower()
    if btype != "vxlan":
        raise ConfigError(f"Backend.Type {raw.get('Type')!r} is not supported; use \"vxlan\"")
    vni = raw.get("VNI", 1)
    if vni == 0:
        vni = 1
    if not isinstance(vni, int) or isinstance(vni, bool) or not 0 < vni < 2 ** 24:
        raise ConfigError(f"Backend.VNI {vni!r} must be an integer from 1 to 16777215")
    port = raw.get("Port", 0) or 8472
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ConfigError(f"Backend.Port {port!r} must be a UDP port from 1 to 65535")
    mtu = raw.get("MTU")
    if mtu == 0:
        mtu = None
    if mtu is not None and (not isinstance(mtu, int) or isinstance(mtu, bool) or not 576 <= mtu <= 65535):
        raise ConfigError(f"Backend.MTU {mtu!r} must be an integer from 576 to 65535")
    flags = {}
    for field in ("GBP", "DirectRouting", "Learning"):
        value = raw.get(field, False)
        if not isinstance(value, bool):
            raise ConfigError(f"Backend.{field} {value!r} must be true or false")
        flags[field] = value
    return BackendConfig(type=btype, vni=vni, port=port, gbp=flags["GBP"],
                         direct_routing=flags["DirectRouting"], mtu=mtu, learning=flags["Learning"])


ADDRESS_EXAMPLES = {"Network": "10.244.0.0/16", "SubnetMin": "10.244.1.0", "SubnetMax": "10.244.255.0",
                    "IPv6Network": "fc00::/48", "IPv6SubnetMin": "fc00:0:0:1::", "IPv6SubnetMax": "fc00:0:0:ff00::"}


def net_config_from_dict(doc: dict) -> NetConfig:
    enable_ipv4 = _bool(doc, "EnableIPv4", True)
    enable_ipv6 = _bool(doc, "EnableIPv6", False)
    if not (enable_ipv4 or enable_ipv6):
        raise ConfigError("EnableIPv4 and EnableIPv6 are both false: enable at least one")
    # Address fields are strings, as flannel's JSON decoding requires, even for a family that is
    # off (ipaddress alone would take a number; a stray list or object is a typo worth naming).
    for field, example in ADDRESS_EXAMPLES.items():
        raw = doc.get(field)
        if raw is not None and not isinstance(raw, str):
            raise ConfigError(f'{field} {raw!r} must be a string such as "{example}"')
    network = _network(doc, "Network", 4)
    subnet_len, smin, smax = 24, None, None
    if enable_ipv4:
        if network is None:
            raise ConfigError('Network is missing: set it to the pod network, e.g. "10.244.0.0/16"')
        subnet_len = _subnet_len(doc, "SubnetLen", network, 32)
        smin, smax = _range(doc, "", network, subnet_len)
    ipv6_network = _network(doc, "IPv6Network", 6)
    v6_len, v6_min, v6_max = 64, None, None
    if enable_ipv6:
        if ipv6_network is None:
            raise ConfigError('IPv6Network is missing while EnableIPv6 is true: '
                              'set it, e.g. "fc00::/48"')
        v6_len = _subnet_len(doc, "IPv6SubnetLen", ipv6_network, 128)
        v6_min, v6_max = _range(doc, "IPv6", ipv6_network, v6_len)
    return NetConfig(
        network=network if enable_ipv4 else network,
        subnet_len=subnet_len,
        subnet_min=smin,
        subnet_max=smax,
        enable_ipv4=enable_ipv4,
        enable_ipv6=enable_ipv6,
        ipv6_network=ipv6_network,
        ipv6_subnet_len=v6_len,
        ipv6_subnet_min=v6_min,
        ipv6_subnet_max=v6_max,
        backend=_backend(doc.get("Backend")),
    )
