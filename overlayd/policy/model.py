"""NetworkPolicy inputs as plain values, parsed from API JSON (camelCase dicts, as the API sends them).

Parsing is the only place that looks at the raw objects. A bad object raises BadObject naming the
field and what is wrong; the caller (the cache) keeps the rest of the cluster and reports it.
Nothing here knows nftables.
"""
from __future__ import annotations

import dataclasses
import functools
import ipaddress
from typing import Optional, Union

PROTOCOLS = ("TCP", "UDP", "SCTP")
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
Net = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class BadObject(ValueError):
    """An API object we cannot enforce; the message names the object, the field and the fix."""


@dataclasses.dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Selector:
    """A LabelSelector: matchLabels AND every matchExpression. The empty selector matches all."""
    labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: dict) -> bool:
        for k, v in self.labels:
            if labels.get(k) != v:
                return False
        for r in self.expressions:
            present = r.key in labels
            if r.operator == "In" and not (present and labels[r.key] in r.values):
                return False
            if r.operator == "NotIn" and present and labels[r.key] in r.values:
                return False
            if r.operator == "Exists" and not present:
                return False
            if r.operator == "DoesNotExist" and present:
                return False
        return True


@dataclasses.dataclass(frozen=True)
class IPBlock:
    cidr: Net
    excepts: tuple[Net, ...] = ()

    def contains(self, ip) -> bool:
        ip = ipaddress.ip_address(ip)
        return (ip.version == self.cidr.version and ip in self.cidr
                and not any(ip in e for e in self.excepts))


@dataclasses.dataclass(frozen=True)
class Peer:
    """One NetworkPolicyPeer. pod_selector/namespace_selector None means absent (not empty)."""
    pod_selector: Optional[Selector] = None
    namespace_selector: Optional[Selector] = None
    ip_block: Optional[IPBlock] = None


@dataclasses.dataclass(frozen=True)
class PortSpec:
    protocol: str = "TCP"
    port: Union[int, str, None] = None     # None: every port of the protocol; str: a named port
    end_port: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class Rule:
    """One ingress or egress rule. peers None: from/to absent (every peer); ports None: every port."""
    peers: Optional[tuple[Peer, ...]] = None
    ports: Optional[tuple[PortSpec, ...]] = None


@dataclasses.dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    pod_selector: Selector
    ingress: Optional[tuple[Rule, ...]]       # None when Ingress is not among policyTypes
    egress: Optional[tuple[Rule, ...]]        # None when Egress is not among policyTypes

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclasses.dataclass(frozen=True)
class ContainerPort:
    name: str
    port: int
    protocol: str = "TCP"


@dataclasses.dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    labels: tuple[tuple[str, str], ...]
    node: str = ""
    ips: tuple[str, ...] = ()
    host_network: bool = False
    ports: tuple[ContainerPort, ...] = ()
    terminal: bool = False                 # phase Succeeded/Failed: holds no address any more

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @functools.cached_property
    def label_dict(self) -> dict:
        return dict(self.labels)


@dataclasses.dataclass(frozen=True)
class Namespace:
    name: str
    labels: tuple[tuple[str, str], ...]

    @functools.cached_property
    def label_dict(self) -> dict:
        return dict(self.labels)


# -- parsing ----------------------------------------------------------------------------------

def _meta(obj: dict, kind: str) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name:
        raise BadObject(f"{kind} without metadata.name")
    return meta.get("namespace") or "", name


