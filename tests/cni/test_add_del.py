"""ADD/DEL/VERSION driven like a runtime: conflist (overlay, then portmap) in a node namespace."""
from __future__ import annotations

import os

import pytest

from cni_plugin.invoke import run_plugin
from frontend_driver import wait_until

pytestmark = pytest.mark.kernel


def test_add_wires_a_pod_that_reaches_its_gateway_and_a_neighbour_and_del_removes_everything(node):
    pod_a, pod_b = node.pod("a"), node.pod("b")
    res_a = node.runtime.add("ctr-a", node.netns_path(pod_a))
    res_b = node.runtime.add("ctr-b", node.netns_path(pod_b))

    assert res_a["cniVersion"] == "1.0.0"
    addr_a = res_a["ips"][0]["address"]
    assert addr_a.startswith("10.244.7.") and addr_a.endswith("/24")
    assert "version" not in res_a["ips"][0]  # 1.0.0 result shape
    assert {"dst": "10.244.0.0/16"} in [{"dst": r["dst"]} for r in res_a["routes"]]
    assert any(r["dst"] == "0.0.0.0/0" for r in res_a["routes"])  # isDefaultGateway from `delegate`
    assert node.pod_addrs(pod_a) == [addr_a]
    pod_mtu = node.ip_json("link", "show", "dev", "eth0", netns=pod_a)[0]["mtu"]
    assert pod_mtu == 1450  # FLANNEL_MTU

    assert node.ping(pod_a, "10.244.7.1"), "pod cannot reach its bridge gateway"
    assert node.ping(pod_a, res_b["ips"][0]["address"].split("/")[0]), "pods on one node cannot talk"
    assert len(node.veths()) == 2 and len(node.reserved_ips()) == 2 and len(node.cache_entries()) == 2

    node.runtime.delete("ctr-a", node.netns_path(pod_a))
    node.runtime.delete("ctr-b", node.netns_path(pod_b))
    assert node.veths() == [] and node.reserved_ips() == [] and node.cache_entries() == []
    assert node.ip_json("link", "show", "dev", "eth0", netns=pod_a) == []


def test_del_succeeds_when_nothing_is_left(node):
    pod = node.pod()
    node.runtime.add("ctr-1", node.netns_path(pod))
    node.runtime.delete("ctr-1", node.netns_path(pod))
    node.runtime.delete("ctr-1", node.netns_path(pod))          # twice in a row
    node.runtime.delete("never-added", node.netns_path(pod))    # never existed


def test_del_with_the_cache_gone_still_releases_the_address(node):
    pod = node.pod()
    node.runtime.add("ctr-1", node.netns_path(pod))
    for name in node.cache_entries():
        os.unlink(os.path.join(node.data_dir, name))
    node.runtime.delete("ctr-1", node.netns_path(pod))
    assert node.reserved_ips() == [] and node.veths() == []


def test_del_with_the_netns_gone_releases_the_address(node, make_netns):
    pod = node.pod()
    node.runtime.add("ctr-1", node.netns_path(pod))
    os.system(f"ip netns del {pod}")  # the sandbox died; its veth end goes with it
    node.runtime.delete("ctr-1", node.netns_path(pod))
    assert node.reserved_ips() == [] and node.cache_entries() == []
    # The host end goes with the namespace, but the kernel tears a deleted namespace down lazily:
    # it may still be listed right after `ip netns del` (seen once in a fresh-clone run).
    assert wait_until(lambda: node.veths() == [], 10), node.veths()


def test_del_without_subnet_file_and_cache_is_a_no_op_success(node):
    os.unlink(node.subnet_file)
    node.runtime.delete("ctr-1", None)


def test_version_lists_every_spec_version(node, overlay_exe):
    rc, out, _ = run_plugin(overlay_exe, "VERSION", {"cniVersion": "0.4.0"}, ifname=None)
    assert rc == 0
    assert out == {"cniVersion": "0.4.0", "supportedVersions": ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]}
