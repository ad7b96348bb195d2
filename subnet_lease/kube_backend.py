"""Subnet leases from Kubernetes: Node.spec.podCIDR(s) plus flannel's node annotations.

The subnet is the one the controller-manager gave the node (`--allocate-node-cidrs`); we never
choose it. We publish our backend data as annotations under a configurable prefix
(flannel.alpha.coreos.com by default), patching through the nodes/status subresource as
flanneld does (the RBAC flannel's manifests grant), and set NetworkUnavailable=False once up.

Peers: list nodes, then watch from the list's resourceVersion; a 410 Gone (as an HTTP status
or an ERROR event) means our resourceVersion is too old: list again and emit the difference.
Only nodes that carry the annotations and a podCIDR are peers. Objects are read as plain JSON
(`_preload_content=False`), so nothing above this module sees a client model.
"""
from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import json
import logging
import queue
import threading
import time
from typing import Any, Callable, Iterator, Optional

from .backend import BackendUnavailable, LeaseError, LeaseHealth, diff_leases
from .backoff import Backoff
from .defaults import ANNOTATION_PREFIX, NET_CONFIG_PATH
from .config import ConfigError, NetConfig, load_net_config
from .lease import Lease, LeaseEvent, LeaseFormatError, build_lease

log = logging.getLogger(__name__)

# Publishing our annotations again (someone changed them): at most once per step of a backoff
# growing to this; a quiet spell this long starts it over.
REPUBLISH_BACKOFF_MAX = 60.0
REPUBLISH_QUIET = 600.0


@dataclasses.dataclass(frozen=True)
class KubeSettings:
    node_name: Optional[str] = None          # NODE_NAME; else the spec.nodeName of our pod
    pod_name: Optional[str] = None
    pod_namespace: Optional[str] = None
    api_url: Optional[str] = None            # --kube-api-url
    kubeconfig: Optional[str] = None         # --kubeconfig-file
    annotation_prefix: str = ANNOTATION_PREFIX
    net_config_path: str = NET_CONFIG_PATH
    set_network_unavailable: bool = True
    podcidr_poll_interval: float = 5.0       # while waiting for the controller-manager
    watch_timeout: int = 300                 # server-side timeoutSeconds of one watch request
    request_timeout: float = 30.0
    backoff_initial: float = 0.2
    backoff_max: float = 10.0

    def __post_init__(self):
        prefix = self.annotation_prefix
        if not prefix or "/" in prefix or " " in prefix:
            raise ConfigError(f"--kube-annotation-prefix {prefix!r} must be a DNS-style prefix "
                              f"such as flannel.alpha.coreos.com")


class Annotations:
    """flannel's node annotation keys under a prefix."""

    def __init__(self, prefix: str) -> None:
        self.kube_subnet_manager = f"{prefix}/kube-subnet-manager"
        self.backend_type = f"{prefix}/backend-type"
        self.backend_data = f"{prefix}/backend-data"
        self.backend_v6_data = f"{prefix}/backend-v6-data"
        self.public_ip = f"{prefix}/public-ip"
        self.public_ipv6 = f"{prefix}/public-ipv6"
        self.public_ip_overwrite = f"{prefix}/public-ip-overwrite"
        self.public_ipv6_overwrite = f"{prefix}/public-ipv6-overwrite"


def pod_cidrs(node: dict) -> tuple[Optional[ipaddress.IPv4Network], Optional[ipaddress.IPv6Network]]:
    spec = node.get("spec") or {}
    raw = list(spec.get("podCIDRs") or [])
    if spec.get("podCIDR") and spec["podCIDR"] not in raw:
        raw.insert(0, spec["podCIDR"])
    v4 = v6 = None
    for text in raw:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            log.warning("node %s: ignoring podCIDR %r", node.get("metadata", {}).get("name"), text)
            continue
        if net.version == 4 and v4 is None:
            v4 = net
        elif net.version == 6 and v6 is None:
            v6 = net
    return v4, v6


