"""The self-contained bundle: built, installed by `overlayd install-cni`, run with no Python on the host.

Layout (cni_plugin.bundle): overlay = the native front end, overlay.d/overlay = the PyInstaller
build of the Python plugin. The front end hands ADD/DEL to overlayd's CNI service when one
answers and runs overlay.d/overlay otherwise; both paths are driven here from an installed
bundle, in a mount namespace where every Python on this machine is hidden.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from cni_plugin import bundle, frontend
from overlayd.cni_service import CniService
from overlayd.metrics import Metrics

pytestmark = pytest.mark.kernel

# Every place this machine keeps a Python; the test mounts empty things over them.
HIDE_DIRS = ["/usr/lib/python3", "/usr/lib/python3.11", "/usr/local/lib/python3.11", "/root/.pyenv",
             os.path.realpath(sys.prefix), "/work/main/.venv"]
HIDE_FILES_GLOB = "/usr/bin/python3* /usr/local/bin/python3* /usr/lib/x86_64-linux-gnu/libpython3*"
NOTHING = {"veths": [], "ips": [], "cache": []}


@pytest.fixture(scope="module")
def built_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    bundle.build(str(out))
    return str(out)


def install_cni(*args):
    return subprocess.run([sys.executable, "-m", "overlayd.cli", "install-cni", *args],
                          capture_output=True, text=True)


def sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_the_bundle_is_the_front_end_plus_the_frozen_python_plugin(built_bundle, tmp_path):
    assert sorted(os.listdir(built_bundle)) == ["overlay", "overlay.d"]
    front = os.path.join(built_bundle, "overlay")
    assert sha256(front) == sha256(frontend.build(str(tmp_path / "overlay")))   # the native front end
    python_plugin = os.path.join(built_bundle, "overlay.d", "overlay")
    assert os.access(front, os.X_OK) and os.access(python_plugin, os.X_OK)
    with open(python_plugin, "rb") as f:
        assert f.read(4) == b"\x7fELF"                                          # PyInstaller's bootloader
    # Its files sit beside it (--contents-directory .), not in a second directory level.
    assert any(n.startswith("libpython3") for n in os.listdir(os.path.join(built_bundle, "overlay.d")))
    # The id covers the front end too: another front end, another id.
    assert bundle.bundle_id(built_bundle) == bundle.content_hash(built_bundle)
    copy = tmp_path / "copy"
    shutil.copytree(built_bundle, copy, symlinks=True)
    with open(copy / "overlay", "ab") as f:
        f.write(b"\0")
    assert bundle.content_hash(str(copy)) != bundle.bundle_id(built_bundle)


def test_the_bundle_answers_every_command_the_front_end_does_not_send_to_overlayd(built_bundle, tmp_path):
    """VERSION, STATUS, GC and a decode error: overlay.d/overlay, with only what the bundle carries."""
    conf = {"cniVersion": "1.1.0", "name": "n", "type": "overlay", "cniSocket": "",
            "subnetFile": str(tmp_path / "no-subnet.env"), "dataDir": str(tmp_path / "cache"),
            "cni.dev/valid-attachments": []}

    def run(command: str, stdin: str) -> tuple[int, dict | None]:
        proc = subprocess.run([os.path.join(built_bundle, "overlay")], input=stdin, capture_output=True,
                              text=True, timeout=30, cwd="/",
                              env={"PATH": "/usr/bin:/bin", "CNI_COMMAND": command, "CNI_PATH": "/usr/lib/cni",
                                   "CNI_CONTAINERID": "c1", "CNI_NETNS": "/proc/self/ns/net", "CNI_IFNAME": "eth0"})
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc.returncode, (json.loads(proc.stdout) if proc.stdout.strip() else None)

    rc, out = run("VERSION", json.dumps(conf))
    assert rc == 0 and {"0.3.1", "0.4.0", "1.0.0", "1.1.0"} <= set(out["supportedVersions"])
    rc, out = run("STATUS", json.dumps(conf))
    assert rc == 1 and out["code"] == 50 and "overlayd" in out["details"]
    rc, out = run("GC", json.dumps(conf))
    assert rc == 0, out
    rc, out = run("ADD", "{not json")            # no service configured: the Python plugin answers
    assert rc == 1 and out["code"] == 6


def test_install_cni_copies_the_bundle_and_writes_the_conflist_only_when_changed(built_bundle, tmp_path):
    bin_dir, conf_dir = tmp_path / "opt/cni/bin", tmp_path / "etc/cni/net.d"
    src = tmp_path / "cni-conf.json"
    src.write_text(json.dumps({"cniVersion": "1.0.0", "name": "cbr0", "plugins": [{"type": "overlay"}]}))
    flags = ["--bundle", built_bundle, "--cni-conf", str(src), "--bin-dir", str(bin_dir), "--conf-dir", str(conf_dir)]

    first = install_cni(*flags)
    assert first.returncode == 0, first.stderr
    assert "installed" in first.stdout and "written" in first.stdout
    conflist = conf_dir / "10-overlay.conflist"
    assert json.loads(conflist.read_text())["name"] == "cbr0"
    assert sorted(os.listdir(bin_dir)) == ["overlay", "overlay.d"]
    assert sha256(bin_dir / "overlay") == sha256(os.path.join(built_bundle, "overlay"))
    assert os.access(bin_dir / "overlay.d/overlay", os.X_OK)
    inode = conflist.stat().st_ino

    again = install_cni(*flags)
    assert again.stdout.count("unchanged") == 2 and conflist.stat().st_ino == inode

    src.write_text(json.dumps({"cniVersion": "1.0.0", "name": "cbr1", "plugins": [{"type": "overlay"}]}))
    changed = install_cni(*flags)
    assert "overlay: unchanged" in changed.stdout and "conflist: written" in changed.stdout
    assert json.loads(conflist.read_text())["name"] == "cbr1"
    assert sorted(os.listdir(conf_dir)) == ["10-overlay.conflist"]  # no temp files left

    src.write_text('{"name": "x", "plugins": [{"type": "bridge"}]}')
    bad = install_cni(*flags)
    assert bad.returncode == 1 and '{"type": "overlay"}' in bad.stderr
    assert json.loads(conflist.read_text())["name"] == "cbr1"  # untouched


def test_install_cni_completes_an_install_that_stopped_between_its_two_renames(built_bundle, tmp_path):
    """overlay.d (with the new id) was swapped in, the front end was not: the id alone must not say unchanged."""
    bin_dir = tmp_path / "bin"
    src = tmp_path / "cni-conf.json"
    src.write_text(json.dumps({"cniVersion": "1.0.0", "name": "cbr0", "plugins": [{"type": "overlay"}]}))
    flags = ["--bundle", built_bundle, "--cni-conf", str(src), "--bin-dir", str(bin_dir),
             "--conf-dir", str(tmp_path / "net.d")]
    assert install_cni(*flags).returncode == 0
    (bin_dir / "overlay").write_bytes(b"#!/bin/sh\nexit 1\n")       # the previous release's front end
    contents_inode = (bin_dir / "overlay.d").stat().st_ino
    fixed = install_cni(*flags)
    assert fixed.returncode == 0 and "overlay: installed" in fixed.stdout, fixed.stdout + fixed.stderr
    assert sha256(bin_dir / "overlay") == sha256(os.path.join(built_bundle, "overlay"))
    assert (bin_dir / "overlay.d").stat().st_ino != contents_inode   # swapped whole, not patched
    assert sorted(os.listdir(bin_dir)) == ["overlay", "overlay.d"]   # no staging directory left


def test_install_cni_refuses_a_bundle_without_the_python_plugin(built_bundle, tmp_path):
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy2(os.path.join(built_bundle, "overlay"), half / "overlay")
    (half / "overlay.d").mkdir()
    src = tmp_path / "cni-conf.json"
    src.write_text(json.dumps({"cniVersion": "1.0.0", "name": "cbr0", "plugins": [{"type": "overlay"}]}))
    bin_dir = tmp_path / "bin"
    proc = install_cni("--bundle", str(half), "--cni-conf", str(src), "--bin-dir", str(bin_dir),
                       "--conf-dir", str(tmp_path / "net.d"))
    assert proc.returncode == 1
    assert "overlay.d/overlay" in proc.stderr and "python -m cni_plugin.bundle build" in proc.stderr
    assert not bin_dir.exists() and not (tmp_path / "net.d").exists()   # checked before touching the node


def run_without_python(node, bin_dir: str, command: str, conf: dict, pod_path: str) -> tuple[int, dict | str]:
    """One plugin call in a mount namespace where every Python on this machine is hidden."""
    conf_file = os.path.join(os.path.dirname(bin_dir), f"{command}.json")
    with open(conf_file, "w") as f:
        json.dump(conf, f)
    script = (
        "set -e\n"
        "mount --make-rprivate /\n"
        + "".join(f"[ -d {d} ] && mount -t tmpfs none {d}\n" for d in HIDE_DIRS) +
        f"for f in {HIDE_FILES_GLOB}; do [ -e \"$f\" ] && mount --bind /dev/null \"$f\"; done\n"
        "set +e\n"
        "if python3 -c pass 2>/dev/null || /usr/bin/python3.11 -c pass 2>/dev/null; then echo PYTHON_VISIBLE; exit 97; fi\n"
        f"env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CNI_COMMAND={command} CNI_CONTAINERID=ctr-1 "
        f"CNI_NETNS={pod_path} CNI_IFNAME=eth0 CNI_PATH={bin_dir} "
        f"ip netns exec {node.netns} {bin_dir}/overlay < {conf_file}\n"
    )
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 97, "the host's Python was still visible"
    out = proc.stdout.strip()
    return proc.returncode, (json.loads(out) if out.startswith("{") else out + proc.stderr)


def installed_node_bin(built_bundle, node, tmp_path):
    """The bundle installed by install-cni into a node root, with the reference delegates beside it."""
    bin_dir = tmp_path / "root/opt/cni/bin"
    src = tmp_path / "conflist.json"
    src.write_text(json.dumps(node.runtime.conflist))
    done = install_cni("--bundle", built_bundle, "--cni-conf", str(src), "--bin-dir", str(bin_dir),
                       "--conf-dir", str(tmp_path / "root/etc/cni/net.d"))
    assert done.returncode == 0, done.stderr
    for delegate in ("bridge", "host-local"):  # what the node's CNI bin dir has anyway
        shutil.copy2(f"/usr/lib/cni/{delegate}", bin_dir / delegate)
    return str(bin_dir)


def test_add_check_del_work_on_a_node_without_python_or_overlayd(built_bundle, make_node, tmp_path):
    """No CNI service listens on the conflist's cniSocket: the front end runs the bundled Python plugin."""
    node = make_node(cni_socket=str(tmp_path / "nobody-listens.sock"))
    bin_dir = installed_node_bin(built_bundle, node, tmp_path)
    pod = node.pod()
    path = node.netns_path(pod)
    conf = node.runtime.overlay_conf()
    rc, result = run_without_python(node, bin_dir, "ADD", conf, path)
    assert rc == 0, result
    assert node.pod_addrs(pod) == [result["ips"][0]["address"]]

    rc, out = run_without_python(node, bin_dir, "CHECK", dict(conf, prevResult=result), path)
    assert rc == 0, out
    subprocess.run(["ip", "-n", pod, "addr", "flush", "dev", "eth0"], check=True)
    rc, out = run_without_python(node, bin_dir, "CHECK", dict(conf, prevResult=result), path)
    assert rc != 0 and "is missing on eth0" in out["msg"]

    rc, out = run_without_python(node, bin_dir, "DEL", dict(conf, prevResult=result), path)
    assert rc == 0, out
    assert node.leftovers() == NOTHING


