"""One address family's overlay: its vxlan device and the entries to every peer.

Full reconcile: desired (all leases) vs a netlink dump, apply the difference.
Incremental (a batch of lease events): the difference between the touched peers' old and new
entries only, so one new peer among 5,000 costs three netlink requests, not a full dump.
`programmed` remembers what this object last put in the kernel per lease key; a full reconcile
re-reads the kernel, so the cache can never drift for longer than one resync period.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import logging
import secrets
from typing import Callable, Iterable, Optional

from subnet_lease.lease import Lease, LeaseEvent

from .desired import entries_of, is_self, lease_fields, peer_entries, peer_map
from .apply_pipeline import ApplyPipeline
from .diff import plan_adds, plan_changes, plan_removals
from .entries import OVERHEAD, Entries, PeerEntries, Plan
from .netlink import AF_INET, AF_INET6, ApplyResult, LinkInfo, Netlink, VxlanSpec

log = logging.getLogger(__name__)

# Peers planned and applied at a time by a full reconcile (apply_pipeline.py).
FULL_CHUNK = 500



@dataclasses.dataclass(frozen=True)
class FamilyConfig:
    family: int                  # 4 or 6
    device_name: str             # flannel.1 / flannel-v6.1
    vni: int
    port: int
    local_ip: str                # underlay address of this family
    underlay_index: int
    underlay_mtu: int
    underlay_net: Optional[ipaddress.IPv4Network | ipaddress.IPv6Network]
    network: Optional[ipaddress.IPv4Network | ipaddress.IPv6Network]
    mtu: Optional[int] = None    # Backend.MTU, else underlay MTU minus the overhead
    learning: bool = False
    gbp: bool = False
    direct_routing: bool = False
    tx_checksum_off: bool = False

    @property
    def device_mtu(self) -> int:
        return self.mtu or (self.underlay_mtu - OVERHEAD[self.family])

    def spec(self, mac: Optional[str]) -> VxlanSpec:
        return VxlanSpec(name=self.device_name, vni=self.vni, port=self.port, local_ip=self.local_ip,
                         underlay_index=self.underlay_index, mtu=self.device_mtu, mac=mac,
                         learning=self.learning, gbp=self.gbp)


def family_configs(config, underlay, *, ipv6_local=None, tx_checksum_off: bool = False) -> dict[int, FamilyConfig]:
    """Each enabled family's device settings, from net-conf.json and the chosen underlay.

    flannel's: `flannel.<VNI>` / `flannel-v6.<VNI>`, UDP port and VNI from Backend, `local` = the
    underlay's address of that family, MTU = Backend.MTU or the underlay's minus the overhead.
    """
    b = config.backend
    common = dict(vni=b.vni, port=b.port, underlay_index=underlay.index, underlay_mtu=underlay.mtu, mtu=b.mtu,
                  learning=b.learning, gbp=b.gbp, direct_routing=b.direct_routing, tx_checksum_off=tx_checksum_off)
    out = {}
    if config.enable_ipv4 and config.network is not None:
        out[4] = FamilyConfig(family=4, device_name=f"flannel.{b.vni}", local_ip=underlay.ip,
                              underlay_net=underlay.network, network=config.network, **common)
    if config.enable_ipv6 and config.ipv6_network is not None and ipv6_local is not None:
        out[6] = FamilyConfig(family=6, device_name=f"flannel-v6.{b.vni}", local_ip=ipv6_local.ip.compressed,
                              underlay_net=ipv6_local.network, network=config.ipv6_network, **common)
    return out


def random_mac() -> str:
    """A locally administered unicast MAC (kept in the lease, so it survives restarts)."""
    octets = bytearray(secrets.token_bytes(6))
    octets[0] = (octets[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in octets)


class FamilyPath:
    def __init__(self, nl: Netlink, cfg: FamilyConfig, *, before_full_apply: Optional[Callable[[], None]] = None):
        self.nl = nl
        self.cfg = cfg
        # Called once a full reconcile's plan is made, just before the kernel gets it.
        self.before_full_apply = before_full_apply
        self.device: Optional[LinkInfo] = None
        self.programmed: dict[str, PeerEntries] = {}

    # -- the device -----------------------------------------------------------------------------
    def ensure_device(self, mac: Optional[str], own: Optional[Lease]) -> LinkInfo:
        """Adopt a compatible device, recreate an incompatible one, keep the MAC peers know."""
        nl, spec = self.nl, self.cfg.spec(mac or (self.device.mac if self.device else None))
        dev = nl.link(spec.name)
        if dev is not None and not dev.matches(spec):
            log.warning("%s does not match the config (vni/port/local/underlay); recreating it", spec.name)
            nl.delete_link(dev.index)
            dev = None
        created = dev is None
        if created:
            dev = nl.create_vxlan(spec)
            self.programmed.clear()
            log.info("created %s (vni %d, local %s, mtu %d, mac %s)", dev.name, spec.vni, spec.local_ip,
                     spec.mtu, dev.mac)
        changed = created
        # flannel #2152: checked on every pass, so an adopted device (left by a run without the
        # flag) loses its offload too.
        if self.cfg.tx_checksum_off and nl.tx_checksum(dev.index):
            nl.set_tx_checksum(dev.index, False)
        if spec.mac and dev.mac != spec.mac:
            log.warning("%s has mac %s, peers know %s: setting it back", spec.name, dev.mac, spec.mac)
            nl.set_link(dev.index, mac=spec.mac)
            changed = True
        if dev.mtu != spec.mtu:
            nl.set_link(dev.index, mtu=spec.mtu)
            changed = True
        if not dev.up:
            nl.set_link(dev.index, up=True)
            changed = True
        if own is not None:
            subnet = lease_fields(own, self.cfg.family)[0]
            if subnet is not None:
                nl.ensure_only_address(dev.index, str(subnet.network_address), subnet.max_prefixlen)
        self.device = nl.link(index=dev.index) if changed else dev
        return self.device

    # -- reconcile ------------------------------------------------------------------------------
    def _peer(self, lease: Lease) -> Optional[PeerEntries]:
        return peer_entries(lease, self.cfg.family, direct_routing=self.cfg.direct_routing,
                            underlay_net=self.cfg.underlay_net)

    def full(self, own: Lease, peers: Iterable[Lease]) -> tuple[Plan, ApplyResult]:
        """Desired (every peer lease) against a dump of the kernel: add what is missing, chunk by
        chunk while the next chunk is planned (apply_pipeline.py), then remove what no lease
        explains."""
        actual = self.nl.dump_entries(self.device.index, AF_INET6 if self.cfg.family == 6 else AF_INET,
                                      direct_within=self.cfg.network)
        by_key: dict[str, PeerEntries] = {}
        desired, plan = Entries(), Plan()
        if self.before_full_apply is not None:
            self.before_full_apply()
        pipeline = ApplyPipeline(lambda part: self.nl.apply(part, self.device.index, self.cfg.underlay_index))
        try:
            for chunk in _chunks(peers, FULL_CHUNK):
                part = peer_map(own, chunk, self.cfg.family, direct_routing=self.cfg.direct_routing,
                                underlay_net=self.cfg.underlay_net)
                part_desired = entries_of(part.values())
                adds = plan_adds(part_desired, actual)
                pipeline.submit(Plan(add=adds))
                plan.add += adds
                by_key.update(part)
                desired.update(part_desired)
            removals = plan_removals(desired, actual)
            pipeline.submit(removals)
            plan.del_routes, plan.del_fdbs, plan.del_neighs = removals.del_routes, removals.del_fdbs, removals.del_neighs
        except BaseException:
            pipeline.finish(quiet=True)      # what was submitted is done; this error is the one to see
            raise
        result = pipeline.finish()
        self.programmed = by_key
        return plan, result

    def incremental(self, own: Lease, events: list[LeaseEvent]) -> tuple[Plan, ApplyResult]:
        """Apply only what these events change. The last event for a key wins."""
        latest: dict[str, Optional[Lease]] = {}
        for ev in events:
            if is_self(own, ev.lease):
                continue
            latest[ev.lease.key] = ev.lease if ev.kind == "added" else None
        new = {key: (self._peer(lease) if lease is not None else None) for key, lease in latest.items()}
        old = {key: self.programmed.get(key) for key in latest}
        plan = plan_changes(entries_of(new.values()), entries_of(old.values()))
        # Entries another, untouched peer still needs are not removed.
        if plan.del_fdbs or plan.del_neighs:
            keep = entries_of(pe for k, pe in self.programmed.items() if k not in latest)
            plan.del_fdbs = [f for f in plan.del_fdbs if f not in keep.fdbs]
            plan.del_neighs = [n for n in plan.del_neighs if n.ip not in keep.neighs]
        result = self.nl.apply(plan, self.device.index, self.cfg.underlay_index)
        for key, pe in new.items():
            if pe is None:
                self.programmed.pop(key, None)
            else:
                self.programmed[key] = pe
        return plan, result


def _chunks(items: Iterable, size: int) -> Iterable[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