def lease_from_node(node: dict, ann: Annotations) -> Optional[Lease]:
    """The peer lease a node stands for, or None if it does not carry flannel's annotations.

    Raises LeaseFormatError (naming the node, the annotation and the value) if it carries them
    but they are malformed; the backend then skips the node with a warning.
    """
    meta = node.get("metadata") or {}
    a = meta.get("annotations") or {}
    name = meta.get("name")
    v4, v6 = pod_cidrs(node)
    if (v4 is None and v6 is None) or ann.backend_type not in a:
        return None
    if ann.public_ip not in a and ann.public_ipv6 not in a:
        return None
    where = f"node {name!r}"

    def data(key):
        text = a.get(key)
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise LeaseFormatError(f"{where}: annotation {key} {text!r} is not JSON") from None

    def public(overwrite, key, version):
        # The node's own overlayd copies a valid overwrite into public-ip; prefer it here too.
        # A malformed one is that node's start-up error (ConfigError there), not a reason to
        # drop a peer that still works: fall back to the address it published.
        text = a.get(overwrite)
        if text:
            try:
                if ipaddress.ip_address(text).version == version:
                    return text
            except ValueError:
                pass
            log.warning("%s: ignoring annotation %s %r (not an IPv%d address)", where, overwrite,
                        text, version)
        return a.get(key)

    public_ipv6 = public(ann.public_ipv6_overwrite, ann.public_ipv6, 6)
    fields = {"PublicIP": public(ann.public_ip_overwrite, ann.public_ip, 4),
              "BackendType": a.get(ann.backend_type), "BackendData": data(ann.backend_data)}
    if public_ipv6:
        fields.update(PublicIPv6=public_ipv6, BackendV6Data=data(ann.backend_v6_data))
    labels = {"PublicIP": f"annotation {ann.public_ip}", "PublicIPv6": f"annotation {ann.public_ipv6}",
              "BackendType": f"annotation {ann.backend_type}",
              "BackendData": f"annotation {ann.backend_data}",
              "BackendV6Data": f"annotation {ann.backend_v6_data}"}
    return build_lease(where, fields, subnet=v4, ipv6_subnet=v6 if public_ipv6 else None,
                       labels=labels, node_name=name)


def _lease_or_skip(node: dict, ann: Annotations) -> Optional[Lease]:
    """lease_from_node, with a malformed node logged and treated as no peer at all."""
    try:
        return lease_from_node(node, ann)
    except LeaseFormatError as err:
        log.warning("ignoring %s", err)
        return None


