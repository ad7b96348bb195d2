"""The kube backend through the official `kubernetes` client against a real kube-apiserver.

One API server per module (real_kube.py: etcd + kube-apiserver in a namespace of their own); every
test starts from an empty cluster. Writes are counted from the API server's audit log. The faults a
real server cannot be made to produce on demand are in test_kube_backend_faults.py (the emulator).
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import threading
import time

import pytest

import real_kube
from overlayd.backend_flags import add_backend_arguments, make_backend
from subnet_lease.backend import LeaseBackend
from subnet_lease.config import ConfigError, parse_net_config
from subnet_lease.kube_backend import KubeLeaseBackend
from subnet_lease.lease import Lease
import watching
from watching import wait_for

P = "flannel.alpha.coreos.com"
CONFIG = parse_net_config('{"Network":"10.244.0.0/16"}')


def template(n: int) -> Lease:
    return Lease(subnet=None, public_ip=ipaddress.ip_address(f"192.0.2.{n}"),
                 backend_data={"VNI": 1, "VtepMAC": f"0a:58:00:00:00:{n:02x}"})


def peer_annotations(n: int, prefix: str = P) -> dict:
    return {f"{prefix}/kube-subnet-manager": "true", f"{prefix}/backend-type": "vxlan",
            f"{prefix}/backend-data": json.dumps({"VNI": 1, "VtepMAC": f"0a:58:00:00:00:{n:02x}"}),
            f"{prefix}/public-ip": f"192.0.2.{n}"}


@pytest.fixture
def emu(kube_control_plane):
    """The real API server, emptied after the test (named `emu` as the emulator's fixture was)."""
    kube = real_kube.RealKube(*kube_control_plane)
    yield kube
    kube.reset()


@pytest.fixture
def make(emu, tmp_path):
    with watching.kube_backends(tmp_path, kubeconfig=emu.kubeconfig) as make:
        yield make


def Collector(backend, revision):
    return watching.Collector(backend, revision, shape=lambda e: (e.kind, e.lease.node_name, e.lease))


def test_flags_select_the_kube_backend_with_node_name_from_the_environment(emu, tmp_path):
    parser = argparse.ArgumentParser()
    add_backend_arguments(parser)
    args = parser.parse_args(["--kube-subnet-mgr", "--kubeconfig-file", emu.kubeconfig,
                              "--net-config-path", str(tmp_path / "none.json")])
    b = make_backend(args, environ={"NODE_NAME": "node-7"})
    try:
        assert isinstance(b, KubeLeaseBackend) and isinstance(b, LeaseBackend)
        assert b.settings.node_name == "node-7" and b.settings.annotation_prefix == P
        with pytest.raises(ConfigError, match="cannot read the network config .*none.json"):
            b.get_network_config()
    finally:
        b.close()


def test_acquire_takes_podcidr_publishes_annotations_and_marks_network_available(emu, make):
    emu.add_node("node-1", "10.244.7.0/24")
    b = make()
    config = b.get_network_config()
    lease = b.acquire(config, template(1))
    assert lease.subnet == ipaddress.ip_network("10.244.7.0/24") and lease.node_name == "node-1"
    node = emu.node("node-1")
    a = node["metadata"]["annotations"]
    assert a[f"{P}/kube-subnet-manager"] == "true" and a[f"{P}/backend-type"] == "vxlan"
    assert json.loads(a[f"{P}/backend-data"]) == {"VNI": 1, "VtepMAC": "0a:58:00:00:00:01"}
    assert a[f"{P}/public-ip"] == "192.0.2.1"
    conds = {c["type"]: c for c in node["status"]["conditions"]}
    assert conds["NetworkUnavailable"]["status"] == "False" and conds["Ready"]["status"] == "True"
    # Written through the status subresource, in one patch (the audit log of the API server).
    patches = [r for r in emu.requests if r[0] == "PATCH"]
    assert patches == [("PATCH", "/api/v1/nodes/node-1/status")]
    # The VTEP MAC can be found again on restart.
    assert make().find_own_lease().vtep_mac == "0a:58:00:00:00:01"
    # A restart with nothing changed does not patch again.
    make().acquire(config, template(1))
    assert len([r for r in emu.requests if r[0] == "PATCH"]) == 1


def test_without_podcidr_it_waits_not_ready_then_proceeds(emu, make, caplog):
    emu.add_node("node-1")
    b = make()
    result = []
    t = threading.Thread(target=lambda: result.append(b.acquire(CONFIG, template(1))), daemon=True)
    t.start()
    wait_for(lambda: b.health().waiting_for, what="waiting reason")
    assert "no Node.spec.podCIDR" in b.health().waiting_for and not b.health().acquired
    assert "--allocate-node-cidrs" in caplog.text
    emu.update_node("node-1", {"spec": {"podCIDR": "10.244.9.0/24", "podCIDRs": ["10.244.9.0/24"]}})
    t.join(10)
    assert result and str(result[0].subnet) == "10.244.9.0/24"
    assert b.health().acquired and b.health().waiting_for is None


def test_podcidr_outside_network_is_refused(emu, make):
    emu.add_node("node-1", "10.99.7.0/24")
    with pytest.raises(ConfigError, match=r"podCIDR 10.99.7.0/24 is not inside Network 10.244.0.0/16"):
        make().acquire(CONFIG, template(1))


def test_public_ip_overwrite_and_custom_prefix_and_node_from_pod(emu, make):
    prefix = "overlay.example.com"
    emu.add_node("node-1", "10.244.3.0/24", annotations={f"{prefix}/public-ip-overwrite": "203.0.113.9"})
    emu.add_pod("t-overlayd", "overlayd-abcde", "node-1")
    b = make(node_name=None, pod_name="overlayd-abcde", pod_namespace="t-overlayd", annotation_prefix=prefix)
    lease = b.acquire(CONFIG, template(1))
    assert str(lease.public_ip) == "203.0.113.9"
    a = emu.node("node-1")["metadata"]["annotations"]
    assert a[f"{prefix}/public-ip"] == "203.0.113.9" and f"{P}/public-ip" not in a


def test_dual_stack_podcidrs(emu, make):
    config = parse_net_config('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48"}')
    emu.add_node("node-1", "10.244.4.0/24", pod_cidrs=["10.244.4.0/24", "fc00:0:0:4::/64"])
    t = dataclass_replace(template(1), public_ipv6=ipaddress.ip_address("2001:db8::1"))
    lease = make().acquire(config, t)
    assert str(lease.ipv6_subnet) == "fc00:0:0:4::/64" and lease.key == "10.244.4.0-24&fc00:0:0:4::-64"
    a = emu.node("node-1")["metadata"]["annotations"]
    assert a[f"{P}/public-ipv6"] == "2001:db8::1" and f"{P}/backend-v6-data" in a


def dataclass_replace(obj, **kw):
    import dataclasses
    return dataclasses.replace(obj, **kw)


def test_peers_list_then_watch_only_annotated_nodes_and_updates_reemitted(emu, make):
    emu.add_node("node-1", "10.244.1.0/24")
    emu.add_node("node-2", "10.244.2.0/24", annotations=peer_annotations(2))
    emu.add_node("node-3", "10.244.3.0/24")                        # no annotations: not a peer
    b = make()
    b.acquire(CONFIG, template(1))
    leases, rv = b.snapshot()
    assert sorted(x.node_name for x in leases) == ["node-1", "node-2"]
    col = Collector(b, rv)
    try:
        emu.update_node("node-3", {"metadata": {"annotations": peer_annotations(3)}})
        wait_for(lambda: any(e[:2] == ("added", "node-3") for e in col.events), what="node-3 added")
        new_data = json.dumps({"VNI": 1, "VtepMAC": "0a:58:00:00:00:ee"})
        emu.update_node("node-2", {"metadata": {"annotations": {f"{P}/backend-data": new_data}}})
        wait_for(lambda: any(e[:2] == ("added", "node-2") and e[2].vtep_mac == "0a:58:00:00:00:ee"
                             for e in col.events), what="node-2 re-emitted")
        emu.update_node("node-1", {"metadata": {"labels": {"x": "y"}}})   # no lease change: no event
        emu.delete_node("node-3")
        wait_for(lambda: any(e[:2] == ("removed", "node-3") for e in col.events), what="node-3 removed")
        assert not any(e[1] == "node-1" for e in col.events)
    finally:
        col.close()


def test_410_gone_relists_and_emits_the_difference(emu, make):
    emu.add_node("node-1", "10.244.1.0/24")
    emu.add_node("node-2", "10.244.2.0/24", annotations=peer_annotations(2))
    b = make()
    b.acquire(CONFIG, template(1))
    _, rv = b.snapshot()
    # While we were away: node-2 left, node-4 joined, and the server forgot that history.
    emu.delete_node("node-2")
    emu.add_node("node-4", "10.244.4.0/24", annotations=peer_annotations(4))
    emu.compact()
    col = Collector(b, rv)
    try:
        wait_for(lambda: {("removed", "node-2"), ("added", "node-4")} <= {e[:2] for e in col.events},
                 what="re-list difference", timeout=30)
        emu.add_node("node-5", "10.244.5.0/24", annotations=peer_annotations(5))
        wait_for(lambda: ("added", "node-5") in {e[:2] for e in col.events}, what="watch resumes")
        assert b.health().watch_restarts == 1                  # the re-list, for the daemon's metric
    finally:
        col.close()


def test_malformed_peer_annotations_are_skipped_and_a_peer_turning_malformed_is_removed(emu, make, caplog):
    emu.add_node("node-1", "10.244.1.0/24")
    emu.add_node("node-2", "10.244.2.0/24", annotations=peer_annotations(2))
    bad = dict(peer_annotations(3), **{f"{P}/backend-data": '"oops"'})
    emu.add_node("node-3", "10.244.3.0/24", annotations=bad)
    b = make()
    b.acquire(CONFIG, template(1))
    leases, rv = b.snapshot()
    assert sorted(x.node_name for x in leases) == ["node-1", "node-2"]
    assert f"annotation {P}/backend-data 'oops' is not a JSON object" in caplog.text
    col = Collector(b, rv)
    try:
        emu.update_node("node-2", {"metadata": {"annotations": {
            f"{P}/backend-data": json.dumps({"VNI": 1, "VtepMAC": "0a:58:00:00:00"})}}})
        wait_for(lambda: ("removed", "node-2") in {e[:2] for e in col.events}, what="node-2 dropped")
        emu.update_node("node-3", {"metadata": {"annotations": peer_annotations(3)}})   # fixed
        wait_for(lambda: ("added", "node-3") in {e[:2] for e in col.events}, what="node-3 added")
        emu.update_node("node-1", {"metadata": {"annotations": {f"{P}/public-ip": "192.0.2.x"}}})
        wait_for(lambda: ("removed", "node-1") in {e[:2] for e in col.events}, what="node-1 dropped")
        assert "VtepMAC '0a:58:00:00:00' is not a MAC" in caplog.text and "'192.0.2.x'" in caplog.text
    finally:
        col.close()
    # node-1 is this backend's own node: it publishes its annotations again (see below)
    wait_for(lambda: emu.node("node-1")["metadata"]["annotations"][f"{P}/public-ip"] == "192.0.2.1",
             what="node-1 published again")
    fresh, _ = make().snapshot()                    # a restarted daemon agrees
    assert sorted(x.node_name for x in fresh) == ["node-1", "node-3"]


@pytest.mark.parametrize("key,value,version", [
    ("public-ip-overwrite", "203.0.113.300", 4),
    ("public-ip-overwrite", "2001:db8::9", 4),            # IPv6 is not the IPv4 public IP
    ("public-ipv6-overwrite", "203.0.113.9", 6),
])
def test_malformed_public_ip_overwrite_is_a_config_error_naming_it(emu, make, key, value, version):
    config = parse_net_config('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48"}')
    emu.add_node("node-1", "10.244.4.0/24", pod_cidrs=["10.244.4.0/24", "fc00:0:0:4::/64"],
                 annotations={f"{P}/{key}": value})
    t = dataclass_replace(template(1), public_ipv6=ipaddress.ip_address("2001:db8::1"))
    with pytest.raises(ConfigError) as info:
        make().acquire(config, t)
    msg = str(info.value)
    assert f"{P}/{key}" in msg and repr(value) in msg and f"not an IPv{version} address" in msg
    assert "kubectl annotate" in msg                      # the fix
    assert f"{P}/public-ip" not in emu.node("node-1")["metadata"]["annotations"]    # nothing half-done


def test_api_connections_use_tcp_keepalive_so_a_dead_watch_is_noticed(make, emu):
    import socket
    b = make()
    b._api()                                     # builds the client the backend really uses
    options = b._api_client.rest_client.pool_manager.connection_pool_kw["socket_options"]
    assert (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1) in options
    assert (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 10) in options
    # and it still talks to the API server through those connections
    assert b.get_network_config().network is not None
    assert b.snapshot()[1]


def test_annotations_someone_removes_are_published_again(emu, make):
    emu.add_node("node-1", "10.244.1.0/24")
    emu.add_node("node-2", "10.244.2.0/24", annotations=peer_annotations(2))
    b = make()
    b.acquire(CONFIG, template(1))
    _, rv = b.snapshot()
    published = {k: v for k, v in emu.node("node-1")["metadata"]["annotations"].items() if k.startswith(P)}
    col = Collector(b, rv)
    try:
        # `kubectl annotate node node-1 flannel.alpha.coreos.com/backend-data-` and friends
        emu.update_node("node-1", {"metadata": {"annotations": {k: None for k in published}}})
        wait_for(lambda: {k: v for k, v in (emu.node("node-1")["metadata"].get("annotations") or {}).items()
                          if k.startswith(P)} == published, what="annotations published again")
        # and a hand edit of the MAC is put right too
        emu.update_node("node-1", {"metadata": {"annotations": {f"{P}/backend-data": '{"VNI":1,"VtepMAC":"0a:58:00:00:00:99"}'}}})
        wait_for(lambda: emu.node("node-1")["metadata"]["annotations"][f"{P}/backend-data"] == published[f"{P}/backend-data"],
                 what="backend-data restored")
    finally:
        col.close()


def test_a_new_public_ip_from_acquire_is_not_patched_back_by_the_watch(emu, make):
    """The node's address moved: the daemon acquires again with the new PublicIP while its watch
    runs. The watch sees our own PATCH before acquire() returns; it must not restore the old IP."""
    emu.add_node("node-1", "10.244.1.0/24")
    b = make()
    b.acquire(CONFIG, template(1))
    _, rv = b.snapshot()
    col = Collector(b, rv)
    try:
        moved = Lease(subnet=None, public_ip=ipaddress.ip_address("192.0.2.101"),
                      backend_data={"VNI": 1, "VtepMAC": "0a:58:00:00:00:01"})
        b.acquire(CONFIG, moved)
        # Watch events arrive in order: once a peer added after the move is seen, every event of
        # the move (our own patch) has been handled.
        emu.add_node("node-9", "10.244.9.0/24", annotations=peer_annotations(9))
        wait_for(lambda: ("added", "node-9") in {e[:2] for e in col.events}, what="marker node-9")
    finally:
        col.close()
    patched = [r for r in emu.requests if r[0] == "PATCH"]
    assert emu.node("node-1")["metadata"]["annotations"][f"{P}/public-ip"] == "192.0.2.101"
    assert len(patched) == 2, patched                  # the first acquire and the move: nothing else


def test_a_writer_fighting_over_our_annotations_gets_few_patches(emu, make):
    emu.add_node("node-1", "10.244.1.0/24")
    b = make(backoff_initial=0.5)
    b.acquire(CONFIG, template(1))
    _, rv = b.snapshot()
    col = Collector(b, rv)
    try:
        before = len([r for r in emu.requests if r[0] == "PATCH" and r[1] == "/api/v1/nodes/node-1/status"])
        for i in range(30):                            # someone else keeps writing their value, 10 times a second
            emu.update_node("node-1", {"metadata": {"annotations": {f"{P}/public-ip": f"198.18.0.{i + 1}"}}})
            time.sleep(0.1)
        emu.add_node("node-9", "10.244.9.0/24", annotations=peer_annotations(9))
        wait_for(lambda: ("added", "node-9") in {e[:2] for e in col.events}, what="marker node-9")
        ours = len([r for r in emu.requests if r[0] == "PATCH" and r[1] == "/api/v1/nodes/node-1/status"]) - before
    finally:
        col.close()
    # 3 s of fighting with backoff from 0.5 s doubling: a handful of patches, not one per change
    assert 1 <= ours <= 6, ours
