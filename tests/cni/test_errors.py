"""Every error code the issue lists, as CNI error JSON, and nothing partial left behind."""
from __future__ import annotations

import os
import subprocess

import pytest

from cni_plugin.invoke import plugin_env, run_plugin

pytestmark = pytest.mark.kernel

NOTHING = {"veths": [], "ips": [], "cache": []}


def add(node, conf, pod, **kw):
    return run_plugin(node.runtime.overlay, "ADD", conf, kw.pop("cid", "ctr-1"), node.netns_path(pod),
                      cni_path=node.runtime.cni_path, run_in_netns=node.netns, **kw)


def assert_error(rc, out, code, *words):
    assert rc != 0
    assert out["code"] == code, out
    for word in words:
        assert word in out["msg"] + out.get("details", ""), out


def test_code_1_incompatible_version(node):
    pod = node.pod()
    for version in ("0.2.0", "9.9.9"):
        conf = dict(node.runtime.overlay_conf(), cniVersion=version)
        assert_error(*add(node, conf, pod)[:2], 1, version, "0.3.1, 0.4.0, 1.0.0, 1.1.0")
    assert node.leftovers() == NOTHING


def test_code_4_bad_environment(node):
    pod = node.pod()
    conf = node.runtime.overlay_conf()
    rc, out, _ = run_plugin(node.runtime.overlay, "ADD", conf, "ctr-1", None,
                            cni_path=node.runtime.cni_path, run_in_netns=node.netns)
    assert_error(rc, out, 4, "CNI_NETNS")
    assert_error(*add(node, conf, pod, cid="../etc")[:2], 4, "CNI_CONTAINERID")
    rc, out, _ = run_plugin(node.runtime.overlay, "ADD", conf, "ctr-1", node.netns_path(pod),
                            cni_path=["/nonexistent"], run_in_netns=node.netns)
    assert_error(rc, out, 4, "bridge", "CNI_PATH")
    assert node.leftovers() == NOTHING


def test_code_4_when_the_interface_already_exists_and_it_is_left_alone(node):
    pod = node.pod()
    subprocess.run(["ip", "-n", pod, "link", "add", "eth0", "type", "veth", "peer", "name", "other"], check=True)
    assert_error(*add(node, node.runtime.overlay_conf(), pod)[:2], 4, "eth0 already exists")
    assert node.ip_json("link", "show", "dev", "eth0", netns=pod)[0]["ifname"] == "eth0"
    assert node.leftovers() == NOTHING


def test_code_6_undecodable_config(node):
    pod = node.pod()
    env = plugin_env("ADD", "ctr-1", node.netns_path(pod), "eth0", node.runtime.cni_path)
    proc = subprocess.run(["ip", "netns", "exec", node.netns, node.runtime.overlay], input="{not json",
                          capture_output=True, text=True, env=env)
    assert proc.returncode != 0
    assert '"code":6' in proc.stdout and "not valid JSON" in proc.stdout
    assert node.leftovers() == NOTHING


def test_code_7_invalid_config(node):
    pod = node.pod()
    conf = node.runtime.overlay_conf()
    assert_error(*add(node, dict(conf, ipam={"subnet": "10.1.0.0/16"}), pod)[:2], 7, "ipam.subnet")
    assert_error(*add(node, {k: v for k, v in conf.items() if k != "name"}, pod)[:2], 7, "name")
    assert_error(*add(node, dict(conf, dataDir="relative/dir"), pod)[:2], 7, "dataDir")
    with open(node.subnet_file, "w") as f:
        f.write("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=lots\n")
    assert_error(*add(node, conf, pod)[:2], 7, "FLANNEL_MTU")
    assert node.leftovers() == NOTHING


def test_code_11_until_overlayd_writes_the_subnet_file(node):
    pod = node.pod()
    os.unlink(node.subnet_file)
    assert_error(*add(node, node.runtime.overlay_conf(), pod)[:2], 11, node.subnet_file, "overlayd")
    assert node.leftovers() == NOTHING
    node.write_subnet()
    rc, out, err = add(node, node.runtime.overlay_conf(), pod)
    assert rc == 0, (out, err)


def test_a_delegate_failing_after_it_created_everything_is_rolled_back(node, tmp_path):
    """A bridge that wires the pod and then reports failure: our ADD must undo all of it."""
    flaky = tmp_path / "flaky-bridge"
    flaky.write_text(
        "#!/bin/sh\n"
        "if [ \"$CNI_COMMAND\" = ADD ]; then\n"
        "  /usr/lib/cni/bridge >/dev/null || exit 1\n"
        "  echo '{\"cniVersion\":\"1.0.0\",\"code\":5,\"msg\":\"disk on fire\"}'; exit 1\n"
        "fi\n"
        "exec /usr/lib/cni/bridge\n")
    flaky.chmod(0o755)
    pod = node.pod()
    conf = node.runtime.overlay_conf()
    conf["delegate"] = dict(conf["delegate"], type="flaky-bridge")
    rc, out, _ = run_plugin(node.runtime.overlay, "ADD", conf, "ctr-1", node.netns_path(pod),
                            cni_path=[str(tmp_path), *node.runtime.cni_path], run_in_netns=node.netns)
    assert_error(rc, out, 5, "disk on fire")
    assert node.leftovers() == NOTHING
    assert node.ip_json("link", "show", "dev", "eth0", netns=pod) == []
