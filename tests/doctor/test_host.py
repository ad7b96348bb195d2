"""Doctor against the node around the overlay: CNI binaries and configs, the CNI service socket,
sysctls, the tx-checksum workaround and masquerading. Each case breaks exactly one thing on n1,
asserts doctor names that check and no other, and repairs it.

The daemons run with --vxlan-tx-checksum-off here, so the workaround can be broken too.
"""
from __future__ import annotations

import json
import os
import shutil

import pytest

from overlayd.lab.netns import run
from overlayd.netlink import Netlink

from .conftest import clean, make_lab, only, text

pytestmark = [pytest.mark.e2e, pytest.mark.kernel]


@pytest.fixture(scope="module")
def lab():
    lab = make_lab("--vxlan-tx-checksum-off")
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module", autouse=True)
def ends_clean(lab):
    yield
    clean(lab)


@pytest.fixture
def n1(lab):
    return lab.node("n1")


def test_a_delegate_the_conflist_needs_is_missing(lab, n1):
    link = os.path.join(lab.cni_bin_dir, "host-local")
    target = os.readlink(link)
    os.unlink(link)
    try:
        found = only(lab, "cni-bin", severity="error")
        assert "host-local (the delegate's IPAM): not found" in text(found)
    finally:
        os.symlink(target, link)


def test_a_plugin_that_is_not_executable(lab, n1):
    path = os.path.join(lab.cni_bin_dir, "portmap")
    target = os.readlink(path)
    os.unlink(path)
    shutil.copyfile(target, path)            # a copy without the x bits
    os.chmod(path, 0o644)
    try:
        found = only(lab, "cni-bin", severity="error")
        assert "portmap (plugin): not executable (mode -rw-r--r--)" in text(found)
    finally:
        os.unlink(path)
        os.symlink(target, path)


def test_flannels_conflist_left_behind_sorts_before_ours(lab, n1):
    leftover = os.path.join(n1.cni_conf_dir, "10-flannel.conflist")
    with open(leftover, "w") as f:
        json.dump({"name": "cbr0", "cniVersion": "0.3.1", "plugins": [
            {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
            {"type": "portmap", "capabilities": {"portMappings": True}}]}, f)
    try:
        found = only(lab, "cni-conf", severity="warning")
        assert "10-flannel.conflist sorts before 10-overlay.conflist: the runtime uses it, not ours" in text(found)
    finally:
        os.unlink(leftover)


def test_an_unparseable_file_in_the_conf_dir(lab, n1):
    broken = os.path.join(n1.cni_conf_dir, "05-broken.conf")
    with open(broken, "w") as f:
        f.write('{"cniVersion": "1.0.0", "name": ')
    try:
        found = only(lab, "cni-conf", severity="warning")
        assert "05-broken.conf is not a usable CNI config (not JSON" in text(found)
    finally:
        os.unlink(broken)


def test_the_cni_service_socket_is_gone(lab, n1):
    away = n1.cni_socket + ".away"
    os.rename(n1.cni_socket, away)            # the daemon still listens on the inode; nobody can reach it
    try:
        found = only(lab, "cni-service", severity="warning")
        assert f"{n1.cni_socket}: missing" in text(found)
    finally:
        os.rename(away, n1.cni_socket)


@pytest.mark.parametrize("key,value,words", [
    ("net.ipv4.ip_forward", "0", "net.ipv4.ip_forward is 0"),
    ("net.bridge.bridge-nf-call-iptables", "0", "net.bridge.bridge-nf-call-iptables is 0"),
    ("net.ipv4.conf.flannel/1.rp_filter", "1", "strict rp_filter on flannel.1"),
])
def test_a_sysctl_that_breaks_pod_traffic(lab, n1, key, value, words):
    before = run(["sysctl", "-n", key], netns=n1.netns).stdout.strip()
    run(["sysctl", "-qw", f"{key}={value}"], netns=n1.netns)
    try:
        found = only(lab, "sysctls")
        assert words in found[0].summary
    finally:
        run(["sysctl", "-qw", f"{key}={before}"], netns=n1.netns)


def test_tx_checksum_offload_back_on_despite_the_workaround(lab, n1):
    with Netlink(n1.netns) as nl:
        dev = nl.link("flannel.1")
        assert not nl.tx_checksum(dev.index)          # the daemon's workaround is in place
        nl.set_tx_checksum(dev.index, True)
        try:
            found = only(lab, "tx-checksum", severity="error")
            assert "the workaround is configured but flannel.1 offloads tx checksums again" in found[0].summary
        finally:
            nl.set_tx_checksum(dev.index, False)


def test_a_delegate_that_masquerades_pod_traffic(lab, n1):
    path = os.path.join(n1.cni_conf_dir, "10-overlay.conflist")
    with open(path) as f:
        original = f.read()
    conf = json.loads(original)
    conf["plugins"][0]["delegate"]["ipMasq"] = True
    with open(path, "w") as f:
        json.dump(conf, f)
    try:
        found = only(lab, "masquerade", severity="warning")
        assert "pod-to-pod traffic across nodes is SNATed" in found[0].summary
        assert "delegate ipMasq true" in text(found)
    finally:
        with open(path, "w") as f:
            f.write(original)
