"""A real Kubernetes control plane for the lab: etcd, kube-apiserver and kube-controller-manager,
built from k8s.io/kubernetes (overlayd.lab.kube_bins), inside the lab's switch namespace.

    etcd                     http://192.0.2.254:2379  (the API server's store, nothing else)
    kube-apiserver           https://192.0.2.254:6443  TLS from the lab's CA, Node,RBAC authorization,
                             a service-account issuer and signing key, PodSecurity admission (default)
    kube-controller-manager  node IPAM: --allocate-node-cidrs, --cluster-cidr = net-conf's Network(s),
                             mask sizes = SubnetLen / IPv6SubnetLen; service-account tokens
    relay                    127.0.0.1:<port> in the root namespace -> a Unix socket -> 192.0.2.254:6443,
                             so kubectl and tests reach the API server from here while no address is
                             added outside the lab's namespaces (TLS passes through end to end)

The admin kubeconfig (O=system:masters client certificate) points at the relay. Each node's
overlayd gets its own kubeconfig with a TokenRequest token of the ServiceAccount that
manifests/overlayd.yaml defines, after the lab applied that file's Namespace, ServiceAccount,
ClusterRole and ClusterRoleBinding documents, read from the file.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import socket
import subprocess
import time
from typing import Callable, Optional

import yaml

from . import kube_bins, procs
from .kube_client import HttpsApiClient, KubeApiError
from .netns import LabError
from .pki import Pki, make_pki

RBAC_KINDS = ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
MANIFEST = os.path.join(kube_bins.REPO, "manifests", "overlayd.yaml")
SERVICE_CIDR = "10.96.0.0/16"
# Every write, who made it and to what, in the API server's audit log (JSON lines): what the
# lab's users and tests read to see which requests a component really sent.
AUDIT_POLICY = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
                "rules": [{"level": "Metadata", "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
                          {"level": "None"}]}
SERVICE_CIDR6 = "fd00:10:96::/112"


@dataclasses.dataclass(frozen=True)
class ControlPlaneSettings:
    workdir: str
    netns: str                             # where etcd, the API server and the controller-manager run
    host: str                              # the API server's address in netns (192.0.2.254)
    cluster_cidrs: tuple[str, ...]         # net-conf's Network (and IPv6Network)
    node_mask_v4: Optional[int] = 24
    node_mask_v6: Optional[int] = None
    port: int = 6443
    etcd_port: int = 2379
    manifest: str = MANIFEST
    # No kubelet heartbeats in a lab without kubelets: the node lifecycle controller would taint
    # every Node unreachable and evict its pods after 5 minutes. A lab with kubelets turns it on.
    node_lifecycle: bool = False
    apiserver_args: tuple[str, ...] = ()
    controller_manager: bool = True


@dataclasses.dataclass
class ControlPlane:
    """Plain data: saved in the lab's state file so another `overlayd lab` process can use it."""
    url: str                  # what the nodes use: https://192.0.2.254:6443
    local_url: str            # what this namespace uses: https://127.0.0.1:<relay port>
    kubeconfig: str           # admin kubeconfig (local_url)
    pki_dir: str
    bin_dir: str
    version: str = ""
    procs: list = dataclasses.field(default_factory=list)     # [procs.Proc]
    log: str = ""             # the API server's log
    audit_log: str = ""       # its audit log: one JSON event per write
    etcd_data_dir: str = ""

    @property
    def pki(self) -> Pki:
        return Pki(self.pki_dir)

    @property
    def client(self) -> HttpsApiClient:
        crt, key = self.pki.cert("admin")
        return HttpsApiClient(self.local_url, self.pki.ca_cert, crt, key)

    def kubectl(self, *args: str, input: Optional[str] = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess:
        proc = subprocess.run([os.path.join(self.bin_dir, "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
                              input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise LabError(f"kubectl {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def proc(self, name: str) -> Optional[procs.Proc]:
        return next((p for p in self.procs if p.name == name), None)

    def stop(self) -> None:
        procs.stop_all(list(reversed(self.procs)))
        self.procs = []

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ControlPlane":
        d = dict(d)
        d["procs"] = [procs.Proc(**p) for p in d.get("procs", [])]
        return cls(**d)


def audit_events(cp: ControlPlane, since: int = 0) -> tuple[list[dict], int]:
    """The audit events written after byte offset `since`, and the offset to read from next."""
    try:
        with open(cp.audit_log, "rb") as f:
            f.seek(since)
            data = f.read()
    except FileNotFoundError:
        return [], since
    end = data.rfind(b"\n") + 1
    return [json.loads(line) for line in data[:end].splitlines() if line.strip()], since + end


def write_kubeconfig(path: str, server: str, ca: str, *, cert: Optional[str] = None, key: Optional[str] = None,
                     token: Optional[str] = None, user: str = "lab") -> str:
    creds = {"client-certificate": cert, "client-key": key} if cert else {"token": token}
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "lab",
           "clusters": [{"name": "lab", "cluster": {"server": server, "certificate-authority": ca}}],
           "users": [{"name": user, "user": creds}],
           "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": user}}]}
    with open(path + ".tmp", "w") as f:
        yaml.safe_dump(doc, f)
    os.chmod(path + ".tmp", 0o600)
    os.rename(path + ".tmp", path)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _family_cidrs(s: ControlPlaneSettings) -> tuple[list[str], list[str]]:
    v4 = [c for c in s.cluster_cidrs if ":" not in c]
    v6 = [c for c in s.cluster_cidrs if ":" in c]
    services = ([SERVICE_CIDR] if v4 else []) + ([SERVICE_CIDR6] if v6 else [])
    return v4 + v6, services


def apiserver_argv(s: ControlPlaneSettings, pki: Pki, bins: str, audit_log: str) -> list[str]:
    _, services = _family_cidrs(s)
    policy = os.path.join(s.workdir, "audit-policy.yaml")
    with open(policy, "w") as f:
        yaml.safe_dump(AUDIT_POLICY, f)
    crt, key = pki.cert("apiserver")
    kcrt, kkey = pki.cert("apiserver-kubelet-client")
    return [os.path.join(bins, "kube-apiserver"),
            f"--advertise-address={s.host}", f"--bind-address={s.host}", f"--secure-port={s.port}",
            f"--etcd-servers=http://{s.host}:{s.etcd_port}",
            f"--client-ca-file={pki.ca_cert}", f"--tls-cert-file={crt}", f"--tls-private-key-file={key}",
            f"--kubelet-client-certificate={kcrt}", f"--kubelet-client-key={kkey}",
            "--kubelet-preferred-address-types=InternalIP",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.path('sa.pub')}",
            f"--service-account-signing-key-file={pki.path('sa.key')}",
            f"--service-cluster-ip-range={','.join(services)}",
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            "--enable-bootstrap-token-auth=true", "--allow-privileged=true", "--profiling=false",
            f"--audit-policy-file={policy}", f"--audit-log-path={audit_log}", "--audit-log-mode=blocking",
            "--v=1", *s.apiserver_args]


