"""Static checks of what cannot run here (the kind e2e needs Docker), and the image's small scripts."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from .manifest_docs import KIND_CONFIG, KUBE_MANIFEST, REPO, all_containers, load, version

SCRIPTS = ["e2e/kind/run.sh", "e2e/lab/run.sh", "image/assemble.sh", "image/install-reference-plugins.sh"]
INSTALL_REFERENCE = os.path.join(REPO, "image", "install-reference-plugins.sh")


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_parses_and_passes_shellcheck(script):
    path = os.path.join(REPO, script)
    assert os.stat(path).st_mode & stat.S_IXUSR, f"{script} is not executable"
    shell = "sh" if script.endswith("install-reference-plugins.sh") else "bash"
    syntax = subprocess.run([shell, "-n", path], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    # -x from the repository: the e2e scripts source e2e/checks.sh, which is linted with them.
    lint = subprocess.run(["shellcheck", "-x", "--severity=style", path], capture_output=True, text=True, cwd=REPO)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_kind_config_makes_three_nodes_without_a_default_cni():
    docs = load(KIND_CONFIG)
    assert len(docs) == 1
    cfg = docs[0]
    assert cfg["kind"] == "Cluster" and cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert cfg["networking"]["disableDefaultCNI"] is True
    assert cfg["networking"]["podSubnet"] == "10.244.0.0/16"
    assert [n["role"] for n in cfg["nodes"]] == ["control-plane", "worker", "worker"]


def test_kind_e2e_uses_the_files_and_image_the_repository_has():
    with open(os.path.join(REPO, "e2e/kind/run.sh")) as f:
        script = f.read()
    for rel in ("manifests/overlayd.yaml", "manifests/kind-config.yaml"):
        assert rel in script and os.path.exists(os.path.join(REPO, rel))
    # The script takes the image tag from the manifest the way this awk line does.
    awk = subprocess.run(["awk", '$1 == "image:" { print $2; exit }', KUBE_MANIFEST],
                         capture_output=True, text=True, check=True)
    assert awk.stdout.strip() == f"overlayd:{version()}"
    assert {c["image"] for c in all_containers(load(KUBE_MANIFEST))} == {awk.stdout.strip()}
    with open(os.path.join(REPO, "Makefile")) as f:
        assert "bash e2e/kind/run.sh" in f.read()


def test_kind_e2e_refuses_to_start_without_docker_and_touches_nothing(tmp_path):
    """On a machine without Docker (like this one) it says what is missing, creates nothing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "awk", "mktemp"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    proc = subprocess.run([shutil.which("bash"), os.path.join(REPO, "e2e/kind/run.sh")], capture_output=True, text=True,
                          env={"PATH": str(bin_dir), "TMPDIR": str(tmp_path)}, timeout=60)
    assert proc.returncode != 0
    assert "docker is not on PATH" in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["bin"]


def test_docker_context_holds_what_the_assembly_script_reads():
    with open(os.path.join(REPO, ".dockerignore")) as f:
        rules = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", "the context is an allow-list"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    with open(os.path.join(REPO, "image/assemble.sh")) as f:
        tar_line = next(line for line in f if "-cf - " in line)
    read = tar_line.split("-cf - ", 1)[1].split("|", 1)[0].split()
    assert set(read) | {"image"} <= allowed, f"assemble.sh reads {read}, the context has {allowed}"
    with open(os.path.join(REPO, "Dockerfile")) as f:
        dockerfile = f.read()
    assert "image/assemble.sh /" in dockerfile
    assert 'ENTRYPOINT ["/opt/overlayd/bin/overlayd"]' in dockerfile


def test_dockerfile_stages_install_what_assembly_and_runtime_need():
    """Build stage: venv, PyInstaller's objdump, the reference plugins; both stages on one base,
    because the venv links to the base's /usr/bin/python3."""
    with open(os.path.join(REPO, "Dockerfile")) as f:
        text = f.read().replace("\\\n", " ")
    stages = text.split("\nFROM ")[1:]
    assert len(stages) == 2
    build, runtime = stages
    assert build.split()[0] == runtime.split()[0] == "${DEBIAN_IMAGE}"
    build_packages = set(build.split("apt-get install", 1)[1].split("&&", 1)[0].split())
    assert {"python3", "python3-venv", "binutils", "containernetworking-plugins"} <= build_packages
    runtime_packages = set(runtime.split("apt-get install", 1)[1].split("&&", 1)[0].split())
    assert {"python3", "iptables", "nftables", "iproute2"} <= runtime_packages
    assert "COPY --from=build /opt/overlayd /opt/overlayd" in runtime


def _plugin(path, content: bytes) -> None:
    path.write_bytes(content)
    path.chmod(0o755)


def test_reference_plugins_fill_in_only_what_the_node_lacks(tmp_path):
    src, node_bin = tmp_path / "image-plugins", tmp_path / "opt-cni-bin"
    src.mkdir()
    node_bin.mkdir()
    for name in ("bridge", "host-local", "portmap", "loopback"):
        _plugin(src / name, b"#!/bin/sh\necho image " + name.encode() + b"\n")
    _plugin(node_bin / "portmap", b"#!/bin/sh\necho node's own portmap\n")

    run = subprocess.run([INSTALL_REFERENCE, str(src), str(node_bin)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert sorted(os.listdir(node_bin)) == ["bridge", "host-local", "loopback", "portmap"]   # no temp files
    assert (node_bin / "portmap").read_bytes() == b"#!/bin/sh\necho node's own portmap\n"
    assert (node_bin / "bridge").read_bytes() == (src / "bridge").read_bytes()
    assert os.stat(node_bin / "bridge").st_mode & 0o777 == 0o755
    assert "kept the node's own" in run.stdout and "installed" in run.stdout

    again = subprocess.run([INSTALL_REFERENCE, str(src), str(node_bin)], capture_output=True, text=True)
    assert again.returncode == 0 and "installed" not in again.stdout   # idempotent on restart


@pytest.mark.parametrize("case", ["no-src", "no-bin-dir", "usage"])
def test_reference_plugin_install_refuses_bad_arguments_clearly(tmp_path, case):
    src, node_bin = tmp_path / "src", tmp_path / "bin"
    src.mkdir()
    args = {"no-src": [str(tmp_path / "missing"), str(tmp_path)],
            "no-bin-dir": [str(src), str(node_bin)],
            "usage": [str(src)]}[case]
    run = subprocess.run([INSTALL_REFERENCE, *args], capture_output=True, text=True)
    assert run.returncode != 0
    expected = {"no-src": "SRC_DIR", "no-bin-dir": "mount the node's /opt/cni/bin", "usage": "usage:"}[case]
    assert expected in run.stderr
    assert not node_bin.exists()
