"""net-conf.json: flannel's network configuration, parsed into one typed value.

Field names and defaults are flannel's. Unlike flannel, a missing Backend means vxlan.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
from typing import Optional


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


def parse_net_config(text: str | bytes) -> NetConfig:
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise ConfigError(f"net-conf.json is not valid JSON: {err}") from None
    if not isinstance(doc, dict):
        raise ConfigError("net-conf.json must be a JSON object such as "
                          '{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}')
    return net_config_from_dict(doc)


def _network(doc: dict, field: str, version: int):
    raw = doc.get(field)
    if raw is None:
        return None
    try:
        net = ipaddress.ip_network(raw, strict=True)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{field} {raw!r} is not a CIDR network ({err}); "
                          f'write it like "10.244.0.0/16"') from None
    if net.version != version:
        raise ConfigError(f"{field} {raw!r} must be an IPv{version} network")
    return net


def _backend(raw) -> BackendConfig:
    if raw is None:
        return BackendConfig()
    if not isinstance(raw, dict):
        raise ConfigError(f"Backend {raw!r} must be an object such as {{\"Type\": \"vxlan\"}}")
    btype = str(raw.get("Type", "vxlan")).lower()
    if btype != "vxlan":
        raise ConfigError(f"Backend.Type {raw.get('Type')!r} is not supported; use \"vxlan\"")
    vni = raw.get("VNI", 1)
    if not isinstance(vni, int) or isinstance(vni, bool) or not 0 < vni < 2 ** 24:
        raise ConfigError(f"Backend.VNI {vni!r} must be an integer from 1 to 16777215")
    port = raw.get("Port", 0) or 8472
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ConfigError(f"Backend.Port {port!r} must be a UDP port from 1 to 65535")
    mtu = raw.get("MTU")
    if mtu is not None and (not isinstance(mtu, int) or isinstance(mtu, bool) or not 576 <= mtu <= 65535):
        raise ConfigError(f"Backend.MTU {mtu!r} must be an integer from 576 to 65535")
    return BackendConfig(type=btype, vni=vni, port=port, gbp=bool(raw.get("GBP", False)),
                         direct_routing=bool(raw.get("DirectRouting", False)), mtu=mtu or None,
                         learning=bool(raw.get("Learning", False)))


def net_config_from_dict(doc: dict) -> NetConfig:
    network = _network(doc, "Network", 4)
    enable_ipv4 = bool(doc.get("EnableIPv4", True))
    if enable_ipv4 and network is None:
        raise ConfigError('Network is missing: set it to the pod network, e.g. "10.244.0.0/16"')
    default_len = 24 if network is None or network.prefixlen <= 22 else network.prefixlen + 2
    subnet_len = doc.get("SubnetLen", default_len)
    if network is not None and (not isinstance(subnet_len, int) or not network.prefixlen < subnet_len <= 30):
        raise ConfigError(f"SubnetLen {subnet_len!r} must be an integer longer than the Network's "
                          f"/{network.prefixlen} and at most 30")
    return NetConfig(
        network=network,
        subnet_len=subnet_len,
        enable_ipv4=enable_ipv4,
        enable_ipv6=bool(doc.get("EnableIPv6", False)),
        ipv6_network=_network(doc, "IPv6Network", 6),
        ipv6_subnet_len=doc.get("IPv6SubnetLen", 64),
        backend=_backend(doc.get("Backend")),
    )