def controller_manager_argv(s: ControlPlaneSettings, pki: Pki, bins: str, kubeconfig: str) -> list[str]:
    clusters, services = _family_cidrs(s)
    dual = len(clusters) > 1
    masks = []
    if dual:
        masks = [f"--node-cidr-mask-size-ipv4={s.node_mask_v4}", f"--node-cidr-mask-size-ipv6={s.node_mask_v6}"]
    else:
        masks = [f"--node-cidr-mask-size={s.node_mask_v6 if ':' in clusters[0] else s.node_mask_v4}"]
    controllers = "*,bootstrap-signer-controller,token-cleaner-controller"
    if not s.node_lifecycle:
        controllers += ",-node-lifecycle-controller"
    return [os.path.join(bins, "kube-controller-manager"),
            f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}", "--bind-address=127.0.0.1", "--secure-port=10257",
            "--leader-elect=false", "--cluster-name=overlayd-lab",
            "--allocate-node-cidrs=true", f"--cluster-cidr={','.join(clusters)}", *masks,
            f"--service-cluster-ip-range={','.join(services)}",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.path('sa.key')}", f"--root-ca-file={pki.ca_cert}",
            f"--cluster-signing-cert-file={pki.ca_cert}", f"--cluster-signing-key-file={pki.ca_key}",
            f"--controllers={controllers}", "--v=1"]


