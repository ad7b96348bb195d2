"""The self-contained bundle: built, installed by `overlayd install-cni`, run with no Python on the host."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from cni_plugin import bundle

pytestmark = pytest.mark.kernel

# Every place this machine keeps a Python; the test mounts empty things over them.
HIDE_DIRS = ["/usr/lib/python3", "/usr/lib/python3.11", "/usr/local/lib/python3.11", "/root/.pyenv",
             os.path.realpath(sys.prefix), "/work/main/.venv"]
HIDE_FILES_GLOB = "/usr/bin/python3* /usr/local/bin/python3* /usr/lib/x86_64-linux-gnu/libpython3*"


@pytest.fixture(scope="module")
def built_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    bundle.build(str(out))
    return str(out)


def install_cni(*args):
    return subprocess.run([sys.executable, "-m", "overlayd.cli", "install-cni", *args],
                          capture_output=True, text=True)


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
    assert os.access(bin_dir / "overlay", os.X_OK) and (bin_dir / "overlay.d").is_dir()
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


def test_add_check_del_work_on_a_node_without_python(built_bundle, node, tmp_path):
    bin_dir = tmp_path / "root/opt/cni/bin"
    src = tmp_path / "conflist.json"
    src.write_text(json.dumps(node.runtime.conflist))
    done = install_cni("--bundle", built_bundle, "--cni-conf", str(src), "--bin-dir", str(bin_dir),
                       "--conf-dir", str(tmp_path / "root/etc/cni/net.d"))
    assert done.returncode == 0, done.stderr
    for delegate in ("bridge", "host-local"):  # what the node's CNI bin dir has anyway
        shutil.copy2(f"/usr/lib/cni/{delegate}", bin_dir / delegate)

    pod = node.pod()
    path = node.netns_path(pod)
    conf = node.runtime.overlay_conf()
    rc, result = run_without_python(node, str(bin_dir), "ADD", conf, path)
    assert rc == 0, result
    assert node.pod_addrs(pod) == [result["ips"][0]["address"]]

    rc, out = run_without_python(node, str(bin_dir), "CHECK", dict(conf, prevResult=result), path)
    assert rc == 0, out
    subprocess.run(["ip", "-n", pod, "addr", "flush", "dev", "eth0"], check=True)
    rc, out = run_without_python(node, str(bin_dir), "CHECK", dict(conf, prevResult=result), path)
    assert rc != 0 and "is missing on eth0" in out["msg"]

    rc, out = run_without_python(node, str(bin_dir), "DEL", dict(conf, prevResult=result), path)
    assert rc == 0, out
    assert node.leftovers() == {"veths": [], "ips": [], "cache": []}
