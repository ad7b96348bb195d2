"""Netlink, and nothing else: the only module that imports pyroute2.

Small functions on plain data (overlayd.entries, LinkInfo). Every pyroute2 error is turned into
DatapathError here, in one place, with the errno meanings decided once:
  - ENOENT/ESRCH on delete: the entry is already gone, which is what we wanted: success.
  - EEXIST on an add we issue with replace/append semantics does not happen; elsewhere it is an error.
A Netlink object must be used from the thread that created it (pyroute2 0.9 binds its loop to it).
"""
from __future__ import annotations

import dataclasses
import errno as errno_mod
import ipaddress
import logging
import threading
from typing import Callable, Iterable, Iterator, Optional

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK

from .entries import Entries, FdbEntry, NeighEntry, PeerEntries, Plan, RouteEntry
from .errors import DatapathError, DeviceMissing

log = logging.getLogger(__name__)

NUD_PERMANENT = 0x80
NTF_SELF = 0x02
RTNH_F_ONLINK = 0x04
RT_TABLE_MAIN = 254
RTPROT_KERNEL = 2
# Routes overlayd installs carry this protocol number, so a direct route on the shared
# underlay device can be told apart from the operator's own routes.
RTPROT_OVERLAYD = 115
AF_INET, AF_INET6, AF_BRIDGE = 2, 10, 7
_GONE = (errno_mod.ENOENT, errno_mod.ESRCH, errno_mod.ENODEV, errno_mod.EADDRNOTAVAIL)


@dataclasses.dataclass(frozen=True)
class VxlanSpec:
    name: str
    vni: int
    port: int
    local_ip: str
    underlay_index: int
    mtu: int
    mac: Optional[str] = None
    learning: bool = False
    gbp: bool = False


@dataclasses.dataclass(frozen=True)
class LinkInfo:
    index: int
    name: str
    mac: Optional[str]
    mtu: int
    kind: Optional[str]
    up: bool
    vxlan_id: Optional[int] = None
    vxlan_port: Optional[int] = None
    vxlan_local: Optional[str] = None
    vxlan_link: Optional[int] = None
    vxlan_learning: Optional[bool] = None
    vxlan_gbp: bool = False

    def matches(self, spec: VxlanSpec) -> bool:
        """True if this existing device can be adopted for spec (MTU and MAC are fixed in place)."""
        return (self.kind == "vxlan" and self.vxlan_id == spec.vni and self.vxlan_port == spec.port
                and self.vxlan_local == spec.local_ip and self.vxlan_link == spec.underlay_index
                and bool(self.vxlan_learning) == spec.learning and self.vxlan_gbp == spec.gbp)


@dataclasses.dataclass(frozen=True)
class Address:
    index: int
    ip: str
    prefixlen: int


@dataclasses.dataclass(frozen=True)
class LinkEvent:
    """Something about links or addresses changed: kind is link-new/link-del/addr-new/addr-del."""
    kind: str
    index: int
    name: Optional[str] = None


def _family(ip: str) -> int:
    return AF_INET6 if ":" in ip else AF_INET