def _revision(text: Any) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return 0


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeLeaseBackend:
    def __init__(self, settings: KubeSettings, *, api_client=None) -> None:
        self.settings = settings
        self.ann = Annotations(settings.annotation_prefix)
        self._api_client = api_client
        self._core = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._own: Optional[Lease] = None
        self._node_name: Optional[str] = settings.node_name
        self._waiting_for: Optional[str] = None
        self._last_error: Optional[str] = None
        self._watch_restarts = 0
        self._snap_cache: Optional[tuple[int, dict[str, Lease]]] = None
        self._publishing: Optional[Lease] = None      # being published by a running acquire()
        # Publishing again after someone changed our annotations: at most once per backoff
        # step, so a fight with another writer costs the API server little.
        self._republish_backoff = Backoff(settings.backoff_initial, REPUBLISH_BACKOFF_MAX)
        self._republish_at = 0.0
        self._republished = float("-inf")
        self._republish_timer: Optional[threading.Timer] = None

    # ---- the API -------------------------------------------------------------------------

    def _api(self):
        if self._core is None:
            from kubernetes import client, config
            from kubernetes.utils.keepalive import tcp_keepalive_socket_options
            if self._api_client is None:
                s = self.settings
                cfg = client.Configuration()
                # TCP keepalive, so a watch whose connection died silently (the node's address
                # changed, a load balancer dropped it) fails in ~25 s, not at its 330 s read timeout.
                cfg.socket_options = tcp_keepalive_socket_options(idle=10, interval=5, count=3)
                if s.kubeconfig:
                    config.load_kube_config(config_file=s.kubeconfig, client_configuration=cfg)
                    if s.api_url:
                        cfg.host = s.api_url
                elif s.api_url:
                    cfg.host = s.api_url
                else:
                    try:
                        config.load_incluster_config(client_configuration=cfg)
                    except config.ConfigException as err:
                        raise ConfigError(f"not running in a cluster ({err}); pass --kubeconfig-file "
                                          f"or --kube-api-url") from None
                api_client = client.ApiClient(cfg)
                self._api_client = api_client
            self._core = client.CoreV1Api(self._api_client)
        return self._core

    def _call(self, what: str, fn: Callable[[Any], Any], *, json_body: bool = True):
        from kubernetes.client.exceptions import ApiException
        import urllib3
        try:
            resp = fn(self._api())
        except ApiException as err:
            if err.status == 410:
                raise _Gone() from None
            msg = f"Kubernetes API {what}: HTTP {err.status} {err.reason}"
            if err.status in (401, 403):
                msg += " (check the service account's RBAC: nodes get/list/watch, nodes/status patch)"
            self._last_error = msg
            if err.status == 404:
                raise LeaseError(msg) from None
            raise BackendUnavailable(msg) from None
        except (urllib3.exceptions.HTTPError, OSError) as err:
            msg = f"Kubernetes API {what}: {err}"
            self._last_error = msg
            raise BackendUnavailable(msg) from None
        self._last_error = None          # the API answered: what failed before is over
        if not json_body:
            return resp
        try:
            return json.loads(resp.data)
        finally:
            resp.release_conn()

    def _t(self) -> float:
        return self.settings.request_timeout

    def node_name(self) -> str:
        if self._node_name:
            return self._node_name
        s = self.settings
        if not (s.pod_name and s.pod_namespace):
            raise ConfigError("the node name is unknown: set NODE_NAME (fieldRef spec.nodeName) or "
                              "--node-name, or POD_NAME and POD_NAMESPACE")
        pod = self._call("read pod", lambda c: c.read_namespaced_pod(
            s.pod_name, s.pod_namespace, _preload_content=False, _request_timeout=self._t()))
        name = (pod.get("spec") or {}).get("nodeName")
        if not name:
            raise LeaseError(f"pod {s.pod_namespace}/{s.pod_name} has no spec.nodeName yet")
        self._node_name = name
        return name

    def _read_node(self) -> dict:
        name = self.node_name()
        return self._call(f"read node {name}", lambda c: c.read_node(
            name, _preload_content=False, _request_timeout=self._t()))

    def _list(self) -> tuple[dict[str, Lease], int]:
        doc = self._call("list nodes", lambda c: c.list_node(
            _preload_content=False, _request_timeout=self._t()))
        leases = {}
        for node in doc.get("items") or []:
            lease = _lease_or_skip(node, self.ann)
            if lease is not None:
                leases[lease.node_name] = lease
        return leases, _revision((doc.get("metadata") or {}).get("resourceVersion"))

    # ---- LeaseBackend --------------------------------------------------------------------

    def get_network_config(self) -> NetConfig:
        return load_net_config(self.settings.net_config_path)

    def find_own_lease(self, public_ip=None) -> Optional[Lease]:
        return _lease_or_skip(self._read_node(), self.ann)

    def snapshot(self, *, reuse_start_read: bool = False) -> tuple[list[Lease], int]:
        leases, revision = self._list()
        self._snap_cache = (revision, leases)
        return list(leases.values()), revision

    def acquire(self, config: NetConfig, template: Lease, previous_subnet=None, **_ignored) -> Lease:
        """Wait for the node's podCIDR, publish our annotations, mark the network available.

        Blocks (logging why, health().waiting_for set) until the podCIDR exists or close() is
        called; API hiccups are retried with backoff, a podCIDR outside the Network is an error.
        """
        backoff = Backoff(self.settings.backoff_initial, self.settings.backoff_max)
        while True:
            if self._closed.is_set():
                raise LeaseError("closed while waiting for the node's podCIDR")
            try:
                node = self._read_node()
                lease = self._acquire_from(node, config, template)
                if lease is not None:
                    break
                delay = self.settings.podcidr_poll_interval
            except BackendUnavailable as err:
                log.warning("%s; retrying", err)
                delay = backoff.next()
            self._closed.wait(delay)
        with self._lock:
            self._own, self._waiting_for, self._last_error = lease, None, None
            self._publishing = None
        return lease

    def _acquire_from(self, node: dict, config: NetConfig, template: Lease) -> Optional[Lease]:
        name = node["metadata"]["name"]
        v4, v6 = pod_cidrs(node)
        want4, want6 = config.enable_ipv4, config.enable_ipv6
        if (want4 and v4 is None) or (want6 and v6 is None):
            missing = "Node.spec.podCIDR" if want4 and v4 is None else "an IPv6 entry in Node.spec.podCIDRs"
            reason = (f"node {name} has no {missing} yet; waiting for the controller-manager "
                      f"(--allocate-node-cidrs) to assign one")
            if self._waiting_for != reason:
                log.warning("%s", reason)
            with self._lock:
                self._waiting_for = reason
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
            public_ip = _overwrite(name, ann.public_ip_overwrite, a[ann.public_ip_overwrite], 4)
            log.info("using %s from %s", public_ip, ann.public_ip_overwrite)
        if a.get(ann.public_ipv6_overwrite):
            public_ipv6 = _overwrite(name, ann.public_ipv6_overwrite, a[ann.public_ipv6_overwrite], 6)
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
        if self.settings.set_network_unavailable and not _network_available(node):
            now = _now()
            patch["status"] = {"conditions": [{
                "type": "NetworkUnavailable", "status": "False", "reason": "FlannelIsUp",
                "message": "overlayd is running on this node",
                "lastTransitionTime": now, "lastHeartbeatTime": now}]}
        if patch:
            with self._lock:
                # What we are about to publish is what our own Node's watch events are compared
                # with from now on: not the lease this acquire replaces (that would patch it back).
                self._publishing = lease
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
        self._call(f"patch node {name} status", lambda c: c.patch_node_status(
            name, patch, _content_type="application/strategic-merge-patch+json",
            _preload_content=False, _request_timeout=self._t()))

    def _keep_published(self, node: dict) -> None:
        """Our own Node changed: if someone removed or edited our annotations, publish them again
        (peers would otherwise drop this node until the daemon restarts). Rate-limited: if
        another writer keeps changing them, we patch at most once per backoff step (up to
        REPUBLISH_BACKOFF_MAX) and check again when the step is over."""
        with self._lock:
            own = self._publishing or self._own
        if own is None:
            return
        name = node["metadata"]["name"]
        have = (node.get("metadata") or {}).get("annotations") or {}
        want = self._annotations_for(own)
        if all(have.get(k) == v for k, v in want.items()):
            return
        now = time.monotonic()
        with self._lock:
            if now < self._republish_at:       # too soon: look again when the step is over
                if self._republish_timer is None and not self._closed.is_set():
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
        with self._lock:
            self._republish_timer = None
        if self._closed.is_set():
            return
        try:
            self._keep_published(self._read_node())
        except (BackendUnavailable, LeaseError, ConfigError) as err:
            log.warning("checking our node's annotations: %s", err)

    def health(self) -> LeaseHealth:
        with self._lock:
            own = self._own
            return LeaseHealth(acquired=own is not None, subnet=own.subnet if own else None,
                               ipv6_subnet=own.ipv6_subnet if own else None,
                               last_error=self._last_error, waiting_for=self._waiting_for,
                               watch_restarts=self._watch_restarts)

    def own_lease(self) -> Optional[Lease]:
        with self._lock:
            return self._own

    # ---- watching ------------------------------------------------------------------------

    def watch(self, from_revision: int, stop: threading.Event) -> Iterator[list[LeaseEvent]]:
        """Node changes after `from_revision` (snapshot()'s resourceVersion), until `stop` is set."""
        backoff = Backoff(self.settings.backoff_initial, self.settings.backoff_max)
        cache = self._snap_cache
        known: dict[str, Lease] = dict(cache[1]) if cache and cache[0] == from_revision else {}
        revision = from_revision
        while not stop.is_set() and not self._closed.is_set():
            stream = None
            try:
                stream = _Stream(self, revision)
                while not stop.is_set() and not self._closed.is_set():
                    try:
                        item = stream.events.get(timeout=0.5)
                    except queue.Empty:
                        continue
                    if item is _Stream.END:        # the server ended this watch: watch again
                        break
                    if isinstance(item, BaseException):
                        raise item
                    etype, obj = item.get("type"), item.get("object") or {}
                    if etype == "ERROR":
                        if obj.get("code") == 410:
                            raise _Gone()
                        raise BackendUnavailable(f"watch error: {obj.get('message') or obj}")
                    revision = max(revision, _revision((obj.get("metadata") or {}).get("resourceVersion")))
                    if etype == "BOOKMARK":
                        continue
                    batch = self._apply(etype, obj, known)
                    backoff.reset()
                    if batch:
                        yield batch
            except _Gone:
                log.warning("resourceVersion %d is too old (410 Gone); listing nodes again", revision)
                self._count_restart()
                try:
                    fresh, new_revision = self._list()
                except (BackendUnavailable, LeaseError) as err:
                    log.warning("%s", err)
                    stop.wait(backoff.next())
                    continue
                events = diff_leases(known, fresh)
                known, revision = fresh, new_revision
                if events:
                    yield events
            except (BackendUnavailable, LeaseError) as err:
                log.warning("watching nodes: %s; reconnecting", err)
                self._count_restart()
                stop.wait(backoff.next())
            finally:
                if stream is not None:
                    stream.close()

    def _count_restart(self) -> None:
        # Counted: a broken watch (error, dropped stream) and a re-list after 410 Gone. Not
        # counted: the server ending a healthy watch after its timeoutSeconds, which is routine.
        with self._lock:
            self._watch_restarts += 1

    def _apply(self, etype: str, obj: dict, known: dict[str, Lease]) -> list[LeaseEvent]:
        name = (obj.get("metadata") or {}).get("name")
        if etype != "DELETED" and name is not None and name == self._node_name:
            self._keep_published(obj)
        old = known.get(name)
        # A node whose annotations turned malformed is dropped, as a fresh list would drop it.
        new = None if etype == "DELETED" else _lease_or_skip(obj, self.ann)
        if new == old:
            return []
        batch = []
        if old is not None and (new is None or (old.subnet, old.ipv6_subnet) != (new.subnet, new.ipv6_subnet)):
            batch.append(LeaseEvent("removed", old))
        if new is not None:
            batch.append(LeaseEvent("added", new))
            known[name] = new
        else:
            known.pop(name, None)
        return batch

    def reconnect(self) -> None:
        """Build a fresh API client on the next call (e.g. the node's own address just changed)."""
        client, self._api_client, self._core = self._api_client, None, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            timer, self._republish_timer = self._republish_timer, None
        if timer is not None:
            timer.cancel()
        self.reconnect()


