"""The x/y/z × a/b/c model on a real cluster, through kubectl only (what a user has): namespaces x,
y, z; pods a, b, c in each, placed on the nodes as the lab suite places them (model.node_for), each
serving its own name on 80 and 81, TCP (busybox `nc -ll -e echo`) and UDP (the test image's
/bin/udp; Debian's busybox nc has no -u). Policies are created/replaced with kubectl, labels set with
a JSON patch, and reachability probed with one `kubectl exec` per source pod running all its
probes at once, the nine sources side by side.

The common part (state, steps, waiting until the kernel agrees) is tests/netpol/driver.py.
"""
from __future__ import annotations

import concurrent.futures
import json
import math
import shlex
import subprocess
import time
from typing import Optional

from tests.netpol.driver import ModelDriver
from tests.netpol.model import NAMESPACES, container_ports, default_ns_labels, default_pod_labels, node_for, pod_keys

# Marks the namespaces this run made: a namespace x, y or z without it is someone else's, and the
# run refuses to touch it.
OWNER = "overlayd.e2e/netpol-model"
CONTAINER = "serve"
POLICY_FLAG = "--network-policy"


class ClusterError(Exception):
    pass


class Kubectl:
    def __init__(self, binary: str, kubeconfig: str):
        self.binary = binary
        self.kubeconfig = kubeconfig

    def __call__(self, *args: str, input: Optional[str] = None, check: bool = True,
                 timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [self.binary, "--kubeconfig", self.kubeconfig, *args]
        try:
            proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ClusterError(f"kubectl {' '.join(args)}: no answer within {timeout:.0f}s") from None
        if check and proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed ({proc.returncode}): "
                               f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
        return proc

    def json(self, *args: str) -> dict:
        out = self(*args, "-o", "json").stdout
        return json.loads(out) if out.strip() else {}      # --ignore-not-found and nothing found


def server_script(key: str) -> str:
    """The pod's servers: each answers with the pod's key (x/a), which the probe compares."""
    return " & ".join([f"nc -ll -p {p} -e echo {key}" for p in (80, 81)] +
                      [f"udp serve {p} {key}" for p in (80, 81)]) + " & wait"


def pod_manifest(key: str, node: str, image: str, pull_policy: str) -> dict:
    ns, name = key.split("/")
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": default_pod_labels(key)},
            "spec": {"nodeName": node, "tolerations": [{"operator": "Exists"}], "terminationGracePeriodSeconds": 1,
                     "containers": [{
                         "name": CONTAINER, "image": image, "imagePullPolicy": pull_policy,
                         "command": ["sh", "-c", server_script(key)],
                         # as upstream names them (serve-80-tcp, ...); SCTP declared, not served
                         "ports": [{"name": n, "containerPort": p, "protocol": proto}
                                   for n, p, proto in container_ports()],
                         "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 2}}]}}


def probe_script(targets: list[tuple], wait: int) -> str:
    """One shell for every probe of a source: [(ip, port, proto)] in parallel, one line each:
    'ip port proto answer' (answer 'none' when nothing came back)."""
    items = " ".join(shlex.quote(f"{ip} {port} {proto}") for ip, port, proto in targets)
    return (f"for t in {items}; do set -- $t; ("
            f"if [ $3 = UDP ]; then r=$(udp probe $1 $2 {wait} 2>/dev/null); "
            f"else r=$(timeout {wait + 2} nc -w {wait} $1 $2 </dev/null 2>/dev/null); fi; "
            'echo "$1 $2 $3 ${r:-none}") & done; wait')


class ClusterModel(ModelDriver):
    def __init__(self, kubectl: Kubectl, nodes: list[str], image: str, *, pull_policy: str = "Never",
                 timeout: float = 1.0, deadline: float = 90.0, log=print):
        super().__init__(timeout=timeout, deadline=deadline)
        self.k = kubectl
        self.node_names = list(nodes)
        self.image = image
        self.pull_policy = pull_policy
        self.log = log
        self.exec_errors: dict = {}          # source -> what its last `kubectl exec` said, when it failed

    # -- set-up and clean-up ----------------------------------------------------------------------
    def node_of(self, key: str) -> str:
        return self.node_names[int(node_for(key, len(self.node_names))[1:]) - 1]

    def owned_namespaces(self) -> list[str]:
        """Which of x, y, z exist and are ours; raise if one exists and is not."""
        found = self.k.json("get", "namespaces", *NAMESPACES, "--ignore-not-found")
        items = found.get("items", [found] if found.get("kind") == "Namespace" else [])
        foreign = [i["metadata"]["name"] for i in items if OWNER not in (i["metadata"].get("annotations") or {})]
        if foreign:
            raise ClusterError(f"namespace(s) {', '.join(foreign)} exist and were not made by this suite "
                               f"(no {OWNER} annotation); the model needs namespaces x, y and z of its own")
        return [i["metadata"]["name"] for i in items]

    def remove(self, wait: float = 300) -> None:
        """Delete the model's namespaces (ours only) and wait until they are gone."""
        ours = self.owned_namespaces()
        if ours:
            self.k("delete", "namespace", *ours, "--wait=true", f"--timeout={int(wait)}s", timeout=wait + 30)

    def deploy(self, wait: float = 300) -> "ClusterModel":
        self.remove(wait)                    # what an interrupted run left
        namespaces = [{"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": ns, "labels": default_ns_labels(ns), "annotations": {OWNER: "true"}}}
                      for ns in NAMESPACES]
        pods = [pod_manifest(key, self.node_of(key), self.image, self.pull_policy) for key in pod_keys()]
        self.k("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": namespaces}))
        for ns in NAMESPACES:        # the ServiceAccount admission refuses pods until it exists
            self.k("-n", ns, "wait", "--for=create", "serviceaccount/default", f"--timeout={int(wait)}s",
                   timeout=wait + 30)
        self.k("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}))
        for ns in NAMESPACES:
            self.k("-n", ns, "wait", "pod", "--all", "--for=condition=Ready", f"--timeout={int(wait)}s",
                   timeout=wait + 30)
        for ns in NAMESPACES:
            for item in self.k.json("-n", ns, "get", "pods")["items"]:
                key = f"{ns}/{item['metadata']['name']}"
                self.ips[key] = tuple(a["ip"] for a in item["status"].get("podIPs") or [])
                self.nodes[key] = item["spec"]["nodeName"]
        missing = [k for k in pod_keys() if not self.ips.get(k)]
        if missing:
            raise ClusterError(f"pods without an address: {', '.join(missing)}")
        return self

    # -- writing to the API (driver.ModelDriver's hooks) ----------------------------------------------
    def _write_policy(self, policy: dict) -> None:
        doc = json.dumps(policy)
        proc = self.k("create", "-f", "-", input=doc, check=False)
        if proc.returncode != 0:
            if "AlreadyExists" not in proc.stderr and "already exists" not in proc.stderr:
                raise ClusterError(f"kubectl create networkpolicy: {proc.stderr.strip()}")
            self.k("replace", "-f", "-", input=doc)

    def _delete_policy(self, ns: str, name: str) -> None:
        self.k("-n", ns, "delete", "networkpolicy", name)

    def _delete_policies(self, ns: str) -> None:
        self.k("-n", ns, "delete", "networkpolicy", "--all")

    def _labels_patch(self, labels: dict) -> str:
        return json.dumps([{"op": "add", "path": "/metadata/labels", "value": labels}])

    def _write_pod_labels(self, key: str, labels: dict) -> None:
        ns, name = key.split("/")
        self.k("-n", ns, "patch", "pod", name, "--type=json", "-p", self._labels_patch(labels))

    def _write_ns_labels(self, ns: str, labels: dict) -> None:
        self.k("patch", "namespace", ns, "--type=json", "-p", self._labels_patch(labels))

    # -- probing --------------------------------------------------------------------------------
    def _addr(self, key: str, family: int) -> str:
        return next(a for a in self.ips[key] if (":" in a) == (family == 6))

    def probe(self, checks: list[tuple], timeout: Optional[float] = None) -> dict:
        """checks: [(port, proto, family)], TCP or UDP -> {check: {(src, dst): bool}}, one round."""
        unsupported = [c for c in checks if c[1] not in ("TCP", "UDP")]
        if unsupported:
            raise ClusterError(f"cannot probe {unsupported} with kubectl exec (TCP and UDP only)")
        wait = max(1, math.ceil(timeout or self.timeout))
        keys = pod_keys()
        by_addr = {(self._addr(k, c[2]), c[0], c[1]): (k, c) for k in keys for c in checks}
        out = {c: {(s, d): False for s in keys for d in keys if s != d} for c in checks}

        def from_source(src: str) -> tuple[str, list[str]]:
            targets = [(self._addr(dst, c[2]), c[0], c[1]) for c in checks for dst in keys if dst != src]
            ns, name = src.split("/")
            try:
                proc = self.k("-n", ns, "exec", name, "-c", CONTAINER, "--", "sh", "-c", probe_script(targets, wait),
                              check=False, timeout=wait + 60)
            except ClusterError as err:
                self.exec_errors[src] = str(err)
                return src, []
            if proc.returncode != 0:
                self.exec_errors[src] = f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}"
                return src, []
            self.exec_errors.pop(src, None)
            return src, proc.stdout.splitlines()

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(keys)) as pool:
            for src, lines in pool.map(from_source, keys):
                for line in lines:
                    parts = line.split(" ", 3)
                    if len(parts) < 4 or (parts[0], int(parts[1]), parts[2]) not in by_addr:
                        continue
                    dst, c = by_addr[(parts[0], int(parts[1]), parts[2])]
                    out[c][(src, dst)] = parts[3].split(" ")[0] == dst
        return out

    def explain(self, expected: dict, observed: dict, what: str, waited: Optional[float] = None) -> str:
        text = super().explain(expected, observed, what, waited)
        if self.exec_errors:
            text += "\nkubectl exec failed from: " + "; ".join(f"{s}: {e}" for s, e in self.exec_errors.items())
        return text


