"""Taking this node's lease in kube mode, and keeping it published.

The subnet is the one the controller-manager gave the node (`--allocate-node-cidrs`); we never
choose it. We publish our backend data as annotations (patching through the nodes/status
subresource as flanneld does: the RBAC flannel's manifests grant), and set
NetworkUnavailable=False once up. If someone removes or edits our annotations later, we publish
them again, rate-limited.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Optional

from .backend import BackendUnavailable, LeaseError
from .backoff import Backoff
from .config import ConfigError, NetConfig
from .kube_client import KubeApi, KubeSettings
from .kube_nodes import Annotations, network_available, now_rfc3339, overwrite_address, pod_cidrs
from .lease import Lease

log = logging.getLogger(__name__)

# Publishing our annotations again (someone changed them): at most once per step of a backoff
# growing to this; a quiet spell this long starts it over.
REPUBLISH_BACKOFF_MAX = 60.0
REPUBLISH_QUIET = 600.0


class Publisher:
    """The own lease (shared with health()) and what publishes it."""

    def __init__(self, api: KubeApi, ann: Annotations, settings: KubeSettings, closed: threading.Event) -> None:
        self.api = api
        self.ann = ann
        self.settings = settings
        self.closed = closed
        self.lock = threading.Lock()
        self.own: Optional[Lease] = None
        self.waiting_for: Optional[str] = None
        self.publishing: Optional[Lease] = None      # being published by a running acquire()
        # Publishing again after someone changed our annotations: at most once per backoff
        # step, so a fight with another writer costs the API server little.
        self._republish_backoff = Backoff(settings.backoff_initial, REPUBLISH_BACKOFF_MAX)
        self._republish_at = 0.0
        self._republished = float("-inf")
        self._republish_timer: Optional[threading.Timer] = None

    def acquire(self, config: NetConfig, template: Lease) -> Lease:
        """Wait for the node's podCIDR, publish our annotations, mark the network available.

        Blocks (logging why, health().waiting_for set) until the podCIDR exists or close() is
        called; API hiccups are retried with backoff, a podCIDR outside the Network is an error.
        """
        backoff = Backoff(self.settings.backoff_initial, self.settings.backoff_max)
        while True:
            if self.closed.is_set():
                raise LeaseError("closed while waiting for the node's podCIDR")
            try:
                node = self.api.read_node()
                lease = self._acquire_from(node, config, template)
                if lease is not None:
                    break
                delay = self.settings.podcidr_poll_interval
            except BackendUnavailable as err:
                log.warning("%s; retrying", err)
                delay = backoff.next()
            self.closed.wait(delay)
        with self.lock:
            self.own, self.waiting_for, self.api.last_error = lease, None, None
            self.publishing = None
        return lease

    def _acquire_from(self, node: dict, config: NetConfig, template: Lease) -> Optional[Lease]:
        name = node["metadata"]["name"]
        v4, v6 = pod_cidrs(node)
        want4, want6 = config.enable_ipv4, config.enable_ipv6
        if (want4 and v4 is None) or (want6 and v6 is None):
            missing = "Node.spec.podCIDR" if want4 and v4 is None else "an IPv6 entry in Node.spec.podCIDRs"
            reason = (f"node {name} has no {missing} yet; waiting for the controller-manager "
                      f"(--allocate-node-cidrs) to assign one")
            if self.waiting_for != reason:
                log.warning("%s", reason)
            with self.lock:
                self.waiting_for = reason
            return None
        if want4 and not v4.subnet_of(config.network):
            raise ConfigError(f"node {name}: Node.spec.podCIDR {v4} is not inside Network "
                              f"{config.network}; make the controller-manager's --cluster-cidr "
                              f"match net-conf.json")
        if want6 and not v6.subnet_of(config.ipv6_network):
            raise ConfigError(f"node {name}: IPv6 podCIDR {v6} is not inside IPv6Network "
                              f"{config.ipv6_network}")
        a = (node.get("metadata") or {}).get("annotations") or {}
        ann = self.ann
        public_ip = template.public_ip
        public_ipv6 = template.public_ipv6
        if a.get(ann.public_ip_overwrite):
            public_ip = overwrite_address(name, ann.public_ip_overwrite, a[ann.public_ip_overwrite], 4)
            log.info("using %s from %s", public_ip, ann.public_ip_overwrite)
        if a.get(ann.public_ipv6_overwrite):
            public_ipv6 = overwrite_address(name, ann.public_ipv6_overwrite, a[ann.public_ipv6_overwrite], 6)
            log.info("using %s from %s", public_ipv6, ann.public_ipv6_overwrite)
        lease = Lease(subnet=v4 if want4 else None, public_ip=public_ip if want4 else None,
                      backend_type=template.backend_type, backend_data=dict(template.backend_data),
                      ipv6_subnet=v6 if want6 else None, public_ipv6=public_ipv6 if want6 else None,
                      backend_v6_data=dict(template.backend_v6_data or template.backend_data) if want6 else {},
                      node_name=name)
        want = self._annotations_for(lease)
        patch: dict = {}
        if any(a.get(k) != v for k, v in want.items()):
            patch["metadata"] = {"annotations": want}
        if self.settings.set_network_unavailable and not network_available(node):
            now = now_rfc3339()
            patch["status"] = {"conditions": [{
                "type": "NetworkUnavailable", "status": "False", "reason": "FlannelIsUp",
                "message": "overlayd is running on this node",
                "lastTransitionTime": now, "lastHeartbeatTime": now}]}
        if patch:
            with self.lock:
                # What we are about to publish is what our own Node's watch events are compared
                # with from now on: not the lease this acquire replaces (that would patch it back).
                self.publishing = lease
            self._patch_status(name, patch)
        return lease

    def _annotations_for(self, lease: Lease) -> dict:
        """The node annotations that publish `lease` (flannel's keys under our prefix)."""
        ann = self.ann
        want = {ann.kube_subnet_manager: "true", ann.backend_type: lease.backend_type}
        if lease.subnet is not None:
            want[ann.backend_data] = json.dumps(lease.backend_data, separators=(",", ":"))
            want[ann.public_ip] = str(lease.public_ip)
        if lease.ipv6_subnet is not None:
            want[ann.backend_v6_data] = json.dumps(lease.backend_v6_data, separators=(",", ":"))
            want[ann.public_ipv6] = str(lease.public_ipv6)
        return want

    def _patch_status(self, name: str, patch: dict) -> None:
        self.api.call(f"patch node {name} status", lambda c: c.patch_node_status(
            name, patch, _content_type="application/strategic-merge-patch+json",
            _preload_content=False, _request_timeout=self.api.timeout()))

    def keep_published(self, node: dict) -> None:
        """Our own Node changed: if someone removed or edited our annotations, publish them again
        (peers would otherwise drop this node until the daemon restarts). Rate-limited: if
        another writer keeps changing them, we patch at most once per backoff step (up to
        REPUBLISH_BACKOFF_MAX) and check again when the step is over."""
        with self.lock:
            own = self.publishing or self.own
        if own is None:
            return
        name = node["metadata"]["name"]
        have = (node.get("metadata") or {}).get("annotations") or {}
        want = self._annotations_for(own)
        if all(have.get(k) == v for k, v in want.items()):
            return
        now = time.monotonic()
        with self.lock:
            if now < self._republish_at:       # too soon: look again when the step is over
                if self._republish_timer is None and not self.closed.is_set():
                    self._republish_timer = threading.Timer(self._republish_at - now, self._recheck_published)
                    self._republish_timer.daemon = True
                    self._republish_timer.start()
                return
            if now - self._republished > REPUBLISH_QUIET:
                self._republish_backoff.reset()
            self._republished = now
            self._republish_at = now + self._republish_backoff.next()
        log.warning("node %s: our annotations were removed or changed; publishing them again", name)
        try:
            self._patch_status(name, {"metadata": {"annotations": want}})
        except (BackendUnavailable, LeaseError) as err:
            log.warning("node %s: cannot publish the annotations again: %s; retried on the next change", name, err)

    def _recheck_published(self) -> None:
        with self.lock:
            self._republish_timer = None
        if self.closed.is_set():
            return
        try:
            self.keep_published(self.api.read_node())
        except (BackendUnavailable, LeaseError, ConfigError) as err:
            log.warning("checking our node's annotations: %s", err)

    def stop(self) -> None:
        with self.lock:
            timer, self._republish_timer = self._republish_timer, None
        if timer is not None:
            timer.cancel()
