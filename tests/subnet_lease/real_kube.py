"""The few verbs the kube backend's tests need on a real kube-apiserver (tests/conftest.py's
`kube_control_plane`): what kubectl, the controller-manager or a kubelet would do to Nodes and Pods,
and the writes the API server's audit log saw."""
from __future__ import annotations

import copy
import json
import time
from typing import Optional

from overlayd.lab import control_plane as cplane
from overlayd.lab.kube_client import USER_AGENT, KubeApiError


class RealKube:
    """The emulator's test verbs, on the real server."""

    def __init__(self, cp: cplane.ControlPlane, etcd) -> None:
        self.cp, self.etcd, self.api = cp, etcd, cp.client
        self.kubeconfig = cp.kubeconfig
        _, self._audit_from = cplane.audit_events(cp)

    def add_node(self, name: str, pod_cidr: Optional[str] = None, annotations: Optional[dict] = None,
                 pod_cidrs: Optional[list] = None, labels: Optional[dict] = None) -> dict:
        cidrs = pod_cidrs or ([pod_cidr] if pod_cidr else [])
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "annotations": dict(annotations or {}), "labels": dict(labels or {})},
                "spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs} if cidrs else {}}
        created = self.api.create_node(node)
        # A registered kubelet reports Ready; the backend must keep that condition as it is.
        self.api.patch_node(name, {"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "lab",
             "lastHeartbeatTime": _now(), "lastTransitionTime": _now()}]}}, status=True)
        return created

    def node(self, name: str) -> dict:
        return self.api.node(name)

    def update_node(self, name: str, patch: dict) -> dict:
        return self.api.patch_node(name, copy.deepcopy(patch))

    def delete_node(self, name: str) -> None:
        self.api.delete_node(name)

    def add_pod(self, namespace: str, name: str, node_name: str) -> dict:
        # No controller-manager here: create the namespace's default ServiceAccount ourselves,
        # or ServiceAccount admission refuses the pod.
        for path, body in (("/api/v1/namespaces", {"metadata": {"name": namespace}}),
                           (f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "default"}})):
            try:
                self.api.request("POST", path, body)
            except KubeApiError as err:
                if err.status != 409:
                    raise
        return self.api.request("POST", f"/api/v1/namespaces/{namespace}/pods", {
            "metadata": {"name": name},
            "spec": {"nodeName": node_name, "containers": [{"name": "c", "image": "overlayd:lab"}]}})

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(VERB, path) of every write since this object was made, from the audit log, but for the
        test's own (what kubectl or the controller-manager would have done)."""
        events, _ = cplane.audit_events(self.cp, self._audit_from)
        return [(e["verb"].upper(), e["requestURI"].split("?")[0]) for e in events
                if e.get("stage") == "ResponseComplete" and not e.get("userAgent", "").startswith(USER_AGENT)]

    def compact(self) -> None:
        """Compact etcd at its current revision: history before it is gone (a real 410 next)."""
        status = self.etcd.etcdctl("endpoint", "status", "-w", "json").stdout
        rev = json.loads(status)[0]["Status"]["header"]["revision"]
        self.etcd.etcdctl("compact", str(rev), "--physical")

    def reset(self) -> None:
        """Delete every Node and test namespace, and wait until they are gone."""
        for n in self.api.nodes():
            self.api.delete_node(n["metadata"]["name"])
        for ns in self.api.request("GET", "/api/v1/namespaces")["items"]:
            name = ns["metadata"]["name"]
            if name.startswith("t-"):
                self.api.request("DELETE", f"/api/v1/namespaces/{name}/pods?gracePeriodSeconds=0")
        deadline = time.monotonic() + 30
        while self.api.nodes() and time.monotonic() < deadline:
            time.sleep(0.05)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