def _labels(value, where: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise BadObject(f"{where} must map label keys to string values")
    return tuple(sorted(value.items()))


def parse_selector(value, where: str) -> Optional[Selector]:
    """None stays None (absent); {} is the empty selector (matches everything)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadObject(f"{where} must be a label selector object")
    exprs = []
    for i, e in enumerate(value.get("matchExpressions") or ()):
        at = f"{where}.matchExpressions[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("key"), str):
            raise BadObject(f"{at}.key is missing")
        op = e.get("operator")
        if op not in OPERATORS:
            raise BadObject(f"{at}.operator {op!r} must be one of {', '.join(OPERATORS)}")
        values = tuple(e.get("values") or ())
        if op in ("In", "NotIn") and not values:
            raise BadObject(f"{at}.values must not be empty for operator {op}")
        if op in ("Exists", "DoesNotExist") and values:
            raise BadObject(f"{at}.values must be empty for operator {op}")
        exprs.append(Requirement(e["key"], op, tuple(sorted(str(v) for v in values))))
    return Selector(_labels(value.get("matchLabels"), f"{where}.matchLabels"), tuple(exprs))


def _net(value, where: str) -> Net:
    try:
        return ipaddress.ip_network(value, strict=False)
    except (TypeError, ValueError):
        raise BadObject(f"{where} {value!r} is not a CIDR such as 10.0.0.0/24 or fd00::/64") from None


def _peer(p, where: str) -> Peer:
    if not isinstance(p, dict):
        raise BadObject(f"{where} must be an object")
    block = p.get("ipBlock")
    pods = parse_selector(p.get("podSelector"), f"{where}.podSelector")
    nss = parse_selector(p.get("namespaceSelector"), f"{where}.namespaceSelector")
    if block is not None:
        if pods is not None or nss is not None:
            raise BadObject(f"{where}: ipBlock cannot be combined with podSelector or namespaceSelector")
        cidr = _net(block.get("cidr"), f"{where}.ipBlock.cidr")
        excepts = []
        for i, e in enumerate(block.get("except") or ()):
            net = _net(e, f"{where}.ipBlock.except[{i}]")
            if net.version != cidr.version or not net.subnet_of(cidr):
                raise BadObject(f"{where}.ipBlock.except[{i}] {net} must lie inside cidr {cidr}")
            excepts.append(net)
        return Peer(ip_block=IPBlock(cidr, tuple(excepts)))
    if pods is None and nss is None:
        raise BadObject(f"{where} must set podSelector, namespaceSelector or ipBlock")
    return Peer(pods, nss)


def _port(p, where: str) -> PortSpec:
    if not isinstance(p, dict):
        raise BadObject(f"{where} must be an object")
    proto = p.get("protocol") or "TCP"
    if proto not in PROTOCOLS:
        raise BadObject(f"{where}.protocol {proto!r} must be TCP, UDP or SCTP")
    port, end = p.get("port"), p.get("endPort")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, bool) or (port is not None and not isinstance(port, (int, str))):
        raise BadObject(f"{where}.port {port!r} must be a number or a port name")
    if isinstance(port, int) and not 1 <= port <= 65535:
        raise BadObject(f"{where}.port {port} must be within 1-65535")
    if end is not None:
        if not isinstance(port, int):
            raise BadObject(f"{where}.endPort needs a numeric port")
        if not isinstance(end, int) or isinstance(end, bool) or not port <= end <= 65535:
            raise BadObject(f"{where}.endPort {end!r} must be a number from port ({port}) to 65535")
    return PortSpec(proto, port, end)


def _rules(rules, peer_key: str, where: str) -> tuple[Rule, ...]:
    out = []
    for i, r in enumerate(rules or ()):
        at = f"{where}[{i}]"
        if not isinstance(r, dict):
            raise BadObject(f"{at} must be an object")
        peers = r.get(peer_key)
        ports = r.get("ports")
        # An empty list, like a missing one, restricts nothing (the API's documented meaning).
        out.append(Rule(
            None if not peers else tuple(_peer(p, f"{at}.{peer_key}[{j}]") for j, p in enumerate(peers)),
            None if not ports else tuple(_port(p, f"{at}.ports[{j}]") for j, p in enumerate(ports))))
    return tuple(out)


def parse_policy(obj: dict) -> Policy:
    ns, name = _meta(obj, "NetworkPolicy")
    where = f"NetworkPolicy {ns}/{name}: spec"
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise BadObject(f"{where} is missing")
    selector = parse_selector(spec.get("podSelector"), f"{where}.podSelector") or Selector()
    types = spec.get("policyTypes")
    if not types:   # the API's defaulting: Ingress always, Egress when egress rules are present
        types = ["Ingress"] + (["Egress"] if spec.get("egress") is not None else [])
    for t in types:
        if t not in ("Ingress", "Egress"):
            raise BadObject(f"{where}.policyTypes {t!r} must be Ingress or Egress")
    ingress = _rules(spec.get("ingress"), "from", f"{where}.ingress") if "Ingress" in types else None
    egress = _rules(spec.get("egress"), "to", f"{where}.egress") if "Egress" in types else None
    return Policy(ns, name, selector, ingress, egress)


def parse_pod(obj: dict) -> Pod:
    ns, name = _meta(obj, "Pod")
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ips = [p.get("ip") for p in status.get("podIPs") or () if isinstance(p, dict) and p.get("ip")]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    good = []
    for ip in ips:
        try:
            good.append(str(ipaddress.ip_address(ip)))
        except ValueError:
            raise BadObject(f"Pod {ns}/{name}: status.podIPs {ip!r} is not an IP address") from None
    ports = []
    for c in list(spec.get("containers") or ()) + list(spec.get("initContainers") or ()):
        for p in (c or {}).get("ports") or ():
            if isinstance(p, dict) and p.get("name") and isinstance(p.get("containerPort"), int):
                ports.append(ContainerPort(p["name"], p["containerPort"], p.get("protocol") or "TCP"))
    return Pod(ns, name, _labels((obj.get("metadata") or {}).get("labels"), f"Pod {ns}/{name}: metadata.labels"),
               node=spec.get("nodeName") or "", ips=tuple(good), host_network=bool(spec.get("hostNetwork")),
               ports=tuple(ports), terminal=status.get("phase") in ("Succeeded", "Failed"))


def parse_namespace(obj: dict) -> Namespace:
    _, name = _meta(obj, "Namespace")
    labels = dict(_labels((obj.get("metadata") or {}).get("labels"), f"Namespace {name}: metadata.labels"))
    labels.setdefault("kubernetes.io/metadata.name", name)    # the API server sets it; be sure
    return Namespace(name, tuple(sorted(labels.items())))
