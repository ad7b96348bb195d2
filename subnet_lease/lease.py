"""The lease record, and its flannel-compatible encodings.

A lease is plain data: the daemon computes the datapath from a set of these and
nothing else. The etcd key is flannel's (`10.244.3.0-24`, dual-stack
`10.244.3.0-24&fc00::-64`), the value flannel's lease JSON.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from typing import Literal, Optional

IPv4Network = ipaddress.IPv4Network
IPv6Network = ipaddress.IPv6Network


class LeaseFormatError(ValueError):
    """A key or value in the store is not a lease we understand."""


@dataclasses.dataclass(frozen=True, slots=True)
class Lease:
    subnet: Optional[IPv4Network]
    public_ip: Optional[ipaddress.IPv4Address]
    backend_type: str = "vxlan"
    # BackendData of a vxlan lease: {"VNI": 1, "VtepMAC": "aa:bb:.."}; kept as a dict so
    # other backend types pass through untouched.
    backend_data: dict = dataclasses.field(default_factory=dict, hash=False, compare=True)
    ipv6_subnet: Optional[IPv6Network] = None
    public_ipv6: Optional[ipaddress.IPv6Address] = None
    backend_v6_data: dict = dataclasses.field(default_factory=dict, hash=False, compare=True)
    # Store bookkeeping: the etcd lease ID (None = a reservation, never expires) and the
    # seconds left on it when read; the Kubernetes node name in kube mode.
    lease_id: Optional[int] = dataclasses.field(default=None, compare=False)
    ttl: Optional[int] = dataclasses.field(default=None, compare=False)
    node_name: Optional[str] = dataclasses.field(default=None, compare=False)
    # Slots, not a __dict__: a node holds a Lease per peer (5,000 and more) for as long as it runs.
    _key: Optional[str] = dataclasses.field(default=None, init=False, repr=False, compare=False)

    @property
    def key(self) -> str:
        # Cached: the daemon looks leases up by key tens of thousands of times per reconcile at
        # 5,000 peers.
        key = self._key
        if key is None:
            key = subnet_key(self.subnet, self.ipv6_subnet)
            object.__setattr__(self, "_key", key)
        return key

    @property
    def vtep_mac(self) -> Optional[str]:
        mac = self.backend_data.get("VtepMAC")
        return mac.lower() if isinstance(mac, str) else None

    @property
    def vtep_mac_v6(self) -> Optional[str]:
        mac = self.backend_v6_data.get("VtepMAC")
        return mac.lower() if isinstance(mac, str) else None

    @property
    def vni(self) -> Optional[int]:
        vni = self.backend_data.get("VNI")
        return vni if isinstance(vni, int) else None

    def to_json(self) -> str:
        """flannel's lease JSON (the etcd value, and the kube annotations' content)."""
        doc: dict = {}
        if self.public_ip is not None:
            doc["PublicIP"] = str(self.public_ip)
        if self.public_ipv6 is not None:
            doc["PublicIPv6"] = str(self.public_ipv6)
        doc["BackendType"] = self.backend_type
        if self.backend_data:
            doc["BackendData"] = self.backend_data
        if self.backend_v6_data:
            doc["BackendV6Data"] = self.backend_v6_data
        return json.dumps(doc, separators=(",", ":"))


@dataclasses.dataclass(frozen=True)
class LeaseEvent:
    """One change seen by a watch. `removed` carries the last known lease."""
    kind: Literal["added", "removed"]
    lease: Lease


def ip_text(addr) -> str:
    """An address's canonical text, as str() gives it; IPv4 without ipaddress' slow str()
    (it runs three times per peer per reconcile at 5,000 peers)."""
    return "%d.%d.%d.%d" % tuple(addr.packed) if addr.version == 4 else str(addr)


def subnet_key(subnet: Optional[IPv4Network], ipv6_subnet: Optional[IPv6Network] = None) -> str:
    parts = []
    if subnet is not None:
        parts.append(f"{ip_text(subnet.network_address)}-{subnet.prefixlen}")
    if ipv6_subnet is not None:
        parts.append(f"{ipv6_subnet.network_address}-{ipv6_subnet.prefixlen}")
    if not parts:
        raise ValueError("a lease needs an IPv4 or an IPv6 subnet")
    return "&".join(parts)


def parse_subnet_key(key: str) -> tuple[Optional[IPv4Network], Optional[IPv6Network]]:
    """`10.244.3.0-24` or `10.244.3.0-24&fc00::-64` (the last path element of the etcd key)."""
    v4 = v6 = None
    for part in key.rsplit("/", 1)[-1].split("&"):
        addr, sep, plen = part.rpartition("-")
        if not sep or not plen.isdigit():
            raise LeaseFormatError(f"subnet key {key!r}: expected ADDRESS-PREFIXLEN")
        net = _fast_v4_network(addr, plen)
        if net is None:
            try:
                net = ipaddress.ip_network(f"{addr}/{plen}")
            except ValueError as err:
                raise LeaseFormatError(f"subnet key {key!r}: {err}") from None
        if net.version == 4:
            v4 = net
        else:
            v6 = net
    return v4, v6


# A strict dotted quad (what ipaddress accepts: no leading zeros, each octet ≤ 255), so that
# the quick parse below only ever sees text ipaddress would read the same way.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_V4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def _aton(text: str) -> bytes:
    return bytes(map(int, text.split(".")))


def _fast_v4(text: str) -> Optional[ipaddress.IPv4Address]:
    """IPv4Address of a dotted quad, ~4x quicker than ipaddress' parser (a start-up at 5,000
    peers parses 10,000 of them); None for anything else, which then takes ipaddress' own path
    and errors."""
    return ipaddress.IPv4Address(_aton(text)) if _V4.fullmatch(text) else None


def _fast_v4_network(addr: str, plen: str) -> Optional[IPv4Network]:
    if len(plen) > 2 or not _V4.fullmatch(addr):
        return None
    try:
        return IPv4Network((int.from_bytes(_aton(addr), "big"), int(plen)))
    except ValueError:          # host bits set, prefix > 32: ipaddress' own path says so
        return None


_MAC = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")
_VNI_MAX = (1 << 24) - 1


def _bad(where: str, labels: dict, field: str, value, want: str) -> LeaseFormatError:
    return LeaseFormatError(f"{where}: {labels.get(field, field)} {value!r} is not {want}")


def _ip_field(where: str, labels: dict, fields: dict, field: str, version: int):
    raw = fields.get(field)
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise _bad(where, labels, field, raw, "an IP address")
    if version == 4:
        addr = _fast_v4(raw)
        if addr is not None:
            return addr
    try:
        addr = ipaddress.ip_address(raw)
    except ValueError:
        raise _bad(where, labels, field, raw, "an IP address") from None
    if addr.version != version:
        raise _bad(where, labels, field, raw, f"IPv{version}")
    return addr


def _backend_field(where: str, labels: dict, fields: dict, field: str) -> dict:
    data = fields.get(field)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _bad(where, labels, field, data, "a JSON object")
    mac = data.get("VtepMAC")
    if mac is not None and not (isinstance(mac, str) and _MAC.fullmatch(mac)):
        raise LeaseFormatError(f"{where}: {labels.get(field, field)} VtepMAC {mac!r} is not a "
                               f"MAC address like aa:bb:cc:dd:ee:ff")
    vni = data.get("VNI")
    if vni is not None and (isinstance(vni, bool) or not isinstance(vni, int) or not 0 <= vni <= _VNI_MAX):
        raise LeaseFormatError(f"{where}: {labels.get(field, field)} VNI {vni!r} is not an "
                               f"integer between 0 and {_VNI_MAX}")
    return data


def build_lease(where: str, fields: dict, *, subnet: Optional[IPv4Network],
                ipv6_subnet: Optional[IPv6Network], labels: Optional[dict] = None,
                lease_id: Optional[int] = None, ttl: Optional[int] = None,
                node_name: Optional[str] = None) -> Lease:
    """The one builder of a Lease from flannel's fields (PublicIP, PublicIPv6, BackendType,
    BackendData, BackendV6Data), as decoded JSON values; both backends go through it.

    `where` names the record in errors (an etcd key, a Node); `labels` renames a field in
    errors (kube: the annotation it came from). Anything the daemon could trip over later
    (BackendData that is not an object, a VtepMAC that is not a MAC, a VNI that is not an
    int) raises LeaseFormatError naming the record, the field and the value.
    """
    labels = labels or {}
    backend_type = fields.get("BackendType") or "vxlan"
    if not isinstance(backend_type, str):
        raise _bad(where, labels, "BackendType", backend_type, "a string")
    return Lease(
        subnet=subnet,
        public_ip=_ip_field(where, labels, fields, "PublicIP", 4),
        backend_type=backend_type,
        backend_data=_backend_field(where, labels, fields, "BackendData"),
        ipv6_subnet=ipv6_subnet,
        public_ipv6=_ip_field(where, labels, fields, "PublicIPv6", 6),
        backend_v6_data=_backend_field(where, labels, fields, "BackendV6Data"),
        lease_id=lease_id,
        ttl=ttl,
        node_name=node_name,
    )


def lease_from_json(key: str, value: str | bytes, *, lease_id: Optional[int] = None,
                    ttl: Optional[int] = None) -> Lease:
    """A lease from its etcd key and flannel's lease JSON; LeaseFormatError if either is bad."""
    v4, v6 = parse_subnet_key(key)
    try:
        doc = json.loads(value)
    except ValueError as err:
        raise LeaseFormatError(f"lease {key!r}: value is not JSON ({err})") from None
    if not isinstance(doc, dict):
        raise LeaseFormatError(f"lease {key!r}: value is not a JSON object")
    return build_lease(f"lease {key!r}", doc, subnet=v4, ipv6_subnet=v6, lease_id=lease_id, ttl=ttl)
