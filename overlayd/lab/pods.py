"""`overlayd lab pod add/del`: Kubernetes pods in the lab, as kubectl + kubelet + a runtime make them.

add:
  1. the Namespace, if missing (labelled kubernetes.io/metadata.name, as the API server does);
  2. the Pod object: labels, one container with the given containerPorts, spec.nodeName;
  3. the pod's network namespace, wired by the node's CNI plugin exactly as a runtime calls it
     (CNI_ARGS with K8S_POD_NAMESPACE / K8S_POD_NAME / K8S_POD_INFRA_CONTAINER_ID);
  4. status.podIP / podIPs / hostIP / phase Running (pods/status), as the kubelet reports them;
  5. the pod's workload (overlayd.lab.pod_agent): servers on its ports and on 80 and 81 TCP and UDP,
     and a prober the tests drive through a Unix socket.
del undoes it in reverse (agent, CNI DEL, namespace, Pod object).

Without a Kubernetes API (an etcd-mode lab) steps 1, 2 and 4 are skipped: the pod is wired and
served, but no policy can select it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import time
from typing import Callable, Optional

from cni_plugin.invoke import run_plugin

from .cleanup import Cleanup
from .netns import LabError, add_netns, delete_netns, netns_exists

NS_NAME_LABEL = "kubernetes.io/metadata.name"
DEFAULT_SERVE = ((80, "TCP"), (80, "UDP"), (81, "TCP"), (81, "UDP"))
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclasses.dataclass
class PodSpec:
    namespace: str
    pod: str
    node: str
    labels: dict = dataclasses.field(default_factory=dict)
    ports: list = dataclasses.field(default_factory=list)     # [(name, port, protocol)]


# -- parsing the command line ---------------------------------------------------------------------
def parse_labels(text: Optional[str]) -> dict:
    """--labels k=v,k2=v2 -> dict (empty string: no labels)."""
    out = {}
    for item in filter(None, (text or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LabError(f"--labels {text!r}: {item!r} is not key=value (e.g. --labels app=web,tier=front)")
        out[key.strip()] = value.strip()
    return out


def parse_port(text: str) -> tuple:
    """--port NAME:PORT/PROTO (PROTO TCP, UDP or SCTP; default TCP) -> (name, port, proto)."""
    name, sep, rest = text.partition(":")
    port, _, proto = rest.partition("/")
    proto = (proto or "TCP").upper()
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535 or proto not in ("TCP", "UDP", "SCTP"):
        raise LabError(f"--port {text!r}: want NAME:PORT/PROTO, e.g. --port http:80/TCP (PROTO TCP, UDP or SCTP)")
    if not _PORT_NAME.match(name) or len(name) > 15:
        raise LabError(f"--port {text!r}: the name must be a DNS label of at most 15 characters (e.g. http)")
    return name, int(port), proto


def validate(spec: PodSpec, nodes: list[str]) -> None:
    for field, value in (("--namespace", spec.namespace), ("--pod", spec.pod)):
        if not _DNS1123.match(value or "") or len(value) > 63:
            raise LabError(f"{field} {value!r}: use lower-case letters, digits and '-' (a DNS label)")
    if spec.node not in nodes:
        raise LabError(f"--node {spec.node!r}: the lab has nodes {', '.join(nodes)}")


# -- the API objects ------------------------------------------------------------------------------
def namespace_object(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {NS_NAME_LABEL: name}}}


def pod_object(spec: PodSpec) -> dict:
    ports = [{"name": n, "containerPort": p, "protocol": proto} for n, p, proto in spec.ports]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": spec.pod, "namespace": spec.namespace, "labels": dict(spec.labels)},
            "spec": {"nodeName": spec.node, "automountServiceAccountToken": False,
                     "terminationGracePeriodSeconds": 0,
                     # the lab has no kubelets: the node lifecycle controller marks the nodes
                     # unreachable after a while, and must not evict the pods for it
                     "tolerations": [{"key": k, "operator": "Exists", "effect": "NoExecute"}
                                     for k in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")],
                     "containers": [{"name": "agent", "image": "overlayd.invalid/lab-pod-agent:none",
                                     "ports": ports}]}}


def pod_status(ips: list[str], host_ip: str) -> dict:
    return {"status": {"phase": "Running", "podIP": ips[0], "podIPs": [{"ip": ip} for ip in ips],
                       "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def _ensure_namespace(api, name: str) -> None:
    try:
        api.request("GET", f"/api/v1/namespaces/{name}")
    except Exception as err:
        if getattr(err, "status", None) != 404:
            raise
        try:
            api.request("POST", "/api/v1/namespaces", namespace_object(name))
        except Exception as err2:
            if getattr(err2, "status", None) != 409:
                raise


def _create_pod(api, spec: PodSpec, wait: float = 20.0) -> None:
    """POST the Pod; a namespace just made has no default ServiceAccount for a moment (the
    controller-manager creates it), so the admission error is retried."""
    deadline = time.monotonic() + wait
    while True:
        try:
            api.request("POST", f"/api/v1/namespaces/{spec.namespace}/pods", pod_object(spec))
            return
        except Exception as err:
            if "serviceaccount" not in str(err).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def set_labels(lab, namespace: str, pod: str, labels: dict) -> None:
    """Replace a pod's labels (a merge patch that removes the ones not given)."""
    api = lab.api
    current = api.request("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}")["metadata"].get("labels") or {}
    patch = {k: None for k in current if k not in labels}
    patch.update(labels)
    api.request("PATCH", f"/api/v1/namespaces/{namespace}/pods/{pod}", {"metadata": {"labels": patch}},
                "application/merge-patch+json")


