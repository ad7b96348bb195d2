"""The daemon: leases in, kernel state out, level-triggered.

Triggers (start-up, lease events, the device deleted, the underlay changed, the resync timer)
land on one queue; the loop folds whatever is queued into one pass, in arrival order. Lease
events take the incremental path (only the touched peers); everything else runs a full
reconcile (netlink dump, diff, apply). Once started, the loop never calls the lease store: the
watch, the periodic re-read and the move to a new underlay run in overlayd.lease_feed and post
their results here. SIGTERM or a crash leave the datapath in place: pods keep talking meanwhile.
"""
from __future__ import annotations

import ipaddress
import logging
import queue
import threading
import time
from typing import Optional

from subnet_lease.config import NetConfig
from subnet_lease.lease import Lease, LeaseEvent

from subnet_lease.backend import BackendUnavailable
from subnet_lease.backoff import Backoff

from .datapath import FamilyConfig, FamilyPath, family_configs, random_mac
from .errors import DatapathError, DeviceMissing, SettingsError
from .lease_feed import LeaseFeed, MoveRequest, Moved
from .netlink import LinkEvent, Netlink
from .peer_grace import PeerGrace
from .reconcile_report import account, export_lease_health, merge_counts
from .settings import DaemonSettings
from .subnet_file import SubnetFile, first_host, previous_subnet, write_subnet_file
from .underlay import Underlay, same_underlay, select_underlay

log = logging.getLogger(__name__)

