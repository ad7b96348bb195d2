"""Subnet leases from Kubernetes: Node.spec.podCIDR(s) plus flannel's node annotations.

This module is the LeaseBackend; the parts live in kube_client (settings, the API client, errors),
kube_nodes (Node objects as flannel sees them: pure), kube_publish (taking the lease: waiting for
the podCIDR, publishing our annotations, keeping them published) and kube_watch (list then watch
from the opaque resourceVersion, re-list on 410 Gone).
"""
from __future__ import annotations

import logging
import threading
from typing import Iterator, Optional

from .backend import LeaseHealth
from .config import NetConfig, load_net_config
from .kube_client import KubeApi, KubeSettings
from .kube_nodes import Annotations, lease_from_node, lease_or_skip, pod_cidrs
from .kube_publish import Publisher
from .kube_watch import watch_nodes
from .lease import Lease, LeaseEvent

log = logging.getLogger(__name__)

__all__ = ["Annotations", "KubeLeaseBackend", "KubeSettings", "lease_from_node", "pod_cidrs"]


class KubeLeaseBackend:
    """Revisions are Kubernetes resourceVersions: opaque strings, handed back unchanged."""

    def __init__(self, settings: KubeSettings, *, api_client=None) -> None:
        self.settings = settings
        self.ann = Annotations(settings.annotation_prefix)
        self.api = KubeApi(settings, api_client)
        self._closed = threading.Event()
        self._publisher = Publisher(self.api, self.ann, settings, self._closed)
        self._watch_restarts = 0
        self._snap_cache: Optional[tuple[str, dict[str, Lease]]] = None

    # The API client the backend really uses (tests check its socket options).
    def _api(self):
        return self.api.core()

    @property
    def _api_client(self):
        return self.api._api_client

    def node_name(self) -> str:
        return self.api.node_name()

    # ---- LeaseBackend --------------------------------------------------------------------

    def get_network_config(self) -> NetConfig:
        return load_net_config(self.settings.net_config_path)

    def find_own_lease(self, public_ip=None) -> Optional[Lease]:
        return lease_or_skip(self.api.read_node(), self.ann)

    def snapshot(self, *, reuse_start_read: bool = False) -> tuple[list[Lease], str]:
        leases, revision = self.api.list_nodes(self.ann)
        self._snap_cache = (revision, leases)
        return list(leases.values()), revision

    def acquire(self, config: NetConfig, template: Lease, previous_subnet=None, **_ignored) -> Lease:
        """Wait for the node's podCIDR, publish our annotations, mark the network available.

        Blocks (logging why, health().waiting_for set) until the podCIDR exists or close() is
        called; API hiccups are retried with backoff, a podCIDR outside the Network is an error.
        """
        return self._publisher.acquire(config, template)

    def health(self) -> LeaseHealth:
        p = self._publisher
        with p.lock:
            own = p.own
            return LeaseHealth(acquired=own is not None, subnet=own.subnet if own else None,
                               ipv6_subnet=own.ipv6_subnet if own else None,
                               last_error=self.api.last_error, waiting_for=p.waiting_for,
                               watch_restarts=self._watch_restarts)

    def own_lease(self) -> Optional[Lease]:
        with self._publisher.lock:
            return self._publisher.own

    def watch(self, from_revision: str, stop: threading.Event) -> Iterator[list[LeaseEvent]]:
        """Node changes after `from_revision` (snapshot()'s resourceVersion), until `stop` is set."""
        return watch_nodes(self.api, self.ann, from_revision, stop, self._closed,
                           snap_cache=self._snap_cache, on_own_node=self._publisher.keep_published,
                           count_restart=self._count_restart)

    def _count_restart(self) -> None:
        # Counted: a broken watch (error, dropped stream) and a re-list after 410 Gone. Not
        # counted: the server ending a healthy watch after its timeoutSeconds, which is routine.
        with self._publisher.lock:
            self._watch_restarts += 1

    def reconnect(self) -> None:
        """Build a fresh API client on the next call (e.g. the node's own address just changed)."""
        self.api.reset()

    def close(self) -> None:
        self._closed.set()
        self._publisher.stop()
        self.api.reset()