def start(s: ControlPlaneSettings, *, etcd_endpoint_ready: Callable[[], None] = lambda: None,
          log: Callable[[str], None] = lambda m: None, wait: float = 90.0) -> ControlPlane:
    """Start the API server (etcd must answer on host:etcd_port in netns), the relay and the
    controller-manager; wait until /readyz answers ok. On failure the caller's stop() undoes it."""
    bins = kube_bins.ensure(log=log)
    # The first address of each service range is the `kubernetes` Service's ClusterIP (in-cluster clients).
    _, services = _family_cidrs(s)
    cluster_ips = [str(next(ipaddress.ip_network(c).hosts())) for c in services]
    pki = make_pki(os.path.join(s.workdir, "pki"), server_ips=[s.host, "127.0.0.1", *cluster_ips])
    port = _free_port()
    local = f"https://127.0.0.1:{port}"
    crt, key = pki.cert("admin")
    cp = ControlPlane(url=f"https://{s.host}:{s.port}", local_url=local,
                      kubeconfig=write_kubeconfig(os.path.join(s.workdir, "admin.kubeconfig"), local, pki.ca_cert,
                                                  cert=crt, key=key, user="kubernetes-admin"),
                      pki_dir=pki.dir, bin_dir=bins, log=os.path.join(s.workdir, "kube-apiserver.log"),
                      audit_log=os.path.join(s.workdir, "kube-apiserver-audit.log"))
    try:
        cp.procs.append(procs.start("kube-apiserver", apiserver_argv(s, pki, bins, cp.audit_log), cp.log, netns=s.netns))
        sock = os.path.join(s.workdir, "kube-apiserver.sock")
        relay_log = os.path.join(s.workdir, "relay.log")
        cp.procs.append(procs.start("relay-in", ["socat", f"UNIX-LISTEN:{sock},fork,unlink-early,mode=600",
                                                 f"TCP:{s.host}:{s.port}"], relay_log, netns=s.netns))
        cp.procs.append(procs.start("relay-out", ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr",
                                                  f"UNIX-CONNECT:{sock}"], relay_log))
        wait_ready(cp, wait)
        cp.version = cp.client.version().get("gitVersion", "")
        log(f"kube-apiserver {cp.version} {cp.url} (in {s.netns}; from this namespace: {cp.local_url})")
        if s.controller_manager:          # after /readyz: it exits if its delegated authn cannot read yet
            start_controller_manager(cp, s)
    except BaseException:
        cp.stop()
        raise
    return cp


def start_controller_manager(cp: ControlPlane, s: ControlPlaneSettings) -> None:
    pki = cp.pki
    crt, key = pki.cert("controller-manager")
    kc = write_kubeconfig(os.path.join(s.workdir, "controller-manager.kubeconfig"), cp.url, pki.ca_cert,
                          cert=crt, key=key, user="system:kube-controller-manager")
    cp.procs.append(procs.start("kube-controller-manager", controller_manager_argv(s, pki, cp.bin_dir, kc),
                                os.path.join(s.workdir, "kube-controller-manager.log"), netns=s.netns))


def stop_controller_manager(cp: ControlPlane) -> None:
    p = cp.proc("kube-controller-manager")
    if p is not None:
        p.stop()
        cp.procs.remove(p)


def wait_ready(cp: ControlPlane, wait: float) -> None:
    deadline = time.monotonic() + wait
    last = ""
    api = cp.procs[0]
    while time.monotonic() < deadline:
        if not api.alive():
            raise LabError(f"kube-apiserver exited; its log:\n{procs.tail(cp.log, 40)}")
        try:
            cp.client.request("GET", "/readyz")
            return
        except KubeApiError as err:
            last = str(err)
        except ValueError:          # /readyz answers "ok" as text
            return
        time.sleep(0.2)
    raise LabError(f"kube-apiserver not ready within {wait:.0f}s ({last}); its log:\n{procs.tail(cp.log, 40)}")


def rbac_documents(manifest: str) -> list[dict]:
    """The manifest's Namespace, ServiceAccount and RBAC documents, as the file has them."""
    with open(manifest) as f:
        return [d for d in yaml.safe_load_all(f) if d and d.get("kind") in RBAC_KINDS]


def service_account(manifest: str) -> tuple[str, str]:
    """(namespace, name) of the ServiceAccount the manifest's DaemonSet runs as."""
    with open(manifest) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    ds = next(d for d in docs if d.get("kind") == "DaemonSet")
    return ds["metadata"]["namespace"], ds["spec"]["template"]["spec"]["serviceAccountName"]


def apply_rbac(cp: ControlPlane, manifest: str) -> None:
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac_documents(manifest)))


def token(cp: ControlPlane, namespace: str, name: str, seconds: int = 48 * 3600) -> str:
    """A TokenRequest token for a ServiceAccount (what `kubectl create token` asks for)."""
    doc = cp.client.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                             "spec": {"expirationSeconds": seconds}})
    return doc["status"]["token"]
