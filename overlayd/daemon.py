"""The daemon loop: lease -> desired entries; netlink dump -> actual; apply the difference.

Level-triggered: every trigger (start-up, a batch of lease events, the device deleted or the
underlay changed, the resync timer) runs the same reconcile of the whole device.
"""
from __future__ import annotations

import ipaddress
import logging
import queue
import secrets
import threading
import time
from typing import Callable, Optional

from subnet_lease.config import NetConfig
from subnet_lease.lease import Lease, LeaseEvent

from .desired import desired_entries
from .diff import plan_changes
from .errors import DatapathError, DeviceMissing
from .netlink import LinkEvent, LinkInfo, Netlink, VxlanSpec
from .settings import DaemonSettings
from .subnet_file import SubnetFile, first_host, previous_subnet, write_subnet_file
from .underlay import Underlay, select_underlay

log = logging.getLogger(__name__)

VXLAN_OVERHEAD_V4 = 50


def random_mac() -> str:
    """A locally administered unicast MAC (kept in the lease, so it survives restarts)."""
    octets = bytearray(secrets.token_bytes(6))
    octets[0] = (octets[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in octets)


class Daemon:
    def __init__(self, settings: DaemonSettings, backend, *, metrics=None,
                 on_ready: Optional[Callable[[], None]] = None, extras: tuple = ()):
        self.settings = settings
        self.backend = backend
        self.metrics = metrics
        self.on_ready = on_ready
        self.extras = extras              # objects with ensure(daemon) called on every reconcile
        self.events: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.config: Optional[NetConfig] = None
        self.underlay: Optional[Underlay] = None
        self.own: Optional[Lease] = None
        self.peers: dict[str, Lease] = {}
        self.device: Optional[LinkInfo] = None
        self.ready = False
        self.heartbeat = time.monotonic()
        self.last_error: Optional[str] = None
        self._nl: Optional[Netlink] = None
        self._threads: list[threading.Thread] = []

    # -- start-up -----------------------------------------------------------------------------
    @property
    def device_name(self) -> str:
        return self.settings.device_name_format.format(vni=self.config.backend.vni)

    def vxlan_spec(self, mac: Optional[str]) -> VxlanSpec:
        backend = self.config.backend
        mtu = backend.mtu or (self.underlay.mtu - VXLAN_OVERHEAD_V4)
        return VxlanSpec(name=self.device_name, vni=backend.vni, port=backend.port,
                         local_ip=self.underlay.ip, underlay_index=self.underlay.index, mtu=mtu,
                         mac=mac, learning=backend.learning, gbp=backend.gbp)

    def start(self) -> None:
        s = self.settings
        self._nl = Netlink(s.netns)
        self.config = self.backend.get_network_config()
        self.underlay = select_underlay(self._nl, ifaces=s.ifaces, iface_regex=s.iface_regex,
                                        can_reach=s.iface_can_reach, public_ip=s.public_ip)
        log.info("underlay %s (%s), public ip %s", self.underlay.name, self.underlay.ip, self.underlay.public_ip)
        public_ip = ipaddress.ip_address(self.underlay.public_ip)
        # The VTEP MAC: the one our lease already advertises, else the existing device's, else new.
        existing = self.backend.find_own_lease(public_ip)
        dev = self._nl.link(self.device_name)
        mac = (existing.vtep_mac if existing is not None and existing.vtep_mac else None) \
            or (dev.mac if dev is not None and dev.kind == "vxlan" else None) or random_mac()
        self.device = self.ensure_device(mac)
        template = Lease(subnet=None, public_ip=public_ip, backend_type="vxlan",
                         backend_data={"VNI": self.config.backend.vni, "VtepMAC": self.device.mac})
        self.own = self.backend.acquire(self.config, template, previous_subnet(s.subnet_file))
        log.info("leased %s (vtep mac %s)", self.own.subnet, self.own.vtep_mac)
        self._nl.ensure_only_address(self.device.index, str(self.own.subnet.network_address), 32)
        leases, revision = self.backend.snapshot()
        self.peers = {l.key: l for l in leases}
        self.reconcile("start-up")
        self.write_subnet_file()
        self._spawn("lease-watch", self._watch_leases, revision)
        ready = threading.Event()
        self._spawn("link-watch", Netlink.watch_links, s.netns, self.stop, self._on_link_event, ready)
        ready.wait(5)
        self.ready = True
        if self.on_ready:
            self.on_ready()

    def write_subnet_file(self) -> None:
        mtu = self.device.mtu
        content = SubnetFile(network=self.config.network, subnet=first_host(self.own.subnet), mtu=mtu,
                             ipmasq=self.settings.ip_masq)
        if write_subnet_file(self.settings.subnet_file, content):
            log.info("wrote %s", self.settings.subnet_file)

    def ensure_device(self, mac: Optional[str] = None) -> LinkInfo:
        """Adopt a compatible device (keeping its MAC unless told otherwise), recreate an incompatible one."""
        nl = self._nl
        mac = mac or (self.device.mac if self.device else None)
        spec = self.vxlan_spec(mac)
        dev = nl.link(spec.name)
        if dev is not None and not dev.matches(spec):
            log.warning("device %s does not match the config (vni/port/local/link); recreating it", spec.name)
            nl.delete_link(dev.index)
            dev = None
        if dev is None:
            dev = nl.create_vxlan(spec)
            log.info("created %s (vni %d, local %s, mtu %d, mac %s)", dev.name, spec.vni, spec.local_ip, spec.mtu, dev.mac)
        if spec.mac and dev.mac != spec.mac:
            nl.set_link(dev.index, mac=spec.mac)
        if dev.mtu != spec.mtu:
            nl.set_link(dev.index, mtu=spec.mtu)
        if not dev.up:
            nl.set_link(dev.index, up=True)
        dev = nl.link(index=dev.index)
        if self.own is not None:
            nl.ensure_only_address(dev.index, str(self.own.subnet.network_address), 32)
        return dev

    # -- the loop -------------------------------------------------------------------------------
    def _spawn(self, name: str, target, *args) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _watch_leases(self, revision: int) -> None:
        backoff = 1.0
        while not self.stop.is_set():
            try:
                for batch in self.backend.watch(revision, self.stop):
                    self.events.put(("leases", batch, time.monotonic()))
                    backoff = 1.0
                return
            except Exception as err:  # the backend reconnects itself; this is the last resort
                log.error("lease watch failed: %s; restarting in %.0fs", err, backoff)
                if self.metrics:
                    self.metrics.watch_restarts.inc()
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 30)
                leases, revision = self.backend.snapshot()
                self.events.put(("snapshot", leases, time.monotonic()))

    def _on_link_event(self, ev: LinkEvent) -> None:
        dev, underlay = self.device, self.underlay
        if ev.kind == "link-del" and dev is not None and (ev.index == dev.index or ev.name == dev.name):
            self.events.put(("device", ev, time.monotonic()))
        elif ev.kind.startswith("addr") and underlay is not None and ev.index == underlay.index:
            self.events.put(("underlay", ev, time.monotonic()))
        elif ev.kind == "link-del" and underlay is not None and ev.index == underlay.index:
            self.events.put(("underlay", ev, time.monotonic()))

    def apply_lease_events(self, batch: list[LeaseEvent]) -> None:
        for ev in batch:
            if ev.kind == "added":
                self.peers[ev.lease.key] = ev.lease
            else:
                self.peers.pop(ev.lease.key, None)

    def run(self) -> None:
        """Until stop is set: wait for triggers, fold them together, reconcile."""
        next_resync = time.monotonic() + self.settings.resync
        while not self.stop.is_set():
            self.heartbeat = time.monotonic()
            timeout = max(0.0, min(1.0, next_resync - time.monotonic()))
            try:
                first = self.events.get(timeout=timeout)
            except queue.Empty:
                if time.monotonic() >= next_resync:
                    self._safe_reconcile("resync")
                    next_resync = time.monotonic() + self.settings.resync
                continue
            batch = [first]
            while True:
                try:
                    batch.append(self.events.get_nowait())
                except queue.Empty:
                    break
            reasons, oldest = set(), None
            for kind, payload, at in batch:
                reasons.add(kind)
                if kind == "leases":
                    self.apply_lease_events(payload)
                    oldest = at if oldest is None else min(oldest, at)
                elif kind == "snapshot":
                    self.peers = {l.key: l for l in payload}
            if "device" in reasons:
                log.warning("device %s was deleted; recreating it with every peer", self.device_name)
            self._safe_reconcile("+".join(sorted(reasons)))
            if oldest is not None and self.metrics:
                self.metrics.event_to_kernel.observe(time.monotonic() - oldest)

    def _safe_reconcile(self, reason: str) -> None:
        try:
            self.reconcile(reason)
            self.last_error = None
        except DatapathError as err:
            self.last_error = str(err)
            log.error("reconcile (%s) failed: %s", reason, err)
            if self.metrics:
                self.metrics.netlink_errors.inc()

    def reconcile(self, reason: str) -> None:
        started = time.monotonic()
        for attempt in range(2):
            try:
                self.device = self.ensure_device()
                own = self.own
                desired = desired_entries(own, self.peers.values(),
                                          direct_routing=self.config.backend.direct_routing,
                                          underlay_net=self.underlay.network)
                actual = self._nl.dump_entries(self.device.index, direct_within=self.config.network)
                plan = plan_changes(desired, actual)
                result = self._nl.apply(plan, self.device.index, self.underlay.index)
                break
            except DeviceMissing:
                if attempt:
                    raise
                log.warning("device vanished during reconcile; recreating")
        for extra in self.extras:
            extra.ensure(self)
        elapsed = time.monotonic() - started
        if not plan.empty or result.errors:
            log.info("reconcile (%s): %s in %.1f ms%s", reason,
                     ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items())) or "no changes",
                     elapsed * 1000, f"; {len(result.errors)} errors" if result.errors else "")
        for err in result.errors[:5]:
            log.error("  %s", err)
        if self.metrics:
            self.metrics.observe_reconcile(elapsed, result.counts, len(result.errors),
                                           peers=len(desired.routes))
        if result.errors:
            raise DatapathError(f"reconcile ({reason})", result.errors[0].errno,
                                f"{len(result.errors)} requests failed, first: {result.errors[0]}")

    def shutdown(self) -> None:
        """Stop the loop and the threads; leave the datapath in place (pods keep talking)."""
        self.stop.set()
        try:
            self.backend.close()
        except Exception as err:
            log.warning("closing the lease backend: %s", err)
        if self._nl is not None:
            self._nl.close()
