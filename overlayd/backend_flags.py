"""flanneld's lease-store flags, and the one place that turns them into a LeaseBackend.

Both the daemon (`overlayd ...`) and `overlayd leases` call these two functions, so the
flags mean the same everywhere. The environment (NODE_NAME, POD_NAME, POD_NAMESPACE) is read
here, at the edge, and passed on as settings.
"""
from __future__ import annotations

import argparse
import os
from typing import Mapping, Optional

from subnet_lease.backend import LeaseBackend
from subnet_lease.config import ConfigError
from subnet_lease.defaults import ANNOTATION_PREFIX as DEFAULT_ANNOTATION_PREFIX
from subnet_lease.defaults import ETCD_PREFIX
from subnet_lease.defaults import NET_CONFIG_PATH as DEFAULT_NET_CONFIG_PATH
from subnet_lease.etcd_backend import DEFAULT_ENDPOINTS, EtcdSettings, split_endpoints


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("lease store (etcd)")
    g.add_argument("--etcd-endpoints", default=",".join(DEFAULT_ENDPOINTS),
                   help="comma-separated etcd URLs (default: %(default)s)")
    g.add_argument("--etcd-prefix", default=ETCD_PREFIX,
                   help="etcd prefix holding config and subnets/ (default: %(default)s)")
    g.add_argument("--etcd-cafile", default=None, help="CA bundle to verify etcd's TLS certificate")
    g.add_argument("--etcd-certfile", default=None, help="client certificate for etcd (TLS)")
    g.add_argument("--etcd-keyfile", default=None, help="client key for etcd (TLS)")
    g.add_argument("--etcd-username", default=None, help="etcd user (etcd auth)")
    g.add_argument("--etcd-password", default=None, help="etcd password (etcd auth)")
    g.add_argument("--subnet-lease-renew-margin", type=int, default=60, metavar="MINUTES",
                   help="renew the subnet lease this many minutes before it expires, 1-1439 "
                        "(default: %(default)s)")
    g.add_argument("--subnet-lease-ttl", type=int, default=86400, metavar="SECONDS",
                   help="TTL of the node's etcd lease (default: %(default)s = 24 h)")
    g.add_argument("--subnet-quarantine", type=int, default=3600, metavar="SECONDS",
                   help="after a node's lease expires, hand its subnet to no other node for this "
                        "long, so a node cut off from etcd keeps it; 0: off (default: %(default)s)")
    k = parser.add_argument_group("lease store (Kubernetes)")
    k.add_argument("--kube-subnet-mgr", action="store_true",
                   help="take the subnet from Node.spec.podCIDR instead of etcd")
    k.add_argument("--kube-api-url", default="", help="API server URL (default: in-cluster or kubeconfig)")
    k.add_argument("--kubeconfig-file", "--kubeconfig", default="",
                   help="kubeconfig to use, for the lease store in kube mode and for --network-policy "
                        "(default: in-cluster config)")
    k.add_argument("--kube-annotation-prefix", default=DEFAULT_ANNOTATION_PREFIX,
                   help="prefix of the node annotations (default: %(default)s)")
    k.add_argument("--net-config-path", default=DEFAULT_NET_CONFIG_PATH,
                   help="net-conf.json in kube mode (default: %(default)s)")
    k.add_argument("--node-name", default=None,
                   help="this node's Kubernetes name (default: $NODE_NAME, else the spec.nodeName "
                        "of pod $POD_NAMESPACE/$POD_NAME)")
    k.add_argument("--set-node-network-unavailable", type=parse_bool, default=True, metavar="BOOL",
                   help="set the NetworkUnavailable=False node condition once up (default: true)")


def parse_bool(text: str) -> bool:
    """A flag's boolean, spelled as Go's flag package accepts it (flanneld's flags are Go flags)."""
    low = text.strip().lower()
    if low in ("1", "t", "true", "yes", "y", "on"):
        return True
    if low in ("0", "f", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def etcd_settings(args: argparse.Namespace) -> EtcdSettings:
    margin = args.subnet_lease_renew_margin
    if not 1 <= margin <= 1439:
        raise ConfigError(f"--subnet-lease-renew-margin {margin} is outside 1-1439 minutes")
    return EtcdSettings(
        endpoints=tuple(split_endpoints(args.etcd_endpoints)),
        prefix=args.etcd_prefix,
        cafile=args.etcd_cafile or None,
        certfile=args.etcd_certfile or None,
        keyfile=args.etcd_keyfile or None,
        username=args.etcd_username or None,
        password=args.etcd_password or None,
        lease_ttl=args.subnet_lease_ttl,
        quarantine=args.subnet_quarantine,
        renew_margin=margin * 60.0,
    )


def kube_settings(args: argparse.Namespace, environ: Optional[Mapping[str, str]] = None):
    from subnet_lease.kube_backend import KubeSettings  # the kubernetes client only when asked for
    env = os.environ if environ is None else environ
    return KubeSettings(
        node_name=args.node_name or env.get("NODE_NAME") or None,
        pod_name=env.get("POD_NAME") or None,
        pod_namespace=env.get("POD_NAMESPACE") or None,
        api_url=args.kube_api_url or None,
        kubeconfig=args.kubeconfig_file or None,
        annotation_prefix=args.kube_annotation_prefix,
        net_config_path=args.net_config_path,
        set_network_unavailable=args.set_node_network_unavailable,
    )


def make_backend(args: argparse.Namespace, environ: Optional[Mapping[str, str]] = None) -> LeaseBackend:
    """The backend the flags ask for. Raises ConfigError naming the flag when they are wrong."""
    if getattr(args, "kube_subnet_mgr", False):
        from subnet_lease.kube_backend import KubeLeaseBackend
        return KubeLeaseBackend(kube_settings(args, environ))
    from subnet_lease.etcd_backend import EtcdLeaseBackend
    return EtcdLeaseBackend(etcd_settings(args))
