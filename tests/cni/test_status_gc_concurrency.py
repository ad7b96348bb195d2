"""STATUS and GC (1.1.0), and 50 ADDs at once on one node."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from cni_plugin.invoke import run_plugin
from frontend_driver import wait_until

pytestmark = pytest.mark.kernel

NOTHING = {"veths": [], "ips": [], "cache": []}


def call(node, command, conf, **kw):
    return run_plugin(node.runtime.overlay, command, conf, cni_path=node.runtime.cni_path,
                      run_in_netns=node.netns, ifname=None, **kw)


def test_status_is_not_ready_until_the_subnet_file_exists(make_node):
    node = make_node("1.1.0")
    conf = node.runtime.overlay_conf()
    assert call(node, "STATUS", conf)[:2] == (0, "")
    os.unlink(node.subnet_file)
    rc, out, _ = call(node, "STATUS", conf)
    assert rc != 0 and out["code"] == 50
    assert node.subnet_file in out["msg"] and "overlayd" in out["details"]
    rc, out, _ = call(node, "STATUS", dict(conf, cniVersion="1.0.0"))
    assert out["code"] == 1  # STATUS arrived in 1.1.0


def test_gc_releases_what_gone_containers_left_and_keeps_the_valid_ones(make_node):
    node = make_node("1.1.0")
    pods = {cid: node.pod(cid) for cid in ("keep", "gone1", "gone2")}
    results = {cid: node.runtime.add(cid, node.netns_path(p)) for cid, p in pods.items()}
    # gone2's cache entry was lost too (e.g. a wiped disk): only host-local remembers it.
    os.unlink(os.path.join(node.data_dir, "gone2-eth0.json"))
    for cid in ("gone1", "gone2"):
        os.system(f"ip netns del {pods[cid]}")
    # Their host veth ends go with the namespaces, once the kernel has torn them down (lazily).
    assert wait_until(lambda: len(node.veths()) == 1, 10), node.veths()

    conf = dict(node.runtime.overlay_conf(), **{"cni.dev/valid-attachments": [
        {"containerID": "keep", "ifname": "eth0"}]})
    rc, out, err = call(node, "GC", conf)
    assert rc == 0, (out, err)
    keep_ip = results["keep"]["ips"][0]["address"].split("/")[0]
    assert node.reserved_ips() == [keep_ip]
    assert node.cache_entries() == ["keep-eth0.json"]
    assert node.veths() and len(node.veths()) == 1
    node.runtime.check("keep", node.netns_path(pods["keep"]))  # untouched

    node.runtime.delete("keep", node.netns_path(pods["keep"]))
    assert node.leftovers() == NOTHING


def test_50_concurrent_adds_get_50_addresses_and_50_dels_leave_nothing(node):
    pods = [node.pod(f"c{i}") for i in range(50)]

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(lambda i: node.runtime.add(f"ctr{i}", node.netns_path(pods[i])), range(50)))
    addresses = {r["ips"][0]["address"] for r in results}
    assert len(addresses) == 50
    assert len(node.veths()) == 50 and len(node.reserved_ips()) == 50 and len(node.cache_entries()) == 50

    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(lambda i: node.runtime.delete(f"ctr{i}", node.netns_path(pods[i])), range(50)))
    assert node.leftovers() == NOTHING
