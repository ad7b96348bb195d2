"""The policy engine: cache -> compile -> apply, in one thread; nothing per packet.

Triggers (watch events, a pod the CNI service just wired, the resync timer) are folded together;
each pass compiles the whole cluster (pure) and applies the difference to the kernel in one nft
transaction (or the whole table on resync), then cuts the conntrack entries of connections the
new rules refuse. A failed transaction is counted and retried with backoff; meanwhile the kernel
keeps the last complete rule set, and a new local pod stays dropped (fail closed).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import logging
import threading
import time
from typing import Callable, Optional

from subnet_lease.backoff import Backoff

from ..masquerade import RulesError
from .apply import Applier
from .cache import PolicyCache
from .compile import NodeInfo, compile_model
from .evaluate import pods_by_ip, still_allowed
from .semantics import Cluster, addressable

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PolicySettings:
    node_name: str
    resync: float = 60.0             # seconds between full table replaces
    log_group: int = 0               # nflog group for denied packets (0: no log)
    log_rate: int = 10               # denied packets logged per second and chain at most
    cut_conntrack: bool = True


@dataclasses.dataclass(frozen=True)
class EngineStatus:
    ok: bool
    reason: str
    warnings: tuple[str, ...] = ()


class PolicyEngine:
    def __init__(self, settings: PolicySettings, cache: PolicyCache, applier: Applier, *,
                 pod_cidrs: Callable[[], tuple] = tuple, node_addresses: Callable[[], tuple] = tuple,
                 metrics=None, watch_errors: Callable[[], dict] = dict,
                 conntrack_cut: Optional[Callable] = None, clock: Callable[[], float] = time.monotonic):
        self.settings, self.cache, self.applier = settings, cache, applier
        self.metrics = metrics
        self._pod_cidrs, self._node_addresses = pod_cidrs, node_addresses
        self._watch_errors = watch_errors
        self._cut = conntrack_cut
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: list[float] = []      # arrival times of triggers not yet enforced
        self._full_due = True
        self._addresses: tuple = ()
        self.last_error: Optional[str] = None
        self.synced_once = False
        self.syncs = 0
        self.stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._hints: dict = {}          # "ns/pod" -> (ips, when): wired by the CNI, status not seen yet
        self._enforced = threading.Condition()
        self._cut_wanted: Optional[Cluster] = None   # the cluster the cut thread should enforce next
        self._cut_event = threading.Event()
        self._sync_seq = 0              # syncs begun
        self._applied_seq = 0           # the last sync (by when it began) whose model is in the kernel

    # -- triggers ------------------------------------------------------------------------------
    def kick(self, arrived: Optional[float] = None) -> None:
        with self._cond:
            self._pending.append(self._clock() if arrived is None else arrived)
            self._cond.notify()

    def pod_wired(self, namespace: str, name: str, ips, wait: float = 2.0) -> bool:
        """The CNI service just gave pod `namespace/name` these addresses (before the kubelet
        reports them). Compile it now, and wait up to `wait` seconds for its entries to be in
        the kernel; True when they are. Until then its addresses stay closed."""
        ips = tuple(str(ipaddress.ip_address(ip)) for ip in ips)
        if not ips:
            return False
        with self._cond:
            self._hints[f"{namespace}/{name}"] = (ips, self._clock())
            after = self._sync_seq          # a sync begun after this one has seen the hint
        self.kick()
        deadline = self._clock() + wait
        with self._enforced:
            while not (self._applied_seq > after and self._known(ips)):
                left = deadline - self._clock()
                if left <= 0 or self.stop.is_set():
                    return False
                self._enforced.wait(min(left, 0.1))
        return True

    def _known(self, ips) -> bool:
        model = self.applier.model
        if model is None:
            return False
        return all(ip in model.sets[f"known{6 if ':' in ip else 4}"].elements for ip in ips)

    def _with_hints(self, cluster: Cluster) -> Cluster:
        """The cluster with the CNI's fresh addresses for pods whose status has not caught up.
        An address a new pod got wins over an old pod the API still lists with it (reuse)."""
        now = self._clock()
        with self._cond:
            for key, (_, when) in list(self._hints.items()):
                pod = cluster.pods.get(key)
                if (pod is not None and pod.ips) or now - when > 300:
                    del self._hints[key]        # the status caught up (or the pod never came)
            hints = {k: ips for k, (ips, _) in self._hints.items()}
        if not hints:
            return cluster
        taken = {ip for ips in hints.values() for ip in ips}
        pods = {}
        for key, pod in cluster.pods.items():
            if key in hints and pod.node == self.settings.node_name:
                pod = dataclasses.replace(pod, ips=hints[key])
            elif taken.intersection(pod.ips):
                pod = dataclasses.replace(pod, ips=tuple(ip for ip in pod.ips if ip not in taken))
            pods[key] = pod
        return Cluster(pods, cluster.namespaces, cluster.policies)

    def request_full(self) -> None:
        with self._cond:
            self._full_due = True
            self._cond.notify()

    # -- the loop ------------------------------------------------------------------------------
    def start(self) -> "PolicyEngine":
        self.ensure_closed()
        self._thread = threading.Thread(target=self.run, name="policy-engine", daemon=True)
        self._thread.start()
        if self._cut is not None and self.settings.cut_conntrack:
            threading.Thread(target=self._cut_loop, name="policy-conntrack-cut", daemon=True).start()
        return self

    def _cut_loop(self) -> None:
        """Cuts run here, never in the engine's loop: walking a busy conntrack table takes
        seconds, and the next change must not wait for it. Only the latest state is cut for."""
        while not self.stop.is_set():
            if not self._cut_event.wait(0.5):
                continue
            self._cut_event.clear()
            with self._cond:
                cluster, self._cut_wanted = self._cut_wanted, None
            if cluster is not None:
                try:
                    self._cut_conntrack(cluster)
                except Exception:
                    log.exception("network policy: conntrack cut failed")

    def close(self) -> None:
        self.stop.set()
        self._cut_event.set()
        with self._cond:
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(10)

    def ensure_closed(self) -> None:
        """Before the first list: when no table of ours exists, put one in that lets no local pod
        talk (every local address is "not compiled yet"); a table a previous run left stays."""
        try:
            if not self.applier.present():
                self.applier.replace(compile_model(Cluster.of(), self._node()))
                log.info("network policy: no pods known yet; this node's pods are closed until the first sync")
        except RulesError as err:
            self.last_error = f"nft: {err}"
            log.error("network policy: cannot install the closed table: %s", err)

    def run(self) -> None:
        backoff = Backoff(0.1, 10.0)
        next_full = self._clock() + self.settings.resync
        retry_at = None
        while not self.stop.is_set():
            with self._cond:
                while not self.stop.is_set():
                    now = self._clock()
                    if retry_at is not None:
                        if now >= retry_at:
                            break
                        self._cond.wait(retry_at - now)
                        continue
                    if (self._pending or self._full_due) and self.cache.synced:
                        break
                    if now >= next_full:
                        self._full_due = True
                        if self.cache.synced:
                            break
                    self._cond.wait(max(0.05, min(1.0, next_full - now)))
                if self.stop.is_set():
                    return
                pending, self._pending = self._pending, []
                full, self._full_due = self._full_due, False
            if not self.cache.synced:
                retry_at = None
                with self._cond:
                    self._pending[:0] = pending
                    self._full_due = self._full_due or full
                continue
            if full:
                next_full = self._clock() + self.settings.resync
            try:
                ok = self.sync(full=full, pending=pending)
            except Exception as err:      # a bug must not end enforcement: log, count, retry
                log.exception("network policy: sync failed")
                self.last_error = f"sync: {type(err).__name__}: {err}"
                ok = False
            if ok:
                backoff.reset()
                retry_at = None
            else:
                with self._cond:
                    self._pending[:0] = pending
                    self._full_due = True
                retry_at = self._clock() + backoff.next()

    def _node(self) -> NodeInfo:
        return NodeInfo(self.settings.node_name, tuple(str(c) for c in self._pod_cidrs() if c),
                        self._addresses, self.settings.log_group, self.settings.log_rate)

    def sync(self, full: bool = False, pending: Optional[list] = None) -> bool:
        """One pass; True when the kernel holds the current model."""
        started = self._clock()
        with self._cond:
            self._sync_seq += 1
            seq = self._sync_seq
        if full or not self._addresses:
            try:
                self._addresses = tuple(self._node_addresses())
            except Exception as err:
                log.warning("network policy: cannot read the node's addresses: %s", err)
        cluster = self._with_hints(self.cache.cluster())
        node = self._node()
        try:
            model = compile_model(cluster, node)
        except Exception as err:       # a bug, not bad input (the cache filters that): keep going
            log.exception("network policy: compile failed")
            self.last_error = f"compile: {err}"
            return False
        previous = self.applier.model
        try:
            if full:
                self.applier.replace(model)
                how = "full"
            else:
                how = self.applier.update(model)
        except RulesError as err:
            self.last_error = f"nft: {err}"
            if self.metrics is not None:
                self.metrics.nft_failures.inc()
            log.warning("network policy: nft transaction failed (will retry): %s", err)
            return False
        done = self._clock()
        with self._enforced:
            self._applied_seq = max(self._applied_seq, seq)
            self._enforced.notify_all()
        self.last_error = None
        self.synced_once = True
        self.syncs += 1
        if self.metrics is not None:
            self.metrics.model_applied(model.stats)
            self.metrics.bad_objects.set(len(self.cache.bad()))
            if how != "none":
                self.metrics.sync_duration.labels(kind=how).observe(done - started)
            for arrived in pending or ():
                self.metrics.event_to_enforced.observe(max(0.0, done - arrived))
        if how != "none":
            st = model.stats
            log.info("network policy: %s sync in %.0f ms: %d policies on %d of %d local pods, %d elements",
                     how, (done - started) * 1000, st.policies, st.pods_selected, st.local_pods, st.elements)
        if how != "none" and previous is not None and previous != model and self._cut is not None \
                and self.settings.cut_conntrack:
            with self._cond:
                self._cut_wanted = cluster
            self._cut_event.set()
        return True

    def _cut_conntrack(self, cluster: Cluster) -> None:
        by_ip = pods_by_ip(cluster)
        name = self.settings.node_name
        local = {ip for p in cluster.pods.values() if p.node == name and addressable(p) for ip in p.ips}
        if not local:
            return
        try:
            n = self._cut(lambda s, d, proto, port: still_allowed(cluster, by_ip, name, s, d, proto, port), local)
        except Exception as err:
            log.warning("network policy: conntrack cut failed: %s", err)
            return
        if n:
            log.info("network policy: cut %d connection(s) the policies no longer allow", n)
            if self.metrics is not None:
                self.metrics.conntrack_cut.inc(n)

    # -- what /readyz says ---------------------------------------------------------------------
    def status(self) -> EngineStatus:
        warnings = tuple(sorted(self.cache.bad().values()))
        problems = []
        unsynced = self.cache.unsynced()
        if unsynced:
            problems.append(f"network policy: not listed yet: {', '.join(unsynced)}")
        for kind, err in sorted(self._watch_errors().items()):
            problems.append(f"network policy watch {kind}: {err}")
        if self.last_error:
            problems.append(f"network policy: {self.last_error}")
        if not problems and not self.synced_once:
            problems.append("network policy: first sync pending")
        if problems:
            return EngineStatus(False, "; ".join(problems), warnings)
        return EngineStatus(True, "network policy enforced", warnings)


def ip_family_cidrs(*cidrs) -> tuple:
    return tuple(str(ipaddress.ip_network(c, strict=False)) for c in cidrs if c)