class Netlink:
    def __init__(self, netns: Optional[str] = None):
        self.netns = netns
        try:
            self._ipr = IPRoute(netns=netns) if netns else IPRoute()
        except (NetlinkError, OSError) as err:
            raise DatapathError(f"open netlink socket (netns {netns})", getattr(err, "code", 0) or getattr(err, "errno", 0) or 0, str(err)) from None

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- errors -----------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable, *args, ok_if_gone: bool = False, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NetlinkError as err:
            if ok_if_gone and err.code in _GONE:
                return None
            if err.code in (errno_mod.ENODEV,):
                raise DeviceMissing(what, err.code, err.args[1] if len(err.args) > 1 else str(err)) from None
            raise DatapathError(what, err.code, err.args[1] if len(err.args) > 1 else str(err)) from None
        except OSError as err:
            raise DatapathError(what, err.errno or 0, str(err)) from None

    # -- links --------------------------------------------------------------------------------
    @staticmethod
    def _link_info(msg) -> LinkInfo:
        kind = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
        data = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA") if kind == "vxlan" else None
        get = (lambda k: data.get(k)) if data is not None else (lambda k: None)
        return LinkInfo(
            index=msg["index"], name=msg.get("IFLA_IFNAME"), mac=(msg.get("IFLA_ADDRESS") or None),
            mtu=msg.get("IFLA_MTU") or 0, kind=kind, up=bool(msg["flags"] & 1),
            vxlan_id=get("IFLA_VXLAN_ID"), vxlan_port=get("IFLA_VXLAN_PORT"),
            vxlan_local=get("IFLA_VXLAN_LOCAL") or get("IFLA_VXLAN_LOCAL6"),
            vxlan_link=get("IFLA_VXLAN_LINK"),
            vxlan_learning=None if data is None else bool(get("IFLA_VXLAN_LEARNING")),
            vxlan_gbp=data is not None and get("IFLA_VXLAN_GBP") is not None,
        )

    def links(self) -> list[LinkInfo]:
        return [self._link_info(m) for m in self._call("dump links", self._ipr.get_links)]

    def link(self, name: Optional[str] = None, index: Optional[int] = None) -> Optional[LinkInfo]:
        if index is None:
            found = self._call(f"look up link {name}", self._ipr.link_lookup, ifname=name)
            if not found:
                return None
            index = found[0]
        msgs = self._call(f"get link {name or index}", self._ipr.get_links, index, ok_if_gone=True)
        return self._link_info(msgs[0]) if msgs else None

    def create_vxlan(self, spec: VxlanSpec) -> LinkInfo:
        kwargs = dict(ifname=spec.name, kind="vxlan", vxlan_id=spec.vni, vxlan_port=spec.port,
                      vxlan_link=spec.underlay_index, vxlan_learning=int(spec.learning), mtu=spec.mtu)
        kwargs["vxlan_local6" if ":" in spec.local_ip else "vxlan_local"] = spec.local_ip
        if spec.gbp:
            kwargs["vxlan_gbp"] = True
        if spec.mac:
            kwargs["address"] = spec.mac
        self._call(f"create vxlan device {spec.name}", self._ipr.link, "add", **kwargs)
        info = self.link(spec.name)
        if info is None:
            raise DeviceMissing(f"create vxlan device {spec.name}", errno_mod.ENODEV, "gone right after creation")
        return info

    def delete_link(self, index: int) -> None:
        self._call(f"delete link {index}", self._ipr.link, "del", index=index, ok_if_gone=True)

    def set_link(self, index: int, *, up: Optional[bool] = None, mtu: Optional[int] = None,
                 mac: Optional[str] = None) -> None:
        kwargs = {}
        if up is not None:
            kwargs["state"] = "up" if up else "down"
        if mtu is not None:
            kwargs["mtu"] = mtu
        if mac is not None:
            kwargs["address"] = mac
        if kwargs:
            self._call(f"set link {index} {kwargs}", self._ipr.link, "set", index=index, **kwargs)

    # -- addresses ----------------------------------------------------------------------------
    def addresses(self, index: Optional[int] = None, family: int = AF_INET) -> list[Address]:
        kwargs = {"family": family}
        if index is not None:
            kwargs["index"] = index
        out = []
        for m in self._call("dump addresses", self._ipr.get_addr, **kwargs):
            ip = m.get("IFA_ADDRESS") if family == AF_INET6 else (m.get("IFA_LOCAL") or m.get("IFA_ADDRESS"))
            if ip:
                out.append(Address(m["index"], ip, m["prefixlen"]))
        return out

    def ensure_only_address(self, index: int, ip: str, prefixlen: int) -> bool:
        """Make `ip/prefixlen` the only address of this family on the device. True if it changed."""
        fam = _family(ip)
        have = [a for a in self.addresses(index, fam) if not (fam == AF_INET6 and a.ip.startswith("fe80:"))]
        changed = False
        for a in have:
            if (a.ip, a.prefixlen) != (ip, prefixlen):
                self._call(f"remove address {a.ip}/{a.prefixlen}", self._ipr.addr, "del", index=index,
                           address=a.ip, prefixlen=a.prefixlen, ok_if_gone=True)
                changed = True
        if not any((a.ip, a.prefixlen) == (ip, prefixlen) for a in have):
            self._call(f"add address {ip}/{prefixlen}", self._ipr.addr, "replace", index=index,
                       address=ip, prefixlen=prefixlen)
            changed = True
        return changed

    # -- routing lookups ------------------------------------------------------------------------
    def default_route_index(self, family: int = AF_INET) -> Optional[int]:
        for r in self._call("dump routes", self._ipr.get_routes, family=family, table=RT_TABLE_MAIN):
            if r["dst_len"] == 0 and r.get("RTA_OIF"):
                return r.get("RTA_OIF")
            mp = r.get("RTA_MULTIPATH")
            if r["dst_len"] == 0 and mp:
                return mp[0]["oif"]
        return None

    def route_get_index(self, dst: str) -> Optional[int]:
        msgs = self._call(f"route get {dst}", self._ipr.route, "get", dst=dst, ok_if_gone=True)
        return msgs[0].get("RTA_OIF") if msgs else None

    # -- datapath entries -----------------------------------------------------------------------
    def dump_entries(self, vxlan_index: int, family: int = AF_INET, *,
                     direct_within: Optional[ipaddress.IPv4Network | ipaddress.IPv6Network] = None) -> Entries:
        """What the kernel has: permanent neighbours and FDB entries on the vxlan device, our routes."""
        actual = Entries()
        for n in self._call("dump neighbours", self._ipr.get_neighbours, ifindex=vxlan_index, family=family):
            if n["ifindex"] != vxlan_index or not (n["state"] & NUD_PERMANENT):
                continue
            ip, mac = n.get("NDA_DST"), n.get("NDA_LLADDR")
            if ip and mac:
                actual.neighs[ip] = NeighEntry(ip=ip, mac=mac.lower())
        for f in self._call("dump fdb", self._ipr.fdb, "dump", ifindex=vxlan_index):
            dst, mac = f.get("NDA_DST"), f.get("NDA_LLADDR")
            if f["ifindex"] == vxlan_index and dst and mac and _family(dst) == (AF_INET6 if family == AF_INET6 else AF_INET):
                actual.fdbs.add(FdbEntry(mac=mac.lower(), dst=dst))
        for r in self._call("dump routes", self._ipr.get_routes, family=family, table=RT_TABLE_MAIN):
            if r["proto"] == RTPROT_KERNEL or r["dst_len"] == 0:
                continue
            dst = r.get("RTA_DST")
            if not dst:
                continue
            cidr = f"{dst}/{r['dst_len']}"
            oif = r.get("RTA_OIF")
            gw = r.get("RTA_GATEWAY") or ""
            if oif == vxlan_index:
                actual.routes[cidr] = RouteEntry(dst=cidr, gateway=gw)
            elif (r["proto"] == RTPROT_OVERLAYD and direct_within is not None
                  and ipaddress.ip_network(cidr).subnet_of(direct_within)):
                actual.routes[cidr] = RouteEntry(dst=cidr, gateway=gw, direct=True)
        return actual

    def _neigh(self, verb: str, vxlan_index: int, n: NeighEntry, **kw):
        args = dict(dst=n.ip, ifindex=vxlan_index, family=_family(n.ip))
        if verb != "del":
            args.update(lladdr=n.mac, state=NUD_PERMANENT)
        return self._call(f"{verb} neighbour {n.ip} lladdr {n.mac}", self._ipr.neigh, verb, **args, **kw)

    def _fdb(self, verb: str, vxlan_index: int, f: FdbEntry, **kw):
        # "append" (NLM_F_APPEND) is what `bridge fdb append` sends: one MAC may have several dsts.
        return self._call(f"{verb} fdb {f.mac} dst {f.dst}", self._ipr.fdb, verb, ifindex=vxlan_index,
                          lladdr=f.mac, dst=f.dst, state=NUD_PERMANENT, flags=NTF_SELF, **kw)

    def _route(self, verb: str, vxlan_index: int, underlay_index: int, r: RouteEntry, **kw):
        net = ipaddress.ip_network(r.dst)
        args = dict(dst=str(net.network_address), dst_len=net.prefixlen, family=_family(r.dst),
                    table=RT_TABLE_MAIN)
        if verb != "del":
            args.update(gateway=r.gateway, proto=RTPROT_OVERLAYD,
                        oif=underlay_index if r.direct else vxlan_index)
            if not r.direct:
                args["flags"] = RTNH_F_ONLINK
        return self._call(f"{verb} route {r.dst} via {r.gateway}", self._ipr.route, verb, **args, **kw)

    def apply(self, plan: Plan, vxlan_index: int, underlay_index: int) -> "ApplyResult":
        """Removals (route, FDB, ARP; best effort), then per peer ARP, FDB, route with rollback."""
        result = ApplyResult()
        for r in plan.del_routes:
            self._try(result, "del_route", lambda r=r: self._route("del", vxlan_index, underlay_index, r, ok_if_gone=True))
        for f in plan.del_fdbs:
            self._try(result, "del_fdb", lambda f=f: self._fdb("del", vxlan_index, f, ok_if_gone=True))
        for n in plan.del_neighs:
            self._try(result, "del_neigh", lambda n=n: self._neigh("del", vxlan_index, n, ok_if_gone=True))
        for peer in plan.add:
            self._add_peer(result, peer, vxlan_index, underlay_index)
        return result

    def _add_peer(self, result: "ApplyResult", peer: PeerEntries, vxlan_index: int, underlay_index: int) -> None:
        done: list[Callable[[], None]] = []
        try:
            if peer.neigh is not None:
                self._neigh("replace", vxlan_index, peer.neigh)
                result.count("add_neigh")
                done.append(lambda: self._neigh("del", vxlan_index, peer.neigh, ok_if_gone=True))
            if peer.fdb is not None:
                self._fdb("append", vxlan_index, peer.fdb)
                result.count("add_fdb")
                done.append(lambda: self._fdb("del", vxlan_index, peer.fdb, ok_if_gone=True))
            self._route("replace", vxlan_index, underlay_index, peer.route)
            result.count("add_route")
        except DatapathError as err:
            result.errors.append(err)
            for undo in reversed(done):  # roll the half-added peer back
                try:
                    undo()
                except DatapathError as undo_err:
                    result.errors.append(undo_err)
            if isinstance(err, DeviceMissing):
                raise

    @staticmethod
    def _try(result: "ApplyResult", kind: str, fn: Callable[[], object]) -> None:
        try:
            fn()
            result.count(kind)
        except DeviceMissing:
            raise
        except DatapathError as err:
            result.errors.append(err)

    # -- events ---------------------------------------------------------------------------------
    @staticmethod
    def watch_links(netns: Optional[str], stop: threading.Event, on_event: Callable[[LinkEvent], None],
                    ready: Optional[threading.Event] = None) -> None:
        """Blocking loop (run it in its own thread): report link and address changes until stop."""
        mon = IPRoute(netns=netns) if netns else IPRoute()
        try:
            mon.bind(groups=RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
            if ready is not None:
                ready.set()
            kinds = {"RTM_NEWLINK": "link-new", "RTM_DELLINK": "link-del",
                     "RTM_NEWADDR": "addr-new", "RTM_DELADDR": "addr-del"}
            while not stop.is_set():
                for msg in mon.get():
                    kind = kinds.get(msg.get("event"))
                    if kind:
                        on_event(LinkEvent(kind, msg.get("index", 0), msg.get("IFLA_IFNAME")))
        finally:
            mon.close()


@dataclasses.dataclass
class ApplyResult:
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    errors: list[DatapathError] = dataclasses.field(default_factory=list)

    def count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
