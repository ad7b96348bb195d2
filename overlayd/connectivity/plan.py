"""What the connectivity test creates and probes, from the list of nodes. Pure."""
from __future__ import annotations

import dataclasses

APP = "overlayd-connectivity"
HTTP_PORT = 8080
SERVICE_PORT = 80
DEFAULT_IMAGE = "busybox:1.36"
DEFAULT_NAMESPACE = "overlayd-connectivity-test"
# busybox: serve one page on :8080, so a probe is a plain HTTP GET (TCP through the overlay).
SERVE = f"mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p {HTTP_PORT} -h /www"


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A probe source or target: the pod on a node (kind "pod") or the node itself ("host")."""
    kind: str            # "pod" | "host"
    node: str

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.node}"[:63]


@dataclasses.dataclass(frozen=True)
class Check:
    src: Endpoint
    dst: str             # an Endpoint's name, or "service"
    kind: str            # "pod-to-pod" | "pod-to-service" | "node-to-pod"
    cross_node: bool


def namespace(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": APP}}}


def pod(ep: Endpoint, ns: str, image: str) -> dict:
    """The probe pod on ep.node: pinned with spec.nodeName (no scheduler needed), tolerating every
    taint (control-plane nodes too); the host variant runs in the node's network namespace."""
    spec = {
        "nodeName": ep.node,
        "tolerations": [{"operator": "Exists"}],
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "probe", "image": image, "command": ["sh", "-c", SERVE if ep.kind == "pod"
                                                                      else "exec sleep 86400"],
                        "ports": [{"containerPort": HTTP_PORT, "name": "http"}] if ep.kind == "pod" else []}],
    }
    if ep.kind == "host":
        spec["hostNetwork"] = True
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": ep.name, "namespace": ns,
                         "labels": {"app": APP, "role": ep.kind, "node": ep.node[:63]}},
            "spec": spec}


def service(ns: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "probe", "namespace": ns, "labels": {"app": APP}},
            "spec": {"selector": {"app": APP, "role": "pod"},
                     "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": HTTP_PORT}]}}


def endpoints(nodes: list[str]) -> list[Endpoint]:
    return [Endpoint("pod", n) for n in nodes] + [Endpoint("host", n) for n in nodes]


def checks(nodes: list[str]) -> list[Check]:
    """Every pod to every other pod (across nodes, and on its own node), every pod to the Service,
    every node to every pod."""
    out = []
    for src in nodes:
        for dst in nodes:
            if src != dst:
                out.append(Check(Endpoint("pod", src), Endpoint("pod", dst).name, "pod-to-pod", True))
        out.append(Check(Endpoint("pod", src), "service", "pod-to-service", False))
    for src in nodes:
        for dst in nodes:
            out.append(Check(Endpoint("host", src), Endpoint("pod", dst).name, "node-to-pod", src != dst))
    return out


def probe_command(target_ip: str, port: int, timeout: int = 3) -> list[str]:
    """An HTTP GET with busybox nc, not wget: Debian 12's static busybox wget segfaults
    (docs/real-node.md), and nc is in every busybox. Success: a 200 answer."""
    get = r"printf 'GET / HTTP/1.0\r\n\r\n'"
    return ["sh", "-c", f"out=$({get} | nc -w {timeout} {target_ip} {port} 2>&1); case \"$out\" in "
                        f"*' 200 '*) echo ok ;; *) echo \"no HTTP 200 from {target_ip}:{port}: "
                        f"${{out:-no answer within {timeout} s}}\"; exit 1 ;; esac"]