def test_add_del_from_the_installed_bundle_are_served_by_overlayd(built_bundle, make_node, tmp_path):
    """The front end hands ADD/DEL to a running CNI service; it runs the delegate on the service's behalf."""
    sock = str(tmp_path / "run/flannel/cni.sock")
    node = make_node(cni_socket=sock)
    bin_dir = installed_node_bin(built_bundle, node, tmp_path)
    metrics = Metrics()
    service = CniService(sock, node.subnet_file, metrics=metrics, data_dir=node.data_dir).start()
    try:
        def served(command: str, result: str = "ok") -> float:
            return metrics.registry.get_sample_value(
                "overlayd_cni_requests_total", {"command": command, "result": result}) or 0.0

        pod = node.pod()
        path = node.netns_path(pod)
        conf = node.runtime.overlay_conf()
        rc, result = run_without_python(node, bin_dir, "ADD", conf, path)
        assert rc == 0, result
        assert served("ADD") == 1 and served("ADD", "fallback") == 0
        addr = result["ips"][0]["address"]
        assert addr.startswith("10.244.7.") and node.pod_addrs(pod) == [addr]
        assert node.cache_entries() == ["ctr-1-eth0.json"]

        rc, out = run_without_python(node, bin_dir, "DEL", dict(conf, prevResult=result), path)
        assert rc == 0, out
        assert served("DEL") == 1
        assert node.leftovers() == NOTHING
    finally:
        service.close()
