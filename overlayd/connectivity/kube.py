"""The connectivity test against a real API server: create, wait, exec the probes, clean up.

Thin: the objects come from plan.py, the verdicts go to matrix.py. Probes run in the probe pods
through the API's exec (what `kubectl exec` does), so the test needs no access to the nodes.
"""
from __future__ import annotations

import concurrent.futures
import time
from typing import Callable, Optional

from . import plan

Prober = Callable[[plan.Endpoint, str, int], tuple[bool, str]]     # (source, target ip, port) -> (ok, detail)


class SetupError(RuntimeError):
    pass


class Cluster:
    def __init__(self, kubeconfig: Optional[str], *, api_client=None):
        from kubernetes import client, config
        if api_client is None:
            api_client = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(api_client)
        self._client = client

    # -- objects --------------------------------------------------------------------------------
    def nodes(self) -> list[str]:
        return sorted(n.metadata.name for n in self.core.list_node().items)

    def create(self, ns: str, nodes: list[str], image: str) -> None:
        from kubernetes.client.rest import ApiException
        try:
            self.core.create_namespace(plan.namespace(ns))
        except ApiException as err:
            if err.status != 409:
                raise
        for ep in plan.endpoints(nodes):
            self.core.create_namespaced_pod(ns, plan.pod(ep, ns, image))
        self.core.create_namespaced_service(ns, plan.service(ns))

    def pods(self, ns: str) -> dict[str, object]:
        return {p.metadata.name: p for p in self.core.list_namespaced_pod(ns, label_selector=f"app={plan.APP}").items}

    def wait_running(self, ns: str, names: list[str], timeout: float, sleep=time.sleep) -> dict[str, str]:
        """Every named pod Running and ready, with an IP; {name: pod IP}. Raises SetupError naming the
        pods that are not, with their phase and reason."""
        deadline = time.monotonic() + timeout
        while True:
            pods = self.pods(ns)
            state = {n: _state(pods.get(n)) for n in names}
            if all(s == "ready" for s in state.values()):
                return {n: pods[n].status.pod_ip for n in names}
            if time.monotonic() > deadline:
                waiting = ", ".join(f"{n}: {s}" for n, s in state.items() if s != "ready")
                raise SetupError(f"probe pods not running after {timeout:.0f}s: {waiting}")
            sleep(1.0)

    def service_ip(self, ns: str) -> str:
        return self.core.read_namespaced_service("probe", ns).spec.cluster_ip

    def delete(self, ns: str) -> None:
        from kubernetes.client.rest import ApiException
        try:
            self.core.delete_namespace(ns)
        except ApiException as err:
            if err.status != 404:
                raise

    # -- probes ---------------------------------------------------------------------------------
    def exec_prober(self, ns: str, timeout: int = 3) -> Prober:
        from kubernetes.stream import stream
        # An API client of its own: stream() swaps the client's request method for a websocket one
        # while it runs, and with probes in parallel threads a swap could outlive its probe, so a
        # later delete_namespace went out as a websocket handshake (seen on real nodes).
        api = self._client.CoreV1Api(self._client.ApiClient(self.core.api_client.configuration))

        def probe(src: plan.Endpoint, ip: str, port: int) -> tuple[bool, str]:
            resp = stream(api.connect_get_namespaced_pod_exec, src.name, ns,
                          command=plan.probe_command(ip, port, timeout), stdout=True, stderr=True,
                          stdin=False, tty=False, _preload_content=False)
            resp.run_forever(timeout=timeout + 10)
            out = (resp.read_stdout() or "") + (resp.read_stderr() or "")
            code = resp.returncode
            resp.close()
            return code == 0, (out.strip() or f"exit {code}")[:200]
        return probe


def _state(pod) -> str:
    if pod is None:
        return "missing"
    phase = pod.status.phase or "Unknown"
    if phase != "Running":
        reasons = [c.state.waiting.reason for c in (pod.status.container_statuses or [])
                   if c.state and c.state.waiting and c.state.waiting.reason]
        if reasons:
            return f"{phase} ({', '.join(reasons)})"
        if phase == "Pending" and pod.spec.node_name and not pod.status.container_statuses:
            return f"Pending (no kubelet has started it on {pod.spec.node_name})"
        return phase
    if not pod.status.pod_ip or not all(c.ready for c in (pod.status.container_statuses or [])):
        return "Running, not ready"
    return "ready"


def run_checks(checks: list[plan.Check], ips: dict[str, str], service_ip: Optional[str], prober: Prober,
               workers: int = 8) -> list[tuple[plan.Check, bool, str]]:
    def one(check: plan.Check) -> tuple[plan.Check, bool, str]:
        if check.dst == "service":
            if not service_ip or service_ip == "None":
                return check, False, "the Service has no ClusterIP"
            target, port = service_ip, plan.SERVICE_PORT
        else:
            target, port = ips[check.dst], plan.HTTP_PORT
        try:
            ok, detail = prober(check.src, target, port)
        except Exception as err:            # an exec that fails is a failed probe, named
            ok, detail = False, f"exec failed: {err}"
        return check, ok, detail

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, checks))