class Daemon:
    def __init__(self, settings: DaemonSettings, backend, *, metrics=None, readiness=None, rules=None,
                 heartbeat=None, before_subnet_file=None):
        self.settings = settings
        self.backend = backend
        self.metrics = metrics          # overlayd.metrics.Metrics or None
        self.readiness = readiness      # overlayd.health.Readiness or None
        self.rules = rules              # overlayd.rules.RulesKeeper or None
        self.beat = heartbeat.beat if heartbeat is not None else (lambda: None)
        # Called with our lease before subnet.env is written (network policy closes the node's
        # pod addresses first, so no pod is wired before its rules can be: overlayd.policy.agent).
        self.before_subnet_file = before_subnet_file
        self.started = False
        # Set when a full reconcile hands its plan to the kernel (first: at start-up): the kernel
        # then does most of the work and the interpreter lock is free for the side services'
        # start (start_up.py).
        self.programming = threading.Event()
        self.events: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.config: Optional[NetConfig] = None
        self.underlay: Optional[Underlay] = None
        self.own: Optional[Lease] = None
        self.peers: dict[str, Lease] = {}
        self.paths: dict[int, FamilyPath] = {}
        self.full_pending = False
        self.underlay_pending = False   # the underlay changed and is not usable yet: re-check each tick
        self.own_changed = False        # rewrite the subnet file after the next full reconcile
        self.moving_to: Optional[Underlay] = None   # a move the lease feed is taking the lease for
        self.feed = LeaseFeed(backend, self._post, self.stop, reread_every=settings.lease_resync,
                              on_watch_restart=self._count_watch_restart)
        self.grace = PeerGrace(settings.peer_removal_grace)   # removals held back (--peer-removal-grace)
        self.subnet_file_pending: Optional[SubnetFile] = None  # its write failed (disk full, read-only): retried each tick
        self._nl: Optional[Netlink] = None
        self._link_watch: Optional[threading.Thread] = None
        self._backend_watch_restarts = 0

    # -- start-up -------------------------------------------------------------------------------
    def start_with_retry(self, max_backoff: float = 30.0) -> None:
        """start(), retried with backoff while the lease store cannot be reached (no crash loop)."""
        backoff = Backoff(1.0, max_backoff)
        while not self.stop.is_set():
            try:
                return self.start()
            except BackendUnavailable as err:
                delay = backoff.next()
                log.warning("lease store unavailable (%s); retrying in %.0fs", err, delay)
                if self._nl is not None:
                    self._nl.close()
                    self._nl = None
                self.stop.wait(delay)

    def start(self) -> None:
        s = self.settings
        self._nl = Netlink(s.netns)
        self.config = self.backend.get_network_config()
        self.underlay = select_underlay(self._nl, ifaces=s.ifaces, iface_regex=s.iface_regex,
                                        can_reach=s.iface_can_reach, public_ip=s.public_ip)
        log.info("underlay %s (%s), public ip %s", self.underlay.name, self.underlay.ip, self.underlay.public_ip)
        self.paths = {family: FamilyPath(self._nl, cfg, before_full_apply=self.programming.set)
                      for family, cfg in self._family_configs().items()}
        if not self.paths:
            raise SettingsError("neither IPv4 nor IPv6 is enabled in net-conf.json (EnableIPv4/EnableIPv6)")
        public_ip = ipaddress.ip_address(self.underlay.public_ip) if 4 in self.paths else None
        public_ipv6 = ipaddress.ip_address(self._ipv6_public()) if 6 in self.paths else None
        # The VTEP MACs: the ones our lease already advertises, else the devices', else new ones.
        existing = self.backend.find_own_lease(public_ip or public_ipv6)
        macs = {}
        for family, path in self.paths.items():
            dev = self._nl.link(path.cfg.device_name)
            lease_mac = None if existing is None else (existing.vtep_mac if family == 4 else existing.vtep_mac_v6)
            macs[family] = lease_mac or (dev.mac if dev is not None and dev.kind == "vxlan" else None) or random_mac()
            path.ensure_device(macs[family], None)
        kwargs = {"on_change": self._on_own_change}
        if 6 in self.paths:
            kwargs["previous_ipv6_subnet"] = previous_subnet(s.subnet_file, 6)
        self.own = self.backend.acquire(self.config, self._template(), previous_subnet(s.subnet_file), **kwargs)
        log.info("leased %s (vtep mac %s)", self.own.key, self.own.vtep_mac or self.own.vtep_mac_v6)
        # Watch links before the first reconcile: a device deleted from here on is seen (queued).
        if not self._link_watch:           # once, even when start() is retried
            ready = threading.Event()
            self._link_watch = threading.Thread(target=self._watch_links, args=(ready,), name="link-watch",
                                                daemon=True)
            self._link_watch.start()
            ready.wait(5)
        # The read acquire() made, not a third one: 5,000 leases cost ~0.1-0.25 s per read.
        leases, revision = self.backend.snapshot(reuse_start_read=True)
        self.peers = {l.key: l for l in leases}
        # A peer the kernel refuses is logged and retried (full_pending), never a start-up failure.
        self._safely(self.full_reconcile, "start-up")
        self._write_subnet_file()
        self.feed.start_watch(revision)

    def _template(self, underlay: Optional[Underlay] = None) -> Lease:
        """What this node advertises: its public address(es) and VTEP MAC(s), no subnet yet."""
        underlay = underlay or self.underlay
        vni = self.config.backend.vni
        v4, v6 = self.paths.get(4), self.paths.get(6)
        return Lease(subnet=None, backend_type="vxlan",
                     public_ip=ipaddress.ip_address(underlay.public_ip) if v4 else None,
                     backend_data={"VNI": vni, "VtepMAC": v4.device.mac} if v4 else {},
                     public_ipv6=ipaddress.ip_address(self._ipv6_public(underlay)) if v6 else None,
                     backend_v6_data={"VNI": vni, "VtepMAC": v6.device.mac} if v6 else {})

    def _family_configs(self) -> dict[int, FamilyConfig]:
        c = self.config
        ipv6_local = self._ipv6_local() if c.enable_ipv6 and c.ipv6_network is not None else None
        return family_configs(c, self.underlay, ipv6_local=ipv6_local,
                              tx_checksum_off=self.settings.vxlan_tx_checksum_off)

    def _ipv6_local(self, underlay: Optional[Underlay] = None) -> ipaddress.IPv6Interface:
        underlay = underlay or self.underlay
        addrs = [a for a in self._nl.addresses(underlay.index, family=10) if not a.ip.startswith("fe80")]
        if not addrs:
            raise SettingsError(f"EnableIPv6 is set but {underlay.name} has no global IPv6 address; "
                                f"add one or turn IPv6 off in net-conf.json")
        return ipaddress.ip_interface(f"{addrs[0].ip}/{addrs[0].prefixlen}")

    def _ipv6_public(self, underlay: Optional[Underlay] = None) -> str:
        return self.settings.public_ipv6 or self._ipv6_local(underlay).ip.compressed

    def _write_subnet_file(self) -> None:
        own, c = self.own, self.config
        if self.before_subnet_file is not None:
            self.before_subnet_file(own)
        mtus = [p.device.mtu for p in self.paths.values()]
        content = SubnetFile(
            network=c.network if 4 in self.paths else None,
            subnet=first_host(own.subnet) if 4 in self.paths and own.subnet else None,
            mtu=min(mtus), ipmasq=self.settings.ip_masq,
            ipv6_network=c.ipv6_network if 6 in self.paths else None,
            ipv6_subnet=first_host(own.ipv6_subnet) if 6 in self.paths and own.ipv6_subnet else None)
        self._write_subnet_content(content)

    def _write_subnet_content(self, content: SubnetFile) -> None:
        try:
            wrote = write_subnet_file(self.settings.subnet_file, content)
        except OSError as err:
            # A full or read-only disk: the old file stays whole (atomic write); not ready, and
            # the loop tries again every second instead of the daemon dying over it.
            if self.subnet_file_pending is None:
                log.error("cannot write %s: %s; pods cannot start until it is written: free space or "
                          "make its directory writable (retrying every second)",
                          self.settings.subnet_file, err.strerror or err)
            self.subnet_file_pending = content
            if self.readiness is not None:
                self.readiness.set("subnet file written", False, f"{self.settings.subnet_file}: {err.strerror or err}")
            return
        if wrote or self.subnet_file_pending is not None:
            log.info("wrote %s", self.settings.subnet_file)
        self.subnet_file_pending = None
        if self.readiness is not None:
            self.readiness.set("subnet file written")

    # -- triggers -------------------------------------------------------------------------------
    def _post(self, kind: str, payload) -> None:
        self.events.put((kind, payload, time.monotonic()))

    def _count_watch_restart(self) -> None:
        if self.metrics is not None:
            self.metrics.watch_restarts.inc()

    def _watch_links(self, ready: threading.Event) -> None:
        """Netlink link/address events, reopened after any error (a full reconcile covers the gap)."""
        backoff = Backoff(0.5, 10.0)
        while not self.stop.is_set():
            try:
                Netlink.watch_links(self.settings.netns, self.stop, self._on_link_event, ready)
                return
            except Exception as err:
                ready.set()
                log.error("netlink event watch failed: %s; reopening it", err)
                self.stop.wait(backoff.next())
                self.events.put(("relink", None, time.monotonic()))

    def _on_link_event(self, ev: LinkEvent) -> None:
        devices = {p.device.index: p.device.name for p in self.paths.values() if p.device}
        if ev.kind == "link-del" and (ev.index in devices or ev.name in devices.values()):
            self.events.put(("device", ev, time.monotonic()))
        elif self.underlay is not None and ev.index == self.underlay.index and ev.kind != "link-new":
            self.events.put(("underlay", ev, time.monotonic()))

    def _on_own_change(self, lease: Lease) -> None:
        self.events.put(("own", lease, time.monotonic()))

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> None:
        """Until stop is set: wait for triggers, fold them together, reconcile."""
        next_resync = time.monotonic() + self.settings.resync
        self.started = True
        while not self.stop.is_set():
            self.beat()
            if self.metrics is not None:
                self._export_lease_ttl()
            try:
                first = self.events.get(timeout=max(0.0, min(1.0, next_resync - time.monotonic())))
            except queue.Empty:
                first = None
            if self.stop.is_set():
                break
            batch = [first] if first is not None else []
            while True:
                try:
                    batch.append(self.events.get_nowait())
                except queue.Empty:
                    break
            if self.underlay_pending:
                batch.append(("underlay", None, time.monotonic()))
            if self.subnet_file_pending is not None:
                self._write_subnet_content(self.subnet_file_pending)
            if self.grace.deadlines:
                expired = self.grace.expired(self.peers)
                if expired:
                    log.info("peer lease(s) %s stayed away for --peer-removal-grace; removing",
                             ", ".join(ev.lease.key for ev in expired))
                    batch.append(("leases", expired, time.monotonic()))
            if batch:
                self.handle(batch)
            # Checked after every pass, so a steady stream of triggers cannot starve the resync.
            if time.monotonic() >= next_resync or self.full_pending:
                self._safely(self.full_reconcile, "retry" if self.full_pending else "resync")
                next_resync = time.monotonic() + self.settings.resync

    def request_stop(self) -> None:
        """Stop the loop now (signal-safe): set the flag and wake the loop from its queue wait."""
        self.stop.set()
        self.events.put(("stop", None, time.monotonic()))

    def handle(self, batch: list[tuple]) -> None:
        """One pass over queued triggers, in the order they arrived.

        Lease events update the peers as they come; a snapshot replaces the peers and drops the
        events queued before it (it was read after them: they are in it, or superseded). Lease
        events alone take the incremental path; anything else runs a full reconcile."""
        lease_events: list[LeaseEvent] = []
        reasons, oldest = set(), None
        for kind, payload, at in batch:
            if kind not in ("underlay", "moved"):
                reasons.add(kind)
            if kind == "leases":
                for ev in payload:
                    if ev.kind == "added":
                        self.peers[ev.lease.key] = ev.lease
                        self.grace.added(ev.lease.key)
                    elif self.grace.removed(self.peers, ev.lease):
                        continue                 # applied when its grace runs out, unless it comes back
                    else:
                        self.peers.pop(ev.lease.key, None)
                    lease_events.append(ev)
                oldest = at if oldest is None else min(oldest, at)
            elif kind == "snapshot":
                self.peers = self.grace.snapshot(self.peers, {l.key: l for l in payload})
                lease_events = []
            elif kind == "own":
                log.warning("own lease is now %s (was %s)", payload.key, self.own.key)
                self.own = payload
                self.own_changed = True
            elif kind == "device":
                log.warning("device %s was deleted; recreating it with every peer", payload.name or payload.index)
            elif kind == "underlay":
                self._check_underlay()
            elif kind == "moved":
                if self._moved(payload):
                    reasons.add("underlay")
        if reasons - {"leases"} or self.full_pending:
            self._safely(self.full_reconcile, "+".join(sorted(reasons)))
            if self.own_changed and not self.full_pending:
                self._write_subnet_file()
                self.own_changed = False
        elif lease_events:
            self._safely(self.incremental_reconcile, lease_events)
        if oldest is not None and self.metrics is not None:
            self.metrics.event_to_kernel.observe(time.monotonic() - oldest)

    def _check_underlay(self) -> None:
        """The underlay's addresses changed: ask the lease feed to move the lease to what the
        flags now select. The datapath follows once it has (see _moved); until then the loop
        keeps repairing the overlay where it is."""
        s = self.settings
        try:
            now = select_underlay(self._nl, ifaces=s.ifaces, iface_regex=s.iface_regex,
                                  can_reach=s.iface_can_reach, public_ip=s.public_ip)
        except (SettingsError, DatapathError) as err:
            if not self.underlay_pending:
                log.warning("underlay not usable right now (%s); checking again every second", err)
            self.underlay_pending = True
            return
        self.underlay_pending = False
        target = self.moving_to or self.underlay
        if same_underlay(now, target):
            return
        if self.moving_to is None and same_underlay(now, self.underlay):
            return
        log.warning("underlay changed from %s (%s) to %s (%s); moving the overlay to it",
                    self.underlay.name, self.underlay.ip, now.name, now.ip)
        self.moving_to = now
        self.feed.request_move(MoveRequest(now, self.config, self._template(now), self.own.subnet,
                                           self.own.ipv6_subnet, on_change=self._on_own_change))

    def _moved(self, moved: Moved) -> bool:
        """The lease feed took the lease for a new underlay: the device follows.

        The device is recreated on the new local address with the same MAC; the lease keeps its
        subnet (the key our etcd lease holds is ours), so pods keep their addresses and peers
        only see a new PublicIP. A result for a move since replaced by a newer one is dropped."""
        if moved.request.underlay is not self.moving_to:
            return False
        self.moving_to, self.underlay, self.own = None, moved.request.underlay, moved.lease
        for family, cfg in self._family_configs().items():
            if family in self.paths:
                self.paths[family].cfg = cfg
        log.info("lease %s now advertises public ip %s", self.own.key, self.own.public_ip or self.own.public_ipv6)
        self.own_changed = True
        return True

    def _safely(self, fn, arg) -> None:
        try:
            fn(arg)
            self.full_pending = False
        except DatapathError as err:
            self.full_pending = True
            log.error("reconcile failed: %s (a full reconcile follows)", err)
            if self.metrics is not None:
                self.metrics.reconciled(0.0, ok=False)

    def full_reconcile(self, reason: str) -> None:
        started = time.monotonic()
        totals, errors = {}, []
        for path in self.paths.values():
            for attempt in range(2):
                try:
                    mac = self.own.vtep_mac if path.cfg.family == 4 else self.own.vtep_mac_v6
                    path.ensure_device(mac, self.own)
                    plan, result = path.full(self.own, self.peers.values())
                    break
                except DeviceMissing:
                    if attempt:
                        raise
                    log.warning("%s vanished during reconcile; recreating it", path.cfg.device_name)
            merge_counts(totals, result.counts)
            errors += result.errors
        if self.rules is not None and self.rules.enabled:
            v4, v6 = 4 in self.paths, 6 in self.paths
            self.rules.ensure_in_pass(self.readiness, self.config.network if v4 else None, self.own.subnet if v4 else None,
                                      self.config.ipv6_network if v6 else None, self.own.ipv6_subnet if v6 else None)
        if reason == "resync" and totals and self.metrics is not None:
            self.metrics.drifted(totals)        # nothing told us: the kernel drifted from the leases
        self._account(f"full reconcile ({reason})", started, totals, errors)

    def incremental_reconcile(self, events: list[LeaseEvent]) -> None:
        started = time.monotonic()
        totals, errors = {}, []
        for path in self.paths.values():
            plan, result = path.incremental(self.own, events)
            merge_counts(totals, result.counts)
            errors += result.errors
        self._account(f"{len(events)} lease events", started, totals, errors)

    def _account(self, what: str, started: float, counts: dict, errors: list) -> None:
        peers = max((len(p.programmed) for p in self.paths.values()), default=0)
        account(what, time.monotonic() - started, counts, errors, peers, self.metrics, self.readiness)

    def _export_lease_ttl(self) -> None:
        """Lease TTL left, and the backend's own watch restarts (reconnects, re-snapshots, re-lists)."""
        self._backend_watch_restarts = export_lease_health(self.metrics, self.backend, self._backend_watch_restarts)

    def shutdown(self) -> None:
        """Stop the loop and the threads; leave the datapath and the lease in place."""
        self.stop.set()
        try:
            self.backend.close()
        except Exception as err:
            log.warning("closing the lease backend: %s", err)
        if self._nl is not None:
            self._nl.close()
