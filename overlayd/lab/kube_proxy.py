"""kube-proxy (iptables mode) for a lab node and kube-scheduler for the lab's control plane.

kube-proxy runs in the node's namespaces: its rules are the node's network namespace's.
It is told not to touch the conntrack sysctls (maxPerCore 0, timeouts 0): those are
machine-wide from the initial namespace and not the lab's to change.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import yaml

from . import procs
from .node_host import NodeHost


@dataclasses.dataclass(frozen=True)
class KubeProxySettings:
    node_name: str
    kubeconfig: str          # CN=system:kube-proxy (bound to system:node-proxier by default RBAC)
    cluster_cidrs: tuple[str, ...]
    binary: str
    mode: str = "iptables"


def proxy_config(s: KubeProxySettings) -> dict:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": s.kubeconfig},
        "hostnameOverride": s.node_name, "mode": s.mode,
        "clusterCIDR": ",".join(s.cluster_cidrs),
        "bindAddress": "0.0.0.0",
        "healthzBindAddress": "127.0.0.1:10256", "metricsBindAddress": "127.0.0.1:10249",
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s",
                      "udpTimeout": "0s", "udpStreamTimeout": "0s"},
        "iptables": {"syncPeriod": "10s", "minSyncPeriod": "0s"},
        "nftables": {"syncPeriod": "10s", "minSyncPeriod": "0s"},
    }


def start_proxy(s: KubeProxySettings, host: NodeHost) -> procs.Proc:
    conf = os.path.join(host.workdir, "kube-proxy.yaml")
    with open(conf, "w") as f:
        yaml.safe_dump(proxy_config(s), f)
    argv = [*host.enter(), s.binary, f"--config={conf}", "--v=1"]
    return procs.start(f"kube-proxy {s.node_name}", argv, os.path.join(host.workdir, "kube-proxy.log"))


def start_scheduler(binary: str, kubeconfig: str, workdir: str, netns: str) -> procs.Proc:
    argv: Sequence[str] = [binary, f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
                           f"--authorization-kubeconfig={kubeconfig}", "--leader-elect=false",
                           "--bind-address=127.0.0.1", "--secure-port=10259", "--v=1"]
    return procs.start("kube-scheduler", argv, os.path.join(workdir, "kube-scheduler.log"), netns=netns)
