"""kubelet for a lab node, inside the node's namespaces (overlayd.lab.node_host), talking CRI to
the node's containerd and registered with the lab's kube-apiserver as system:node:<name>.

This machine has cgroup v1 controllers with a cgroup2 mount at /sys/fs/cgroup/unified (a hybrid
host), so kubelet runs in cgroup v1 mode: `failCgroupV1: false` (v1.37 refuses v1 by default and
logs "cgroup v1 detected ... deprecated"), `cgroupDriver: cgroupfs` (no systemd here) and a
per-node `cgroupRoot`, so the nodes' pods live in separate cgroup trees. Swap is allowed
(failSwapOn: false); eviction thresholds are low (a shared disk is not the node's to guard).

Authentication: client certificates of the lab's CA (the API server's kubelet client is in
system:masters) and webhook; authorization: webhook (SubjectAccessReview), as kubeadm sets it.
"""
from __future__ import annotations

import dataclasses
import os

import yaml

from . import procs
from .node_host import NodeHost


@dataclasses.dataclass(frozen=True)
class KubeletSettings:
    node_name: str
    node_ip: str
    kubeconfig: str          # system:node:<name> client certificate
    ca_cert: str
    runtime_socket: str      # containerd's CRI socket
    cgroup_root: str
    binary: str
    pod_infra_image: str = ""
    cluster_dns: tuple[str, ...] = ()
    max_pods: int = 32
    verbosity: int = 1


def config(s: KubeletSettings, host: NodeHost) -> dict:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": s.node_ip, "port": 10250, "readOnlyPort": 0, "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": s.ca_cert}},
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{s.runtime_socket}",
        "imageServiceEndpoint": f"unix://{s.runtime_socket}",
        "cgroupDriver": "cgroupfs", "cgroupRoot": s.cgroup_root, "cgroupsPerQOS": True,
        "failCgroupV1": False, "failSwapOn": False,
        "enforceNodeAllocatable": ["pods"],
        "protectKernelDefaults": False,
        "resolvConf": os.path.join(host.workdir, "resolv.conf"),
        "clusterDNS": list(s.cluster_dns), "clusterDomain": "cluster.local",
        "maxPods": s.max_pods,
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "nodefs.inodesFree": "1%",
                         "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "imageMinimumGCAge": "10000h",
        "serializeImagePulls": False,
        "rotateCertificates": False, "serverTLSBootstrap": False,
        "registerNode": True,
        "nodeStatusUpdateFrequency": "5s", "nodeStatusReportFrequency": "20s",
        "syncFrequency": "10s", "fileCheckFrequency": "10s",
        "podLogsDir": "/var/log/pods",
        "localStorageCapacityIsolation": True,
    }


def start(s: KubeletSettings, host: NodeHost) -> procs.Proc:
    conf = os.path.join(host.workdir, "kubelet.yaml")
    with open(conf, "w") as f:
        yaml.safe_dump(config(s, host), f)
    with open(os.path.join(host.workdir, "resolv.conf"), "w") as f:
        f.write("nameserver 127.0.0.1\noptions ndots:1\n")   # no DNS in the lab; pods get a harmless one
    argv = [*host.enter(), s.binary, f"--config={conf}", f"--kubeconfig={s.kubeconfig}",
            f"--hostname-override={s.node_name}", f"--node-ip={s.node_ip}",
            "--root-dir=/var/lib/kubelet", f"--v={s.verbosity}"]
    return procs.start(f"kubelet {s.node_name}", argv, os.path.join(host.workdir, "kubelet.log"))
