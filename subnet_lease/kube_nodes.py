"""Kubernetes Node objects as flannel sees them: pure functions on plain JSON dicts.

flannel's node annotation keys under a prefix, the podCIDR(s), and the peer lease a node stands
for. No API calls here.
"""
from __future__ import annotations

import datetime
import ipaddress
import json
import logging
from typing import Optional

from .config import ConfigError
from .lease import Lease, LeaseFormatError, build_lease

log = logging.getLogger(__name__)


class Annotations:
    """flannel's node annotation keys under a prefix."""

    def __init__(self, prefix: str) -> None:
        self.kube_subnet_manager = f"{prefix}/kube-subnet-manager"
        self.backend_type = f"{prefix}/backend-type"
        self.backend_data = f"{prefix}/backend-data"
        self.backend_v6_data = f"{prefix}/backend-v6-data"
        self.public_ip = f"{prefix}/public-ip"
        self.public_ipv6 = f"{prefix}/public-ipv6"
        self.public_ip_overwrite = f"{prefix}/public-ip-overwrite"
        self.public_ipv6_overwrite = f"{prefix}/public-ipv6-overwrite"


def pod_cidrs(node: dict) -> tuple[Optional[ipaddress.IPv4Network], Optional[ipaddress.IPv6Network]]:
    spec = node.get("spec") or {}
    raw = list(spec.get("podCIDRs") or [])
    if spec.get("podCIDR") and spec["podCIDR"] not in raw:
        raw.insert(0, spec["podCIDR"])
    v4 = v6 = None
    for text in raw:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            log.warning("node %s: ignoring podCIDR %r", node.get("metadata", {}).get("name"), text)
            continue
        if net.version == 4 and v4 is None:
            v4 = net
        elif net.version == 6 and v6 is None:
            v6 = net
    return v4, v6


def lease_from_node(node: dict, ann: Annotations) -> Optional[Lease]:
    """The peer lease a node stands for, or None if it does not carry flannel's annotations.

    Raises LeaseFormatError (naming the node, the annotation and the value) if it carries them
    but they are malformed; the backend then skips the node with a warning.
    """
    meta = node.get("metadata") or {}
    a = meta.get("annotations") or {}
    name = meta.get("name")
    v4, v6 = pod_cidrs(node)
    if (v4 is None and v6 is None) or ann.backend_type not in a:
        return None
    if ann.public_ip not in a and ann.public_ipv6 not in a:
        return None
    where = f"node {name!r}"

    def data(key):
        text = a.get(key)
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise LeaseFormatError(f"{where}: annotation {key} {text!r} is not JSON") from None

    def public(overwrite, key, version):
        # The node's own overlayd copies a valid overwrite into public-ip; prefer it here too.
        # A malformed one is that node's start-up error (ConfigError there), not a reason to
        # drop a peer that still works: fall back to the address it published.
        text = a.get(overwrite)
        if text:
            try:
                if ipaddress.ip_address(text).version == version:
                    return text
            except ValueError:
                pass
            log.warning("%s: ignoring annotation %s %r (not an IPv%d address)", where, overwrite,
                        text, version)
        return a.get(key)

    public_ipv6 = public(ann.public_ipv6_overwrite, ann.public_ipv6, 6)
    fields = {"PublicIP": public(ann.public_ip_overwrite, ann.public_ip, 4),
              "BackendType": a.get(ann.backend_type), "BackendData": data(ann.backend_data)}
    if public_ipv6:
        fields.update(PublicIPv6=public_ipv6, BackendV6Data=data(ann.backend_v6_data))
    labels = {"PublicIP": f"annotation {ann.public_ip}", "PublicIPv6": f"annotation {ann.public_ipv6}",
              "BackendType": f"annotation {ann.backend_type}",
              "BackendData": f"annotation {ann.backend_data}",
              "BackendV6Data": f"annotation {ann.backend_v6_data}"}
    return build_lease(where, fields, subnet=v4, ipv6_subnet=v6 if public_ipv6 else None,
                       labels=labels, node_name=name)


def lease_or_skip(node: dict, ann: Annotations) -> Optional[Lease]:
    """lease_from_node, with a malformed node logged and treated as no peer at all."""
    try:
        return lease_from_node(node, ann)
    except LeaseFormatError as err:
        log.warning("ignoring %s", err)
        return None


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def overwrite_address(node: str, key: str, text: str, version: int):
    """The address in a public-ip(v6)-overwrite annotation; ConfigError naming it if malformed."""
    example = "203.0.113.9" if version == 4 else "2001:db8::9"
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        addr = None
    if addr is None or addr.version != version:
        raise ConfigError(f"node {node}: annotation {key}={text!r} is not an IPv{version} address; "
                          f"set it to this node's public IPv{version} address (e.g. "
                          f"kubectl annotate --overwrite node {node} {key}={example}) or remove it "
                          f"(kubectl annotate node {node} {key}-)")
    return addr


def network_available(node: dict) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "NetworkUnavailable":
            return cond.get("status") == "False"
    return False
