"""The Kubernetes API as the kube backend uses it: settings, one client, errors sorted.

Objects are read as plain JSON (`_preload_content=False`), so nothing above this module sees a
client model. A 410 Gone becomes Gone (re-list); 404 a LeaseError; other HTTP errors and
transport failures BackendUnavailable (retryable).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Optional

from .backend import BackendUnavailable, LeaseError
from .config import ConfigError
from .defaults import ANNOTATION_PREFIX, NET_CONFIG_PATH
from .kube_nodes import Annotations, lease_or_skip
from .lease import Lease


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
                              f"such as {ANNOTATION_PREFIX}")


class Gone(Exception):
    """HTTP 410: the resourceVersion we asked for is older than the server keeps."""


class KubeApi:
    def __init__(self, settings: KubeSettings, api_client=None) -> None:
        self.settings = settings
        self._api_client = api_client
        self._core = None
        self._node_name: Optional[str] = settings.node_name
        self.last_error: Optional[str] = None

    def core(self):
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

    def call(self, what: str, fn: Callable[[Any], Any], *, json_body: bool = True):
        from kubernetes.client.exceptions import ApiException
        import urllib3
        try:
            resp = fn(self.core())
        except ApiException as err:
            if err.status == 410:
                raise Gone() from None
            msg = f"Kubernetes API {what}: HTTP {err.status} {err.reason}"
            if err.status in (401, 403):
                msg += " (check the service account's RBAC: nodes get/list/watch, nodes/status patch)"
            self.last_error = msg
            if err.status == 404:
                raise LeaseError(msg) from None
            raise BackendUnavailable(msg) from None
        except (urllib3.exceptions.HTTPError, OSError) as err:
            msg = f"Kubernetes API {what}: {err}"
            self.last_error = msg
            raise BackendUnavailable(msg) from None
        self.last_error = None          # the API answered: what failed before is over
        if not json_body:
            return resp
        try:
            return json.loads(resp.data)
        finally:
            resp.release_conn()

    def timeout(self) -> float:
        return self.settings.request_timeout

    def node_name(self) -> str:
        if self._node_name:
            return self._node_name
        s = self.settings
        if not (s.pod_name and s.pod_namespace):
            raise ConfigError("the node name is unknown: set NODE_NAME (fieldRef spec.nodeName) or "
                              "--node-name, or POD_NAME and POD_NAMESPACE")
        pod = self.call("read pod", lambda c: c.read_namespaced_pod(
            s.pod_name, s.pod_namespace, _preload_content=False, _request_timeout=self.timeout()))
        name = (pod.get("spec") or {}).get("nodeName")
        if not name:
            raise LeaseError(f"pod {s.pod_namespace}/{s.pod_name} has no spec.nodeName yet")
        self._node_name = name
        return name

    @property
    def known_node_name(self) -> Optional[str]:
        """The node name if it is known already (no API call)."""
        return self._node_name

    def read_node(self) -> dict:
        name = self.node_name()
        return self.call(f"read node {name}", lambda c: c.read_node(
            name, _preload_content=False, _request_timeout=self.timeout()))

    def list_nodes(self, ann: Annotations) -> tuple[dict[str, Lease], str]:
        """node name -> Lease for every peer node, and the list's resourceVersion (opaque)."""
        doc = self.call("list nodes", lambda c: c.list_node(
            _preload_content=False, _request_timeout=self.timeout()))
        leases = {}
        for node in doc.get("items") or []:
            lease = lease_or_skip(node, ann)
            if lease is not None:
                leases[lease.node_name] = lease
        revision = (doc.get("metadata") or {}).get("resourceVersion")
        if not revision or not isinstance(revision, str):
            # Watching from "" would mean "from any point": events could be missed for good.
            raise BackendUnavailable(f"Kubernetes API list nodes: the NodeList has no "
                                     f"metadata.resourceVersion ({revision!r}); retrying")
        return leases, revision

    def reset(self) -> None:
        """Build a fresh API client on the next call (e.g. the node's own address just changed)."""
        client, self._api_client, self._core = self._api_client, None, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass
