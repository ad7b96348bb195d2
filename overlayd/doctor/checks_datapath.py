"""Checks of the VXLAN device, the kernel entries, the MTU chain and reachability (pure).

The expected state is what the daemon itself would program: overlayd.desired from the leases
in the store, the device from net-conf.json and the underlay, the MTU from the underlay.
"""
from __future__ import annotations

import ipaddress
from typing import Optional

from ..desired import desired_entries, is_self, lease_fields
from ..diff import plan_changes
from ..entries import OVERHEAD
from .facts import NodeFacts
from .report import Finding, ev, finding, ok


def _device_source(f: NodeFacts) -> str:
    return f"netlink: link {f.kernel.device_name}"


def device_problems(f: NodeFacts) -> list[str]:
    """What about the device differs from the lease and config (empty: fine or not comparable)."""
    k, own, config = f.kernel, f.store.own, f.store.config
    if k.device is None:
        return [f"{k.device_name} does not exist"]
    d = k.device
    problems = []
    if d.kind != "vxlan":
        problems.append(f"it is a {d.kind or 'plain'} device, not vxlan")
    if config is not None:
        if d.vxlan_id != config.backend.vni:
            problems.append(f"VNI {d.vxlan_id}, want {config.backend.vni} (Backend.VNI)")
        if d.vxlan_port != config.backend.port:
            problems.append(f"UDP port {d.vxlan_port}, want {config.backend.port} (Backend.Port)")
    if k.underlay is not None:
        if d.vxlan_local != k.underlay.ip:
            problems.append(f"local {d.vxlan_local}, want the underlay address {k.underlay.ip}")
        if d.vxlan_link != k.underlay.index:
            problems.append(f"underlay link {d.vxlan_link}, want {k.underlay.name} ({k.underlay.index})")
    if own is not None and own.vtep_mac and d.mac != own.vtep_mac:
        problems.append(f"MAC {d.mac}, but the lease (what peers use) says {own.vtep_mac}")
    if own is not None and own.subnet is not None:
        want = f"{own.subnet.network_address}/32"
        if want not in k.device_addresses:
            problems.append(f"addresses {', '.join(k.device_addresses) or 'none'}, want {want}")
    if not d.up:
        problems.append("it is down")
    return problems


def device(f: NodeFacts) -> list[Finding]:
    k = f.kernel
    if k.error:
        return [finding("device", "error", "the kernel state could not be read", "run doctor as root on the node",
                        ev("netlink", k.error))]
    if k.underlay is None:
        return [finding("device", "error", "no underlay interface matches overlayd's flags",
                        "check --iface / --iface-regex / --iface-can-reach and the node's default route",
                        ev("netlink: links and addresses", k.underlay_error or "none chosen"))]
    problems = device_problems(f)
    d = k.device
    seen = (f"vxlan id {d.vxlan_id} port {d.vxlan_port} local {d.vxlan_local} dev {d.vxlan_link} "
            f"mac {d.mac} mtu {d.mtu} {'up' if d.up else 'down'} addr {','.join(k.device_addresses)}"
            if d else "missing")
    evidence = [ev(_device_source(f), seen),
                ev("netlink: underlay", f"{k.underlay.name} {k.underlay.ip} mtu {k.underlay.mtu}")]
    if f.store.own is not None:
        evidence.append(ev(f.store.source, f"own lease {f.store.own.key} VtepMAC {f.store.own.vtep_mac}"))
    if problems:
        return [finding("device", "error", f"{k.device_name} does not match the lease: " + "; ".join(problems),
                        "peers send to what the lease says: restart overlayd on this node, it recreates or "
                        "fixes the device with the lease's MAC", *evidence)]
    return [ok("device", f"{k.device_name} matches the lease and the config", *evidence)]


def _expected(f: NodeFacts):
    k, own, config = f.kernel, f.store.own, f.store.config
    if own is None or config is None or k.underlay is None or k.entries is None:
        return None
    return desired_entries(own, f.store.leases, 4, direct_routing=config.backend.direct_routing,
                           underlay_net=ipaddress.ip_network(k.underlay.network, strict=False))