def set_namespace_labels(lab, namespace: str, labels: dict) -> None:
    api = lab.api
    current = api.request("GET", f"/api/v1/namespaces/{namespace}")["metadata"].get("labels") or {}
    patch = {k: None for k in current if k not in labels}
    patch.update(labels)
    api.request("PATCH", f"/api/v1/namespaces/{namespace}", {"metadata": {"labels": patch}},
                "application/merge-patch+json")


# -- the pod's network namespace and workload -----------------------------------------------------
def netns_name(lab, spec: PodSpec) -> str:
    return f"{lab.name}-{spec.namespace}-{spec.pod}"


def agent_socket(lab, namespace: str, pod: str) -> str:
    return os.path.join(lab.workdir, "pods", f"{namespace}_{pod}.sock")


def _cni(lab, node, command: str, spec: PodSpec, container_id: str, netns: str) -> dict:
    args = (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={spec.namespace};K8S_POD_NAME={spec.pod};"
            f"K8S_POD_INFRA_CONTAINER_ID={container_id}")
    rc, out, err = run_plugin(lab.plugin, command, node.netconf(), container_id, f"/var/run/netns/{netns}", "eth0",
                              [os.path.dirname(lab.plugin), "/usr/lib/cni"], run_in_netns=node.netns, args=args)
    doc = out if isinstance(out, dict) else {}
    if rc != 0:
        raise LabError(f"CNI {command} for {spec.namespace}/{spec.pod} on {node.name} failed ({rc}): "
                       f"{doc.get('msg') or out} {doc.get('details', '')} {err.strip()}")
    return doc


def start_agent(lab, spec: PodSpec, netns: str, wait: float = 15.0) -> tuple[int, str]:
    sock = agent_socket(lab, spec.namespace, spec.pod)
    os.makedirs(os.path.dirname(sock), exist_ok=True)
    serve = sorted(set(DEFAULT_SERVE) | {(p, proto) for _, p, proto in spec.ports if proto != "SCTP"})
    log_path = sock[:-5] + ".log"
    with open(log_path, "a") as log:
        proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-m", "overlayd.lab.pod_agent",
                                 f"--socket={sock}", f"--name={spec.namespace}/{spec.pod}",
                                 *(f"--serve={p}/{proto}" for p, proto in serve)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(f"the pod agent of {spec.namespace}/{spec.pod} exited ({proc.returncode}); see {log_path}")
        try:
            agent_request(sock, {"op": "ping"}, timeout=2)
            return proc.pid, sock
        except OSError:
            time.sleep(0.05)
    raise LabError(f"the pod agent of {spec.namespace}/{spec.pod} did not answer on {sock} within {wait:.0f}s")


