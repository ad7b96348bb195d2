"""`--network-policy`: the watcher, the engine and their metrics, put together for the daemon.

The daemon calls on_lease() before it writes the subnet file (so the closed table is in before
the first pod can be wired), start() once its lease is held, status() for /readyz, close().
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Callable, Optional

from ..masquerade import CommandRunner
from .apply import Applier
from .cache import PolicyCache
from ..netlink_conntrack import cut
from .engine import PolicyEngine, PolicySettings
from .metrics import PolicyMetrics

log = logging.getLogger(__name__)


def node_addresses(runner: CommandRunner) -> tuple:
    """Every address of this network namespace (the node's own; traffic from them is allowed)."""
    proc = runner.run(["ip", "-j", "address", "show"])
    return tuple(a["local"] for link in json.loads(proc.stdout or "[]") for a in link.get("addr_info", ())
                 if a.get("local") and a.get("scope") != "host")


class PolicyAgent:
    def __init__(self, *, node_name: Callable[[], str], api_client_factory: Callable[[], object],
                 registry, log_group: int = 0, resync: float = 60.0,
                 runner: CommandRunner = CommandRunner()):
        self._node_name = node_name
        self._api_client_factory = api_client_factory
        self._runner = runner
        self._cidrs: tuple = ()
        self.cache = PolicyCache()
        self.applier = Applier(runner)
        self.stop = threading.Event()
        self.watcher = None
        self.metrics = PolicyMetrics(registry, read_counters=self.applier.counters,
                                     counter_names=self._counter_names)
        self._settings = dict(log_group=log_group, resync=resync)
        self.engine: Optional[PolicyEngine] = None
        self._closed_once = False

    def _counter_names(self) -> dict:
        model = self.applier.model
        return dict(model.counter_of) if model is not None else {}

    def _make_engine(self, node: str) -> PolicyEngine:
        return PolicyEngine(PolicySettings(node, **self._settings), self.cache, self.applier,
                            pod_cidrs=lambda: self._cidrs, node_addresses=lambda: node_addresses(self._runner),
                            metrics=self.metrics, watch_errors=lambda: self.watcher.errors() if self.watcher else {},
                            conntrack_cut=cut)

    def on_lease(self, lease) -> None:
        """This node's pod subnets (start-up and a moved lease): closed table first, then a full sync."""
        self._cidrs = tuple(str(n) for n in (getattr(lease, "subnet", None), getattr(lease, "ipv6_subnet", None)) if n)
        if self.engine is None:
            if not self._closed_once:
                PolicyEngine(PolicySettings(""), self.cache, self.applier,
                             pod_cidrs=lambda: self._cidrs).ensure_closed()
                self._closed_once = True
        else:
            self.engine.request_full()

    def start(self) -> None:
        node = self._node_name()
        self.engine = self._make_engine(node)
        self.engine.start()
        from .watch import Watcher
        self.watcher = Watcher(self._api_client_factory(), self.cache, self.engine.kick, self.stop,
                               on_restart=self.metrics.watch_restarts.inc).start()
        log.info("network policy on for node %s (nft table inet %s)", node, self.applier.table)

    def pod_wired(self, namespace: str, name: str, ips) -> bool:
        """The CNI service's hook after a successful ADD (see PolicyEngine.pod_wired)."""
        engine = self.engine
        if engine is None:
            return False
        try:
            return engine.pod_wired(namespace, name, ips)
        except Exception as err:        # never fail a pod's ADD for this: it stays closed instead
            log.warning("network policy: pod %s/%s wired, not compiled yet: %s", namespace, name, err)
            return False

    def cni_added(self, environ: dict, result: bytes) -> None:
        """CniService's on_added: the pod's namespace/name (CNI_ARGS) and addresses (the result)."""
        args = dict(kv.partition("=")[::2] for kv in environ.get("CNI_ARGS", "").split(";") if "=" in kv)
        ns, name = args.get("K8S_POD_NAMESPACE"), args.get("K8S_POD_NAME")
        if not ns or not name:
            return                      # not a Kubernetes pod: nothing to bind
        try:
            ips = [ip["address"].split("/")[0] for ip in json.loads(result or b"{}").get("ips", ())]
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        if ips and not self.pod_wired(ns, name, ips):
            log.info("network policy: pod %s/%s (%s) stays closed until its Pod object is seen",
                     ns, name, ", ".join(ips))

    def status(self):
        if self.engine is None:
            from .engine import EngineStatus
            return EngineStatus(False, "network policy: starting")
        return self.engine.status()

    def close(self) -> None:
        self.stop.set()
        if self.watcher is not None:
            self.watcher.close()
        if self.engine is not None:
            self.engine.close()