def entries(f: NodeFacts) -> list[Finding]:
    k = f.kernel
    if k.device is None or k.entries is None:
        return []               # the device check says why
    want = _expected(f)
    if want is None:
        return [finding("entries", "info", "not compared: the leases are unknown", "",
                        ev("netlink", f"{len(k.entries.routes)} routes, {len(k.entries.neighs)} neighbours, "
                                      f"{len(k.entries.fdbs)} FDB entries"))]
    plan = plan_changes(want, k.entries)
    counts = (f"kernel: {len(k.entries.routes)} routes, {len(k.entries.neighs)} ARP, {len(k.entries.fdbs)} FDB; "
              f"leases want {len(want.routes)}, {len(want.neighs)}, {len(want.fdbs)}")
    evidence = [ev(f"netlink: dump of {k.device_name} (neigh, fdb) and the main table", counts),
                ev(f.store.source, f"{len(f.store.leases)} leases")]
    problems = []
    have = k.entries
    for pe in plan.add:
        if pe.neigh is not None:
            now = have.neighs.get(pe.neigh.ip)
            problems.append(f"missing ARP {pe.neigh.ip} lladdr {pe.neigh.mac}"
                            + (f" (kernel has lladdr {now.mac})" if now else ""))
        if pe.fdb is not None:
            problems.append(f"missing FDB {pe.fdb.mac} dst {pe.fdb.dst}")
        route = have.routes.get(pe.route.dst)
        if route != pe.route:
            problems.append(f"missing route {pe.route.dst} via {pe.route.gateway}"
                            + (f" (kernel has via {route.gateway})" if route else ""))
    problems += [f"stale route {r.dst} via {r.gateway}" for r in plan.del_routes]
    problems += [f"stale FDB {x.mac} dst {x.dst}" for x in plan.del_fdbs]
    problems += [f"stale ARP {n.ip} lladdr {n.mac}" for n in plan.del_neighs]
    if problems and device_problems(f):
        # The kernel drops a device's routes with its last address and its ARP entries when its MAC
        # changes: here the drift follows from the device problem, which the device check names.
        return [finding("entries", "info", f"{len(problems)} kernel entr{'y' if len(problems) == 1 else 'ies'} "
                        "drift from the leases, following from the device problem (see the device check); "
                        "restarting overlayd repairs both", "", *evidence, more=[ev("drift", p) for p in problems])]
    if problems:
        return [finding("entries", "error", f"{len(problems)} kernel entr{'y' if len(problems) == 1 else 'ies'} "
                        "drift from the leases", "overlayd repairs drift on its next full reconcile (--resync, "
                        "default 60 s); if it persists, its log names the failing netlink request",
                        *evidence, more=[ev("drift", p) for p in problems])]
    return [ok("entries", f"every peer's route, ARP and FDB entry is in place ({len(want.routes)} peers)",
               *evidence)]


def mtu(f: NodeFacts) -> list[Finding]:
    k, config = f.kernel, f.store.config
    if k.underlay is None or k.device is None:
        return []
    want = (config.backend.mtu if config and config.backend.mtu else k.underlay.mtu - OVERHEAD[4])
    links = [("underlay " + k.underlay.name, k.underlay.mtu), (k.device_name, k.device.mtu)]
    env_mtu = (f.subnet_env or {}).get("FLANNEL_MTU")
    chain = [(k.device_name, k.device.mtu)]
    if env_mtu is not None:
        chain.append(("subnet.env FLANNEL_MTU", int(env_mtu) if env_mtu.isdigit() else env_mtu))
    if k.bridge is not None:
        chain.append((k.bridge.name, k.bridge.mtu))
    chain += [(f"pod veth {p.name}", p.mtu) for p in k.bridge_ports]
    shown = " = ".join(f"{n} {m}" for n, m in links[:1]) + f" - {OVERHEAD[4]} -> " + ", ".join(
        f"{n} {m}" for n, m in chain)
    wrong = [(n, m) for n, m in chain if m != want]
    evidence = [ev("netlink: links; " + f.settings.subnet_file, shown)]
    if wrong:
        return [finding("mtu", "error", "the MTU chain is broken: " + ", ".join(f"{n} is {m}" for n, m in wrong)
                        + f", want {want} (underlay {k.underlay.mtu} - {OVERHEAD[4]}"
                        + (f", Backend.MTU {config.backend.mtu}" if config and config.backend.mtu else "") + ")",
                        "large packets are dropped or fragmented; set the MTU back (overlayd sets the device's "
                        "on its next reconcile; cni0 and pods get FLANNEL_MTU when they are created)",
                        *evidence)]
    return [ok("mtu", f"underlay {k.underlay.mtu} - {OVERHEAD[4]} = {want} all along the chain", *evidence)]


def reachability(f: NodeFacts) -> list[Finding]:
    if f.probes and device_problems(f):
        # Peers answer to the lease's VTEP MAC and address: with the device off the lease, no answer
        # can arrive, and the device check names the cause.
        return [finding("reachability", "info", "probes not judged: the device differs from the lease "
                        "(see the device check)", "", ev("VXLAN probe", f"{sum(p.replied for p in f.probes)} of "
                                                      f"{len(f.probes)} peers answered"))]
    if not f.probes:
        if f.probe_note:
            return [finding("reachability", "info", f"no probe sent: {f.probe_note}", "",
                            ev("VXLAN probe", f.probe_note))]
        return []
    dead = [p for p in f.probes if not p.replied]
    own = f.store.own
    peers = {p.key: p for p in f.store.leases if own is None or not is_self(own, p)}
    evidence = [ev(f"VXLAN UDP {p.public_ip}:{f.store.config.backend.port if f.store.config else 8472}",
                   f"ICMP echo to VTEP {p.vtep_ip}: " + (f"reply in {p.rtt * 1000:.1f} ms" if p.replied
                                                         else f"no reply ({p.error or 'timeout'})"))
                for p in f.probes]
    if dead:
        names = ", ".join(f"{p.public_ip} ({_node(peers.get(p.peer)) or p.peer})" for p in dead)
        return [finding("reachability", "error", f"{len(dead)} of {len(f.probes)} peers do not answer over VXLAN: "
                        f"{names}", "allow UDP " + str(f.store.config.backend.port if f.store.config else 8472)
                        + " between the nodes' addresses (firewalls, security groups), and run doctor on "
                        "those peers: their device or their entries for this node may be wrong", *evidence)]
    return [ok("reachability", f"every peer ({len(f.probes)}) answers a VXLAN-encapsulated echo", *evidence)]


def _node(lease) -> Optional[str]:
    if lease is None:
        return None
    return lease.node_name or str(lease_fields(lease, 4)[0])
