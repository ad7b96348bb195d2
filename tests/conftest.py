"""Shared fixtures: a cleanup registry, unique network namespaces, a real etcd server.

Everything a test makes is registered with `cleanup` and removed when the test ends,
whether it passed, failed or was interrupted.
"""
from __future__ import annotations

import pytest

from overlayd.lab.cleanup import Cleanup
from overlayd.lab.etcd import start_etcd
from overlayd.lab.netns import add_netns, ip, unique_token


@pytest.fixture
def cleanup():
    c = Cleanup()
    try:
        yield c
    finally:
        failed = c.run()
        assert not failed, f"cleanup failed for: {failed}"


@pytest.fixture
def make_netns(cleanup):
    """make_netns('node') -> a fresh, uniquely named namespace with lo up."""
    token = unique_token()

    def make(role: str = "ns") -> str:
        return add_netns(f"ovt-{token}-{role}", cleanup)

    return make


@pytest.fixture(scope="module")
def etcd_server():
    """One real etcd per test module on a free loopback port (root namespace, loopback only)."""
    c = Cleanup()
    try:
        yield start_etcd(c)
    finally:
        c.run()


@pytest.fixture
def etcd_prefix(etcd_server):
    """A key prefix unique to the test, so tests sharing one etcd never see each other."""
    prefix = f"/ovt-{unique_token()}/network"
    yield prefix
    etcd_server.etcdctl("del", "--prefix", prefix, check=False)


@pytest.fixture(scope="module")
def kube_control_plane(tmp_path_factory):
    """(ControlPlane, EtcdServer): a real etcd and kube-apiserver, one per test module, in a namespace
    of their own (192.0.2.254:6443), reached from here through the control plane's loopback relay
    with the admin kubeconfig. No controller-manager: tests set podCIDRs as its node IPAM would.
    The nodes watch cache is off (--watch-cache-sizes=nodes#0), so a watch from an old
    resourceVersion is served by etcd itself and a compaction gives a real 410 Gone."""
    from overlayd.lab import control_plane as cplane
    from overlayd.lab.kube_bins import etcd_binary
    c = Cleanup()
    try:
        netns = add_netns(f"ovt-{unique_token()}-api", c)
        ip("link", "add", "br0", "type", "bridge", netns=netns)
        ip("addr", "add", "192.0.2.254/24", "dev", "br0", netns=netns)
        ip("link", "set", "br0", "up", netns=netns)
        etcd = start_etcd(c, host="192.0.2.254", netns=netns, port=2379, binary=etcd_binary())
        settings = cplane.ControlPlaneSettings(
            workdir=str(tmp_path_factory.mktemp("kube")), netns=netns, host="192.0.2.254",
            cluster_cidrs=("10.244.0.0/16",), controller_manager=False,
            apiserver_args=("--watch-cache-sizes=nodes#0",))
        cp = cplane.start(settings)
        c.push("kube-apiserver", cp.stop)
        yield cp, etcd
    finally:
        c.run()