def _overwrite(node: str, key: str, text: str, version: int):
    """The address in a public-ip(v6)-overwrite annotation; ConfigError naming it if malformed."""
    example = "203.0.113.9" if version == 4 else "2001:db8::9"
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        addr = None
    if addr is None or addr.version != version:
        raise ConfigError(f"node {node}: annotation {key}={text!r} is not an IPv{version} address; "
                          f"set it to this node's public IPv{version} address (e.g. "
                          f"kubectl annotate --overwrite node {node} {key}={example}) or remove it "
                          f"(kubectl annotate node {node} {key}-)")
    return addr


def _network_available(node: dict) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "NetworkUnavailable":
            return cond.get("status") == "False"
    return False


class _Gone(Exception):
    """HTTP 410: the resourceVersion we asked for is older than the server keeps."""


class _Stream:
    """One watch request read by a helper thread, so the generator can check `stop` every 0.5 s."""

    END = object()

    def __init__(self, backend: KubeLeaseBackend, revision: int) -> None:
        self.events: queue.Queue = queue.Queue()
        self._resp = backend._call("watch nodes", lambda c: c.list_node(
            watch=True, resource_version=str(revision), allow_watch_bookmarks=True,
            timeout_seconds=backend.settings.watch_timeout, _preload_content=False,
            _request_timeout=(backend.settings.request_timeout, backend.settings.watch_timeout + 30)),
            json_body=False)
        self._closed = False
        self._thread = threading.Thread(target=self._read, name="kube-watch", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            buf = b""
            for chunk in self._resp.stream(4096, decode_content=True):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        self.events.put(json.loads(line))
            if buf.strip():
                self.events.put(json.loads(buf))
            self.events.put(self.END)
        except Exception as err:  # the connection broke, or close() cut it
            if not self._closed:
                self.events.put(BackendUnavailable(f"watch stream broke: {err}"))
            else:
                self.events.put(self.END)

    def close(self) -> None:
        self._closed = True
        try:
            self._resp.shutdown() if hasattr(self._resp, "shutdown") else None
        except Exception:
            pass
        try:
            self._resp.release_conn()
            self._resp.close()
        except Exception:
            pass
