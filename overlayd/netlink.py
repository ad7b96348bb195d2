"""Netlink, and nothing else: links, addresses, routing lookups, datapath entries, link events.

Small functions on plain data (overlayd.entries, LinkInfo). Everything goes over raw rtnetlink
sockets of our own (no pyroute2): Wire (overlayd.netlink_wire) sends and receives, and
overlayd.netlink_links / overlayd.netlink_parse build and read the messages. Every error is
turned into DatapathError, with the errno meanings decided once in overlayd.netlink_errors:
ENODEV is DeviceMissing; ENOENT/ESRCH/ENODEV/EADDRNOTAVAIL on delete mean the entry is already
gone, which is what we wanted: success. EEXIST on an add we issue with replace/append semantics
does not happen; elsewhere it is an error. The kernel's extended-ack text is kept in the message.
A Netlink object may be used from any thread, but from one at a time.

Bulk work (the ARP/FDB/route entries of thousands of peers, and their dumps) is sent thousands
of requests at a time with hand-parsed answers; links and addresses are one acked request each.
"""
from __future__ import annotations

import errno as errno_mod
import ipaddress
import logging
import os
import select
import socket
import threading
from typing import Callable, Optional

from .entries import Entries, FdbEntry, NeighEntry, Plan, RouteEntry
from .errors import DatapathError, DeviceMissing
from .netlink_types import Address, ApplyResult, LinkEvent, LinkInfo, VxlanSpec  # noqa: F401 (re-exported)
from .netlink_errors import datapath_error, from_exception, is_gone
from .netlink_links import (RTM_GETADDR, RTM_GETLINK, WATCH_GROUPS, addr_dump_request, addr_request,
                            default_route_oif, fits_ifname, link_del_request, link_dump_request, link_get_request,
                            link_set_request, parse_addresses, parse_events, parse_links, parse_route_oif,
                            route_get_request, vxlan_create_request)
from .netlink_netns import socket_in_netns
from .netlink_wire import (AF_INET, AF_INET6, ETHTOOL_GTXCSUM, ETHTOOL_STXCSUM, RTM_GETNEIGH, RTM_GETROUTE,
                           RTPROT_KERNEL, RTPROT_OVERLAYD, SO_RCVBUFFORCE, Request, Wire, _family, ethtool_value,
                           fdb_dump_request, fdb_request, ip_text, neigh_dump_request, neigh_request,
                           route_dump_request, route_request)
from .netlink_parse import parse_neighbours, parse_routes, within

log = logging.getLogger(__name__)

WATCH_POLL = 0.5               # seconds: how soon watch_links notices `stop`
WATCH_BUFFER = 1 << 20         # the event socket's receive buffer; a burst beyond it is ENOBUFS


