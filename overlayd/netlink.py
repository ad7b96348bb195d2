"""Netlink, and nothing else: the only module that imports pyroute2.

Small functions on plain data (overlayd.entries, LinkInfo). Every pyroute2 error is turned into
DatapathError, with the errno meanings decided once in overlayd.netlink_errors (for both
transports): ENODEV is DeviceMissing; ENOENT/ESRCH/ENODEV/EADDRNOTAVAIL on delete mean the entry
is already gone, which is what we wanted: success. EEXIST on an add we issue with replace/append
semantics does not happen; elsewhere it is an error.
A Netlink object must be used from the thread that created it (pyroute2 0.9 binds its loop to it).

Bulk work (the ARP/FDB/route entries of thousands of peers, and their dumps) does not go through
pyroute2 but through Wire below: a raw rtnetlink socket with hand-packed requests sent thousands
at a time and hand-parsed answers. Links, addresses and the link watcher stay on pyroute2.
"""
from __future__ import annotations

import errno as errno_mod
import importlib.util
import ipaddress
import logging
import os
import sys
import threading
from typing import Callable, Optional


def _register_pyroute2_lazily() -> None:
    """pyroute2's package __init__ imports every module it ships (NDB, IPDB, wireless, plan9, ...):
    about half of its import time and ~6 MB of RSS the daemon never uses, on every start-up. Register
    the package without running its __init__, so only the submodules imported below load; the first
    name asked of the package itself that is not a submodule (`from pyroute2 import Conntrack`)
    runs the real __init__ then, so such imports elsewhere keep working."""
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    pkg = importlib.util.module_from_spec(spec)       # __path__, __spec__ set; __init__ not run

    def full_init(name: str):
        if importlib.util.find_spec(f"pyroute2.{name}") is not None:
            raise AttributeError(name)                # a submodule: the import system loads it
        del pkg.__getattr__
        spec.loader.exec_module(pkg)
        return getattr(pkg, name)

    pkg.__getattr__ = full_init
    sys.modules["pyroute2"] = pkg


_register_pyroute2_lazily()

from pyroute2 import config as pyroute2_config  # noqa: E402
from pyroute2.iproute.linux import IPRoute  # noqa: E402
from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402
from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK  # noqa: E402

from .entries import Entries, FdbEntry, NeighEntry, Plan, RouteEntry
from .errors import DatapathError, DeviceMissing
from .netlink_types import Address, ApplyResult, LinkEvent, LinkInfo, VxlanSpec  # noqa: F401 (re-exported)
from .netlink_errors import datapath_error, error_code, from_exception, is_gone
from .netlink_wire import (AF_INET, AF_INET6, ETHTOOL_GTXCSUM, ETHTOOL_STXCSUM, RT_TABLE_MAIN, RTM_GETNEIGH,
                           RTM_GETROUTE, RTPROT_KERNEL, RTPROT_OVERLAYD, Request, Wire, _family, ethtool_value,
                           fdb_dump_request, fdb_request, ip_text, neigh_dump_request, neigh_request,
                           route_dump_request, route_request)
from .netlink_parse import parse_neighbours, parse_routes, within

log = logging.getLogger(__name__)

IFA_F_NODAD = 0x02

# IPRoute(netns=...) forks a child that opens the socket inside the namespace, hands it back and
# is then sent SIGTERM. A child still running Python when that arrives would, with an inherited
# Python SIGTERM handler (a daemon's graceful shutdown, the lab's cleanup-on-signal), raise in the
# parent's copied stack and run the parent's finally blocks (closing the shared netlink sockets,
# removing the lab's namespaces); the benchmark saw this as the parent hanging in a pyroute2 call
# that never got its answer. This makes the child restore the default SIGTERM action before it
# hands the socket back, so SIGTERM ends it at once.
pyroute2_config.disable_mp_signal = True