# -- enforcement on/off, the way a user turns it on ------------------------------------------------
class PolicyFlag:
    """`--network-policy` added to the overlayd DaemonSet's container args (a JSON patch), then
    `kubectl rollout status`; revert() takes out exactly what enable() put in."""

    def __init__(self, kubectl: Kubectl, namespace: str = "kube-overlayd", daemonset: str = "overlayd",
                 container: str = "overlayd", wait: float = 300):
        self.k, self.ns, self.ds, self.container, self.wait = kubectl, namespace, daemonset, container, wait
        self.added_at: Optional[tuple[int, int]] = None     # (container index, arg index) we added

    def _container(self) -> tuple[int, list]:
        spec = self.k.json("-n", self.ns, "get", "daemonset", self.ds)["spec"]["template"]["spec"]
        for i, c in enumerate(spec["containers"]):
            if c["name"] == self.container:
                return i, list(c.get("args") or [])
        raise ClusterError(f"daemonset {self.ns}/{self.ds} has no container {self.container}")

    def _patch(self, ops: list) -> None:
        self.k("-n", self.ns, "patch", "daemonset", self.ds, "--type=json", "-p", json.dumps(ops))

    def rollout(self) -> float:
        started = time.monotonic()
        self.k("-n", self.ns, "rollout", "status", f"daemonset/{self.ds}", f"--timeout={int(self.wait)}s",
               timeout=self.wait + 30)
        return time.monotonic() - started

    def enable(self) -> bool:
        """True if this added the flag (False: it was on already, and revert() leaves it)."""
        i, args = self._container()
        if POLICY_FLAG in args:
            return False
        base = f"/spec/template/spec/containers/{i}/args"
        self._patch([{"op": "add", "path": f"{base}/-", "value": POLICY_FLAG}] if args else
                    [{"op": "add", "path": base, "value": [POLICY_FLAG]}])
        self.added_at = (i, len(args))
        self.rollout()
        return True

    def revert(self) -> None:
        if self.added_at is None:
            return
        i, j = self.added_at
        path = f"/spec/template/spec/containers/{i}/args/{j}"
        self._patch([{"op": "test", "path": path, "value": POLICY_FLAG}, {"op": "remove", "path": path}])
        self.added_at = None
        self.rollout()