class Netlink:
    def __init__(self, netns: Optional[str] = None):
        self.netns = netns
        try:
            self._wire = Wire(netns)
        except OSError as err:
            raise from_exception(f"open netlink socket (netns {netns})", err) from None

    def close(self) -> None:
        self._wire.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- one request, one answer ------------------------------------------------------------------
    def _request(self, what: str, req: Callable[[], Request], ok_if_gone: bool = False) -> Optional[list[bytes]]:
        """Build the request and send it; its answer messages (None: gone and ok_if_gone).
        An input the request cannot carry (a malformed IP or MAC) is EINVAL before any I/O."""
        try:
            kind, flags, payload = req()
        except ValueError as err:
            raise DatapathError(what, errno_mod.EINVAL, str(err)) from None
        try:
            return self._wire.request(kind, flags, payload)
        except OSError as err:
            if ok_if_gone and is_gone(err.errno or 0):
                return None
            raise from_exception(what, err) from None

    # -- links --------------------------------------------------------------------------------
    def links(self) -> list[LinkInfo]:
        return parse_links(self._dump("dump links", RTM_GETLINK, link_dump_request()))

    def link(self, name: Optional[str] = None, index: Optional[int] = None) -> Optional[LinkInfo]:
        if index is None:
            if not fits_ifname(name or ""):
                return None              # no link can have this name (the kernel refuses to look it up)
            payload = link_get_request(name=name)
        else:
            payload = link_get_request(index)
        answer = self._request(f"get link {name or index}", lambda: (RTM_GETLINK, 0, payload), ok_if_gone=True)
        found = parse_links(answer or ())
        return found[0] if found else None

    def create_vxlan(self, spec: VxlanSpec) -> LinkInfo:
        self._request(f"create vxlan device {spec.name}", lambda: vxlan_create_request(spec))
        info = self.link(spec.name)
        if info is None:
            raise DeviceMissing(f"create vxlan device {spec.name}", errno_mod.ENODEV, "gone right after creation")
        return info

    def delete_link(self, index: int) -> None:
        self._request(f"delete link {index}", lambda: link_del_request(index), ok_if_gone=True)

    def set_link(self, index: int, *, up: Optional[bool] = None, mtu: Optional[int] = None,
                 mac: Optional[str] = None) -> None:
        changes = {k: v for k, v in (("up", up), ("mtu", mtu), ("mac", mac)) if v is not None}
        if changes:
            self._request(f"set link {index} {changes}", lambda: link_set_request(index, up, mtu, mac))

    # -- addresses ----------------------------------------------------------------------------
    def addresses(self, index: Optional[int] = None, family: int = AF_INET) -> list[Address]:
        """The addresses of a family (on one link): none, not an error, for a link that is gone."""
        return parse_addresses(self._dump("dump addresses", RTM_GETADDR, addr_dump_request(family)), family, index)

    def ensure_only_address(self, index: int, ip: str, prefixlen: int) -> bool:
        """Make `ip/prefixlen` the only address of this family on the device. True if it changed."""
        fam = _family(ip)
        have = [a for a in self.addresses(index, fam) if not (fam == AF_INET6 and a.ip.startswith("fe80:"))]
        changed = False
        for a in have:
            if (a.ip, a.prefixlen) != (ip, prefixlen):
                self._request(f"remove address {a.ip}/{a.prefixlen}",
                              lambda: addr_request("del", index, a.ip, a.prefixlen), ok_if_gone=True)
                changed = True
        if not any((a.ip, a.prefixlen) == (ip, prefixlen) for a in have):
            # IPv6: no duplicate address detection (addr_request sets nodad). Nothing on a
            # learning-off vxlan device could answer it, and a tentative address would hold
            # forwarded pod traffic back ~2 s.
            self._request(f"add address {ip}/{prefixlen}", lambda: addr_request("replace", index, ip, prefixlen))
            changed = True
        return changed

    # -- routing lookups ------------------------------------------------------------------------
    def default_route_index(self, family: int = AF_INET) -> Optional[int]:
        """The interface of the main table's default route (a multipath one's first next hop)."""
        return default_route_oif(self._dump("dump routes", RTM_GETROUTE, route_dump_request(family)))

    def route_get_index(self, dst: str) -> Optional[int]:
        """The interface the kernel would send to dst through, or None when it has no route."""
        try:
            answer = self._request(f"route get {dst}", lambda: (RTM_GETROUTE, 0, route_get_request(dst)),
                                   ok_if_gone=True)
        except DatapathError as err:
            if err.errno in (errno_mod.ENETUNREACH, errno_mod.EHOSTUNREACH):
                return None
            raise
        return parse_route_oif(answer) if answer else None

    # -- datapath entries -----------------------------------------------------------------------
    def _bulk(self) -> Wire:
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
        """Blocking loop (run it in its own thread): report link and address changes until stop,
        which it notices within WATCH_POLL seconds.

        A socket error ends it as OSError, ENOBUFS too (a burst overflowed the receive buffer and
        events were lost): the caller reopens the watch and reconciles in full, which covers the gap.
        """
        sock = socket_in_netns(netns, socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, WATCH_BUFFER)
            except OSError:              # not CAP_NET_ADMIN: capped at net.core.rmem_max
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, WATCH_BUFFER)
            sock.bind((0, WATCH_GROUPS))
            if ready is not None:
                ready.set()
            while not stop.is_set():
                readable, _, _ = select.select([sock], [], [], WATCH_POLL)
                if readable:
                    for event in parse_events(sock.recv(1 << 16)):
                        on_event(event)
        finally:
            sock.close()