class Netlink:
    def __init__(self, netns: Optional[str] = None):
        self.netns = netns
        self._wire: Optional[Wire] = None      # the bulk socket, opened on first use
        try:
            self._ipr = IPRoute(netns=netns, flags=0) if netns else IPRoute()
        except (NetlinkError, OSError) as err:
            raise from_exception(f"open netlink socket (netns {netns})", err) from None

    def close(self) -> None:
        if self._wire is not None:
            self._wire.close()
            self._wire = None
        self._ipr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- errors -----------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable, *args, ok_if_gone: bool = False, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (NetlinkError, OSError) as err:
            if ok_if_gone and is_gone(error_code(err)):
                return None
            raise from_exception(what, err) from None

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
            # IPv6: no duplicate address detection. Nothing on a learning-off vxlan device could
            # answer it, and a tentative address would hold forwarded pod traffic back ~2 s.
            extra = {"flags": IFA_F_NODAD} if fam == AF_INET6 else {}
            self._call(f"add address {ip}/{prefixlen}", self._ipr.addr, "replace", index=index,
                       address=ip, prefixlen=prefixlen, **extra)
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
        """The interface the kernel would send to dst through, or None when it has no route."""
        try:
            msgs = self._call(f"route get {dst}", self._ipr.route, "get", dst=dst, ok_if_gone=True)
        except DatapathError as err:
            if err.errno in (errno_mod.ENETUNREACH, errno_mod.EHOSTUNREACH):
                return None
            raise
        return msgs[0].get("RTA_OIF") if msgs else None

    # -- datapath entries -----------------------------------------------------------------------
    def _bulk(self) -> Wire:
        if self._wire is None:
            try:
                self._wire = Wire(self.netns)
            except OSError as err:
                raise from_exception(f"open netlink socket (netns {self.netns})", err) from None
        return self._wire

    def _dump(self, what: str, kind: int, payload: bytes) -> list[bytes]:
        try:
            return self._bulk().dump(kind, payload)
        except OSError as err:
            raise from_exception(what, err) from None

    def dump_entries(self, vxlan_index: int, family: int = AF_INET, *,
                     direct_within: Optional[ipaddress.IPv4Network | ipaddress.IPv6Network] = None) -> Entries:
        """What the kernel has: permanent neighbours and FDB entries on the vxlan device, our routes.

        Routes count as ours when they leave through the vxlan device, or (DirectRouting) carry
        our protocol number and lie inside `direct_within`.
        """
        actual = Entries()
        addr_len = 16 if family == AF_INET6 else 4
        neigh_req = neigh_dump_request(family, vxlan_index)
        for dst, mac in parse_neighbours(self._dump("dump neighbours", RTM_GETNEIGH, neigh_req),
                                         vxlan_index, permanent_only=True):
            if len(dst) == addr_len:
                ip = ip_text(dst)
                actual.neighs[ip] = NeighEntry(ip=ip, mac=mac.hex(":"))
        fdb_req = fdb_dump_request(vxlan_index)
        for dst, mac in parse_neighbours(self._dump("dump fdb", RTM_GETNEIGH, fdb_req),
                                         vxlan_index, permanent_only=False):
            if len(dst) == addr_len:
                actual.fdbs.add(FdbEntry(mac=mac.hex(":"), dst=ip_text(dst)))
        route_req = route_dump_request(family)
        for r in parse_routes(self._dump("dump routes", RTM_GETROUTE, route_req)):
            if r.proto == RTPROT_KERNEL or r.dst_len == 0:
                continue
            if r.oif == vxlan_index:
                actual.routes[r.dst] = RouteEntry(dst=r.dst, gateway=r.gateway)
            elif (r.proto == RTPROT_OVERLAYD and direct_within is not None
                  and within(r.dst_raw, r.dst_len, direct_within)):
                actual.routes[r.dst] = RouteEntry(dst=r.dst, gateway=r.gateway, direct=True)
        return actual

    def _send(self, items: list, encode: Callable[[object], Request], describe: Callable[[object], str],
              ok_if_gone: bool = False) -> list[Optional[DatapathError]]:
        """Encode and send one request per item, pipelined; per item None (done) or its error."""
        errors: list[Optional[DatapathError]] = [None] * len(items)
        reqs, where = [], []
        for i, item in enumerate(items):
            try:
                reqs.append(encode(item))
                where.append(i)
            except ValueError as err:    # refused before it reached the kernel
                errors[i] = DatapathError(describe(item), errno_mod.EINVAL, str(err))
        if not reqs:
            return errors
        try:
            failures = self._bulk().requests(reqs)
        except OSError as err:
            raise from_exception(f"{describe(items[where[0]])} and {len(reqs) - 1} more requests", err) from None
        for j, (code, text) in failures.items():
            if ok_if_gone and is_gone(code):
                continue
            errors[where[j]] = datapath_error(describe(items[where[j]]), code,
                                              f"{os.strerror(code)}{': ' + text if text else ''}")
        return errors

    def _neighs(self, verb: str, vxlan_index: int, items: list[NeighEntry], **kw) -> list[Optional[DatapathError]]:
        return self._send(items, lambda n: neigh_request(verb, vxlan_index, n),
                          lambda n: f"{verb} neighbour {n.ip} lladdr {n.mac}", **kw)

    def _fdbs(self, verb: str, vxlan_index: int, items: list[FdbEntry], **kw) -> list[Optional[DatapathError]]:
        return self._send(items, lambda f: fdb_request(verb, vxlan_index, f),
                          lambda f: f"{verb} fdb {f.mac} dst {f.dst}", **kw)

    def _routes(self, verb: str, vxlan_index: int, underlay_index: int, items: list[RouteEntry],
                **kw) -> list[Optional[DatapathError]]:
        return self._send(items, lambda r: route_request(verb, vxlan_index, underlay_index, r),
                          lambda r: f"{verb} route {r.dst} via {r.gateway}", **kw)

    def apply(self, plan: Plan, vxlan_index: int, underlay_index: int) -> "ApplyResult":
        """Removals (route, FDB, ARP; best effort), then ARP, FDB, route for every peer.

        Each step is one pipelined batch over all peers, and a peer's next step is only sent if
        its previous one succeeded, so a route never points at a missing ARP or FDB entry. A peer
        whose step failed is rolled back (its FDB, then its ARP entry removed). DeviceMissing is
        raised once the batch and the rollback are done.
        """
        result = ApplyResult()
        missing: list[DeviceMissing] = []

        def settle(kind: str, errors: list[Optional[DatapathError]]) -> None:
            for err in errors:
                if err is None:
                    result.count(kind)
                else:
                    result.errors.append(err)
                    if isinstance(err, DeviceMissing):
                        missing.append(err)

        settle("del_route", self._routes("del", vxlan_index, underlay_index, plan.del_routes, ok_if_gone=True))
        settle("del_fdb", self._fdbs("del", vxlan_index, plan.del_fdbs, ok_if_gone=True))
        settle("del_neigh", self._neighs("del", vxlan_index, plan.del_neighs, ok_if_gone=True))
        if missing:
            raise missing[0]

        peers = plan.add
        failed: dict[int, DatapathError] = {}
        have_neigh, have_fdb = set(), set()

        def step(kind: str, picked: list[int], errors: list[Optional[DatapathError]], done: set) -> None:
            for i, err in zip(picked, errors):
                if err is None:
                    result.count(kind)
                    done.add(i)
                else:
                    failed[i] = err

        picked = [i for i, p in enumerate(peers) if p.neigh is not None]
        step("add_neigh", picked, self._neighs("replace", vxlan_index, [peers[i].neigh for i in picked]), have_neigh)
        picked = [i for i, p in enumerate(peers) if p.fdb is not None and i not in failed]
        step("add_fdb", picked, self._fdbs("append", vxlan_index, [peers[i].fdb for i in picked]), have_fdb)
        picked = [i for i in range(len(peers)) if i not in failed]
        step("add_route", picked, self._routes("replace", vxlan_index, underlay_index,
                                               [peers[i].route for i in picked]), set())
        for i in sorted(failed):
            result.errors.append(failed[i])
            if isinstance(failed[i], DeviceMissing):
                missing.append(failed[i])
        if failed and not missing:   # roll the half-added peers back, newest step first
            undo_fdb = [peers[i].fdb for i in sorted(failed) if i in have_fdb]
            undo_neigh = [peers[i].neigh for i in sorted(failed) if i in have_neigh]
            for err in self._fdbs("del", vxlan_index, undo_fdb, ok_if_gone=True):
                if err is not None:
                    result.errors.append(err)
            for err in self._neighs("del", vxlan_index, undo_neigh, ok_if_gone=True):
                if err is not None:
                    result.errors.append(err)
        if missing:
            raise missing[0]
        return result

    # -- tx checksum offload (flannel #2152) ------------------------------------------------------
    def _ethtool(self, index: int, cmd: int, data: int = 0) -> int:
        """One SIOCETHTOOL ethtool_value command on the link; returns the value the kernel wrote."""
        info = self.link(index=index)
        if info is None:
            raise DeviceMissing(f"ethtool on link {index}", errno_mod.ENODEV, "no such device")
        try:
            # The ioctl acts on the socket's namespace: our netlink socket already lives in it.
            return ethtool_value(self._bulk().fileno(), info.name, cmd, data)
        except OSError as err:
            raise datapath_error(f"ethtool command {cmd:#x} on {info.name}", err.errno or 0) from None

    def set_tx_checksum(self, index: int, enabled: bool) -> None:
        """`ethtool -K DEV tx on|off`: switch every tx checksum offload of the link on or off."""
        self._ethtool(index, ETHTOOL_STXCSUM, int(enabled))

    def tx_checksum(self, index: int) -> bool:
        """Whether the link offloads tx checksums now (`ethtool -k DEV`'s tx-checksumming)."""
        return bool(self._ethtool(index, ETHTOOL_GTXCSUM))

    # -- events ---------------------------------------------------------------------------------
    @staticmethod
    def watch_links(netns: Optional[str], stop: threading.Event, on_event: Callable[[LinkEvent], None],
                    ready: Optional[threading.Event] = None) -> None:
        """Blocking loop (run it in its own thread): report link and address changes until stop."""
        mon = IPRoute(netns=netns, flags=0) if netns else IPRoute()
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
