"""Every spec version end to end, portmap chained after us, and a CHECK that really checks."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from cni_chain import ChainError

pytestmark = pytest.mark.kernel

NOTHING = {"veths": [], "ips": [], "cache": []}


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_every_version_add_check_del(make_node, version):
    node = make_node(version)
    pod = node.pod()
    path = node.netns_path(pod)
    mappings = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
    result = node.runtime.add("ctr-1", path, runtime_config=mappings)

    assert result["cniVersion"] == version
    ip = result["ips"][0]
    assert ip["address"].startswith("10.244.7.")
    if version in ("0.3.1", "0.4.0"):
        assert ip["version"] == "4"          # pre-1.0 result shape
    else:
        assert "version" not in ip
    # Debian's delegates stop at 1.0.0: they were spoken to in a version they know.
    entry = json.load(open(os.path.join(node.data_dir, node.cache_entries()[0])))
    assert entry["cniVersion"] == ("1.0.0" if version == "1.1.0" else version)
    assert node.pod_addrs(pod) == [ip["address"]]
    if version != "1.1.0":  # portmap ran after us with our result as prevResult
        nat = subprocess.run(["ip", "netns", "exec", node.netns, "iptables-save", "-t", "nat"],
                             capture_output=True, text=True).stdout
        assert "--dport 8080" in nat and ip["address"].split("/")[0] in nat

    if version == "0.3.1":
        with pytest.raises(ChainError) as err:      # CHECK arrived in 0.4.0
            node.runtime.check("ctr-1", path, runtime_config=mappings)
        assert err.value.out["code"] == 1
    else:
        node.runtime.check("ctr-1", path, runtime_config=mappings)

    node.runtime.delete("ctr-1", path, runtime_config=mappings)
    assert node.leftovers() == NOTHING


def test_check_fails_after_the_pods_address_was_removed_by_hand(node):
    pod = node.pod()
    path = node.netns_path(pod)
    result = node.runtime.add("ctr-1", path)
    node.runtime.check("ctr-1", path)
    address = result["ips"][0]["address"]
    subprocess.run(["ip", "-n", pod, "addr", "del", address, "dev", "eth0"], check=True)

    with pytest.raises(ChainError) as err:
        node.runtime.check("ctr-1", path)
    assert err.value.plugin == "overlay"
    assert f"address {address} is missing on eth0" in err.value.out["msg"]
    node.runtime.delete("ctr-1", path)
    assert node.leftovers() == NOTHING


def test_check_fails_when_the_route_to_the_cluster_network_is_gone(node):
    pod = node.pod()
    path = node.netns_path(pod)
    node.runtime.add("ctr-1", path)
    subprocess.run(["ip", "-n", pod, "route", "del", "10.244.0.0/16"], check=True)
    with pytest.raises(ChainError) as err:
        node.runtime.check("ctr-1", path)
    assert "route to 10.244.0.0/16" in err.value.out["msg"]
    node.runtime.delete("ctr-1", path)


def test_check_of_an_unknown_attachment_is_code_3(node):
    pod = node.pod()
    node.runtime.results[("ghost", "eth0")] = {"cniVersion": "1.0.0", "ips": [], "routes": [], "interfaces": []}
    with pytest.raises(ChainError) as err:
        node.runtime.check("ghost", node.netns_path(pod))
    assert err.value.out["code"] == 3