def agent_request(sock_path: str, request: dict, timeout: float = 30.0) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall((json.dumps(request) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    reply = json.loads(buf)
    if "error" in reply:
        raise LabError(f"pod agent {sock_path}: {reply['error']}")
    return reply


# -- the verbs ------------------------------------------------------------------------------------
def find(lab, namespace: str, pod: str):
    return next((p for p in lab.pods if getattr(p, "namespace", None) == namespace and p.name == pod), None)


def add(lab, spec: PodSpec, log: Callable[[str], None] = lambda m: None, marks: Optional[dict] = None):
    """Create, wire, report and serve one pod; all or nothing. Returns the lab's Pod record.
    `marks` (for benchmarks) gets "status": time.time() just before status.podIPs is written."""
    from .cluster import Pod
    validate(spec, [n.name for n in lab.nodes])
    if find(lab, spec.namespace, spec.pod):
        raise LabError(f"pod {spec.namespace}/{spec.pod} exists already (remove it with `overlayd lab pod del`)")
    node = lab.node(spec.node)
    api = lab.api if lab.kube else None
    undo = Cleanup()
    try:
        if api is not None:
            _ensure_namespace(api, spec.namespace)
            _create_pod(api, spec)
            undo.push("pod object", lambda: _delete_pod_object(api, spec.namespace, spec.pod))
        netns = netns_name(lab, spec)
        container_id = f"{lab.name}-{spec.namespace}-{spec.pod}"
        add_netns(netns, undo)
        result = _cni(lab, node, "ADD", spec, container_id, netns)
        undo.push("CNI DEL", lambda: _cni(lab, node, "DEL", spec, container_id, netns))
        ips = [e["address"].split("/")[0] for e in result.get("ips") or []]
        if not ips:
            raise LabError(f"CNI ADD for {spec.namespace}/{spec.pod} returned no IP: {result}")
        pid, sock = start_agent(lab, spec, netns)
        undo.push("pod agent", lambda: _kill(pid))
        if marks is not None:
            marks["status"] = time.time()
        if api is not None:
            api.request("PATCH", f"/api/v1/namespaces/{spec.namespace}/pods/{spec.pod}/status",
                        pod_status(ips, node.underlay_ip), "application/merge-patch+json")
        pod = Pod(name=spec.pod, node=node.name, netns=netns, container_id=container_id,
                  ip=next((a for a in ips if ":" not in a), None), ip6=next((a for a in ips if ":" in a), None),
                  namespace=spec.namespace, labels=dict(spec.labels), ports=[list(p) for p in spec.ports],
                  agent_pid=pid, agent_socket=sock)
    except BaseException:
        undo.run()
        raise
    lab.pods.append(pod)
    lab.save_state()
    log(f"pod {spec.namespace}/{spec.pod} on {node.name}: {', '.join(ips)} ({netns})")
    return pod


def delete(lab, namespace: str, pod_name: str, log: Callable[[str], None] = lambda m: None) -> None:
    pod = find(lab, namespace, pod_name)
    if pod is None:
        raise LabError(f"no pod {namespace}/{pod_name} in lab {lab.name} "
                       f"(pods: {', '.join(describe(p) for p in lab.pods) or 'none'})")
    spec = PodSpec(namespace, pod_name, pod.node)
    if pod.agent_pid:
        _kill(pod.agent_pid)
    if netns_exists(pod.netns):
        _cni(lab, lab.node(pod.node), "DEL", spec, pod.container_id, pod.netns)
        delete_netns(pod.netns)
    if lab.kube:
        _delete_pod_object(lab.api, namespace, pod_name)
    lab.pods.remove(pod)
    lab.save_state()
    log(f"pod {namespace}/{pod_name} removed")


def describe(pod) -> str:
    return f"{pod.namespace}/{pod.name}" if getattr(pod, "namespace", None) else pod.name


def as_json(pod) -> dict:
    """What `lab pod add` prints."""
    return {"namespace": pod.namespace, "name": pod.name, "node": pod.node, "netns": pod.netns,
            "ips": [a for a in (pod.ip, pod.ip6) if a], "labels": pod.labels,
            "ports": [{"name": n, "containerPort": p, "protocol": proto} for n, p, proto in pod.ports]}


def _delete_pod_object(api, namespace: str, name: str) -> None:
    try:
        api.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}?gracePeriodSeconds=0")
    except Exception as err:
        if getattr(err, "status", None) != 404:
            raise


def _kill(pid: int) -> None:
    """Stop a pod agent we started (its own session), after checking the pid is still one."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"overlayd.lab.pod_agent" not in f.read():
                return
        os.killpg(pid, 9)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
