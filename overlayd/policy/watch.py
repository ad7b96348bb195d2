"""The watcher: list, then watch from the list's resourceVersion, re-list on 410, for Pods,
Namespaces and NetworkPolicies, with the official `kubernetes` client, into one PolicyCache.

One thread per kind. Events go into the cache as plain dicts (no client models); `on_change`
is called with the time the event arrived, so the engine can measure event-to-enforced.
Errors (API down, 403) back off and are remembered for /readyz; they never end the thread.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable, Optional

from subnet_lease.backoff import Backoff

from .cache import KINDS, PolicyCache

log = logging.getLogger(__name__)
WATCH_TIMEOUT = 240          # seconds the server keeps one watch open
RBAC_HINT = ("the ClusterRole needs list and watch on pods, namespaces and "
             "networkpolicies.networking.k8s.io (manifests/overlayd.yaml)")


class Gone(Exception):
    """The resourceVersion is too old (410): list again."""


def make_api_client(api_url: Optional[str], kubeconfig: Optional[str]):
    """An ApiClient for --kube-api-url / --kubeconfig(-file), else the in-cluster config."""
    from kubernetes import client, config
    from kubernetes.utils.keepalive import tcp_keepalive_socket_options
    cfg = client.Configuration()
    cfg.socket_options = tcp_keepalive_socket_options(idle=10, interval=5, count=3)
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        if api_url:
            cfg.host = api_url
    elif api_url:
        cfg.host = api_url
    else:
        try:
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException as err:
            raise ValueError(f"--network-policy: not running in a cluster ({err}); pass --kubeconfig "
                             f"or --kube-api-url") from None
    return client.ApiClient(cfg)


def _request(api_client, kind: str, watch: bool, **kw):
    """One list (watch=False) or watch of `kind`, raw (no client models). Spelled out call by
    call: tests/deploy/test_rbac.py finds these calls in the source and checks the ClusterRole."""
    from kubernetes import client
    core, net = client.CoreV1Api(api_client), client.NetworkingV1Api(api_client)
    kw["_preload_content"] = False
    if kind == "pods":
        if watch:
            return core.list_pod_for_all_namespaces(watch=True, **kw)
        return core.list_pod_for_all_namespaces(**kw)
    if kind == "namespaces":
        if watch:
            return core.list_namespace(watch=True, **kw)
        return core.list_namespace(**kw)
    if watch:
        return net.list_network_policy_for_all_namespaces(watch=True, **kw)
    return net.list_network_policy_for_all_namespaces(**kw)


class Watcher:
    def __init__(self, api_client, cache: PolicyCache, on_change: Callable[[float], None],
                 stop: threading.Event, backoff_initial: float = 0.5, backoff_max: float = 30.0,
                 on_restart: Callable[[], None] = lambda: None):
        self.cache, self.on_change, self.stop = cache, on_change, stop
        self._on_restart = on_restart
        self._api = api_client
        self._backoff = (backoff_initial, backoff_max)
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._responses: dict[str, object] = {}
        self.restarts = 0
        self.threads: list[threading.Thread] = []

    def start(self) -> "Watcher":
        for kind in KINDS:
            t = threading.Thread(target=self._loop, args=(kind,), name=f"policy-watch-{kind}", daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def close(self) -> None:
        self.stop.set()
        with self._lock:
            responses = list(self._responses.values())
        for resp in responses:
            for method in ("shutdown", "close"):
                try:
                    getattr(resp, method)()
                except Exception:
                    pass

    def list_all(self) -> None:
        """List every kind once into the cache (`overlayd policy explain`); raises on errors."""
        for kind in KINDS:
            self._list(kind)

    def errors(self) -> dict:
        with self._lock:
            return dict(self._errors)

    def _error(self, kind: str, msg: Optional[str]) -> None:
        with self._lock:
            if msg is None:
                self._errors.pop(kind, None)
            else:
                self._errors[kind] = msg

    def _call(self, kind: str, watch: bool = False, **kw):
        from kubernetes.client.exceptions import ApiException
        try:
            return _request(self._api, kind, watch, **kw)
        except ApiException as err:
            if err.status == 410:
                raise Gone() from None
            hint = f" ({RBAC_HINT})" if err.status in (401, 403) else ""
            raise RuntimeError(f"Kubernetes API list {kind}: HTTP {err.status} {err.reason}{hint}") from None

    def _list(self, kind: str) -> str:
        resp = self._call(kind, _request_timeout=60)
        try:
            body = json.loads(resp.data)
        finally:
            resp.release_conn()
        self.cache.replace(kind, body.get("items") or [])
        return (body.get("metadata") or {}).get("resourceVersion") or ""

    def _watch(self, kind: str, rv: str) -> str:
        from kubernetes.watch.watch import iter_resp_lines
        resp = self._call(kind, True, resource_version=rv, allow_watch_bookmarks=True,
                          timeout_seconds=WATCH_TIMEOUT, _request_timeout=(10, WATCH_TIMEOUT + 30))
        with self._lock:
            self._responses[kind] = resp
        try:
            for line in iter_resp_lines(resp):
                if self.stop.is_set():
                    break
                arrived = time.monotonic()
                event = json.loads(line)
                etype, obj = event.get("type"), event.get("object") or {}
                if etype == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone()
                    raise RuntimeError(f"watch {kind}: {obj.get('message') or obj}")
                rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                if etype == "BOOKMARK":
                    continue
                changed = self.cache.apply(kind, etype, obj)
                log.debug("policy watch %s: %s %s%s", kind, etype, (obj.get("metadata") or {}).get("name"),
                          "" if changed else " (no change for policy)")
                if changed:
                    self.on_change(arrived)
        finally:
            with self._lock:
                self._responses.pop(kind, None)
            resp.release_conn()
        return rv

    def _loop(self, kind: str) -> None:
        backoff = Backoff(*self._backoff)
        rv = None
        while not self.stop.is_set():
            try:
                if rv is None:
                    arrived = time.monotonic()
                    rv = self._list(kind)
                    self._error(kind, None)
                    self.on_change(arrived)
                rv = self._watch(kind, rv)
                backoff.reset()
            except Gone:
                log.info("policy watch %s: resourceVersion too old (410); listing again", kind)
                self.restarts += 1
                self._on_restart()
                rv = None
            except Exception as err:
                if self.stop.is_set():
                    break
                msg = str(err) if isinstance(err, RuntimeError) else f"Kubernetes API {kind}: {err}"
                log.warning("policy watch: %s; retrying", msg)
                self._error(kind, msg)
                self.restarts += 1
                self._on_restart()
                self.stop.wait(backoff.next())
