"""The image's contents, assembled without Docker by the Dockerfile's own script (image/assemble.sh).

The tree is assembled once into a temporary ROOT (real pip installs, a real PyInstaller build),
then driven the way the DaemonSet drives it: the init containers' commands, read from the
manifest, install onto a temporary node root; the installed plugin runs with every Python on
this machine hidden; the daemon's entry point runs from the assembled venv.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from .manifest_docs import KUBE_MANIFEST, REPO, container, daemon_argv, find, load

ASSEMBLE = os.path.join(REPO, "image", "assemble.sh")
PREFIX = "/opt/overlayd"
REFERENCE_PLUGINS = ["bridge", "host-local", "loopback", "portmap"]
MINIMAL_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}

# Every place this machine keeps a Python; the no-Python check mounts empty things over them.
HIDE_DIRS = ["/usr/lib/python3", "/usr/lib/python3.11", "/usr/local/lib/python3.11", os.path.expanduser("~/.pyenv"),
             os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix) + "/lib/python3.11"]
HIDE_FILES_GLOB = "/usr/bin/python3* /usr/local/bin/python3* /usr/lib/x86_64-linux-gnu/libpython3*"


def _assemble(root: str, **env) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, **env)
    full_env.pop("PYTHONPATH", None)
    full_env.pop("VIRTUAL_ENV", None)
    return subprocess.run(["bash", ASSEMBLE, root], capture_output=True, text=True, env=full_env,
                          cwd="/", timeout=900)   # a hang guard: pip under a loaded machine takes minutes


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("image-root")
    # No .pyc compilation here (the Docker build does it): it only costs time in a test.
    proc = _assemble(str(root), PIP_NO_COMPILE="1")
    assert proc.returncode == 0, f"image/assemble.sh failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    yield str(root)
    shutil.rmtree(root, ignore_errors=True)


def in_image(root: str, path: str) -> str:
    """Where an absolute path of the image lives in the assembled ROOT."""
    assert path.startswith(PREFIX + "/"), path
    return root + path


def test_layout_has_the_daemon_the_bundle_and_the_reference_plugins(image_root):
    dest = image_root + PREFIX
    assert sorted(os.listdir(dest)) == ["bin", "cni", "cni-plugins", "venv"]
    assert os.readlink(os.path.join(dest, "bin", "overlayd")) == "../venv/bin/overlayd"  # relative: survives COPY
    for exe in ("bin/overlayd", "bin/install-reference-plugins", "cni/overlay", "cni/overlay.d/overlay"):
        assert os.access(os.path.join(dest, exe), os.X_OK), exe
    entries = sorted(os.listdir(os.path.join(dest, "cni")))
    assert entries == ["overlay", "overlay.d"], f"the bundle is `overlay` plus overlay.d/, got {entries}"
    assert sorted(os.listdir(os.path.join(dest, "cni-plugins"))) == REFERENCE_PLUGINS
    # PyInstaller was a build tool in a throwaway venv; it is not in the image.
    site = subprocess.run([os.path.join(dest, "venv/bin/python"), "-c", "import importlib.util as u;"
                           "print(u.find_spec('PyInstaller') is None)"], capture_output=True, text=True,
                          env=MINIMAL_ENV, cwd="/")
    assert site.stdout.strip() == "True", site.stderr


def test_the_front_end_is_a_static_executable_and_the_python_plugin_is_beside_it(image_root):
    """kubelet runs cni/overlay on the host, whatever C library the node has (or none): it needs no
    shared library. It falls back to overlay.d/overlay, the PyInstaller build of the Python plugin."""
    cni = image_root + PREFIX + "/cni"
    with open(os.path.join(cni, "overlay"), "rb") as f:
        header = f.read(20)
    assert header[:4] == b"\x7fELF" and header[4] == 2, "cni/overlay is not a 64-bit ELF executable"
    dynamic = subprocess.run(["readelf", "-d", os.path.join(cni, "overlay")], capture_output=True, text=True)
    assert dynamic.returncode == 0, dynamic.stderr
    assert "(NEEDED)" not in dynamic.stdout, f"cni/overlay links shared libraries:\n{dynamic.stdout}"
    assert "(INTERP)" not in subprocess.run(["readelf", "-l", os.path.join(cni, "overlay")],
                                            capture_output=True, text=True).stdout, "cni/overlay needs a loader"
    plugin = os.path.join(cni, "overlay.d", "overlay")
    assert os.path.isfile(plugin) and os.access(plugin, os.X_OK)
    with open(plugin, "rb") as f:
        assert f.read(4) == b"\x7fELF"
    assert any(n.startswith("libpython3") for n in os.listdir(os.path.join(cni, "overlay.d")))


def test_bundle_symlinks_stay_inside_the_bundle(image_root):
    cni = os.path.realpath(image_root + PREFIX + "/cni")
    for base, dirs, files in os.walk(cni):
        for name in dirs + files:
            path = os.path.join(base, name)
            if os.path.islink(path):
                target = os.path.realpath(path)
                assert target.startswith(cni + os.sep), f"{path} points outside the bundle: {target}"


def test_the_daemon_runs_from_the_assembled_venv_not_the_source_tree(image_root):
    argv = daemon_argv(load(KUBE_MANIFEST))
    exe = in_image(image_root, argv[0])
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, env=MINIMAL_ENV, cwd="/", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--kube-subnet-mgr" in proc.stdout and "--healthz-port" in proc.stdout
    where = subprocess.run(
        [image_root + PREFIX + "/venv/bin/python", "-c",
         # The modules that pull in every runtime dependency (kubernetes, pyroute2,
         # prometheus_client): the image must be complete without the source tree or the dev venv.
         # The etcd backend speaks etcd's JSON gateway: grpc and pyetcd are not in the image.
         "import importlib.util, overlayd, overlayd.daemon, overlayd.metrics, subnet_lease.etcd_backend,"
         " subnet_lease.kube_backend, cni_plugin.install; import kubernetes, pyroute2;"
         "assert not [m for m in ('grpc', 'pyetcd') if importlib.util.find_spec(m)], 'grpc/pyetcd in the image';"
         "print(overlayd.__file__)"],
        capture_output=True, text=True, env=MINIMAL_ENV, cwd="/", timeout=60)
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(image_root + PREFIX + "/venv/"), where.stdout


@pytest.fixture
def node_root(tmp_path):
    """A node's filesystem as the DaemonSet's hostPath volumes see it (empty /opt/cni/bin etc.)."""
    node = tmp_path / "node"
    for d in ("opt/cni/bin", "etc/cni/net.d", "run/flannel"):
        (node / d).mkdir(parents=True)
    return node


def _run_init_containers(image_root: str, node, tmp_path) -> None:
    """Each init container's command from the manifest, its volumes mapped onto node_root."""
    docs = load(KUBE_MANIFEST)
    cfg = tmp_path / "kube-flannel"
    cfg.mkdir(exist_ok=True)
    for key, value in find(docs, "ConfigMap", "overlayd-cfg")["data"].items():
        (cfg / key).write_text(value)
    mounts = {"/host/opt/cni/bin": str(node / "opt/cni/bin"), "/host/etc/cni/net.d": str(node / "etc/cni/net.d"),
              "/etc/kube-flannel/": str(cfg) + "/", PREFIX + "/": image_root + PREFIX + "/"}

    def mapped(arg: str) -> str:
        for inside, outside in mounts.items():
            if inside.rstrip("/") in arg:
                return arg.replace(inside.rstrip("/"), outside.rstrip("/"))
        return arg

    for name in ("install-reference-plugins", "install-cni"):
        c = container(docs, name)
        argv = [mapped(a) for a in c["command"] + c.get("args", [])]
        proc = subprocess.run(argv, capture_output=True, text=True, env=MINIMAL_ENV, cwd="/", timeout=120)
        assert proc.returncode == 0, f"init container {name}: {argv}\n{proc.stdout}\n{proc.stderr}"


def test_init_containers_install_plugins_and_conflist_onto_an_empty_node(image_root, node_root, tmp_path):
    _run_init_containers(image_root, node_root, tmp_path)
    bin_dir = node_root / "opt/cni/bin"
    names = sorted(os.listdir(bin_dir))
    assert [n for n in names if not n.startswith("overlay")] == REFERENCE_PLUGINS
    assert [n for n in names if n.startswith("overlay")] == ["overlay", "overlay.d"]
    assert os.access(bin_dir / "overlay.d" / "overlay", os.X_OK)
    assert [n for n in names if n.startswith(".")] == [], "temporary files left behind"
    conflist = node_root / "etc/cni/net.d/10-overlay.conflist"
    configmap = find(load(KUBE_MANIFEST), "ConfigMap", "overlayd-cfg")["data"]["cni-conf.json"]
    assert json.loads(conflist.read_text()) == json.loads(configmap)
    # The reference plugins the image brought answer like the real thing.
    version = subprocess.run([str(bin_dir / "bridge")], input="{}", capture_output=True, text=True,
                             env={**MINIMAL_ENV, "CNI_COMMAND": "VERSION"})
    assert "1.0.0" in json.loads(version.stdout)["supportedVersions"]

    # A restarted pod (or a rollout) runs the same init containers again: nothing changes.
    before = {n: os.stat(bin_dir / n).st_ino for n in os.listdir(bin_dir)}
    _run_init_containers(image_root, node_root, tmp_path)
    assert {n: os.stat(bin_dir / n).st_ino for n in os.listdir(bin_dir)} == before


@pytest.mark.kernel
def test_installed_plugin_runs_on_a_node_without_python(image_root, node_root, tmp_path):
    _run_init_containers(image_root, node_root, tmp_path)
    plugin = node_root / "opt/cni/bin/overlay"
    script = (
        "set -e\n"
        "mount --make-rprivate /\n"
        + "".join(f"if [ -d {d} ]; then mount -t tmpfs none {d}; fi\n" for d in HIDE_DIRS)
        + f"for f in {HIDE_FILES_GLOB}; do if [ -e \"$f\" ]; then mount --bind /dev/null \"$f\"; fi; done\n"
        "set +e\n"
        f"if env -i PATH={MINIMAL_ENV['PATH']} python3 -c pass 2>/dev/null"
        " || /usr/bin/python3.11 -c pass 2>/dev/null; then exit 97; fi\n"
        f"echo '{{\"cniVersion\": \"1.0.0\"}}' | env -i PATH={MINIMAL_ENV['PATH']} CNI_COMMAND=VERSION {plugin}\n"
    )
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 97, "the host's Python was still visible"
    assert proc.returncode == 0, proc.stdout + proc.stderr
    versions = json.loads(proc.stdout)["supportedVersions"]
    assert {"0.3.1", "0.4.0", "1.0.0", "1.1.0"} <= set(versions)


@pytest.mark.parametrize("case", ["not-a-source-tree", "no-reference-plugins", "no-compiler", "interpreter-fails"])
def test_assembly_refuses_clearly_and_leaves_nothing_behind(tmp_path, case):
    root = tmp_path / "root"
    root.mkdir()
    env, expected = {
        "not-a-source-tree": ({"OVERLAYD_SRC": str(tmp_path)}, "is not the overlayd source tree"),
        "no-reference-plugins": ({"CNI_PLUGIN_DIR": str(tmp_path)}, "has no bridge plugin"),
        "no-compiler": ({"CC": str(tmp_path / "no-such-cc")}, "no C compiler to build the CNI plugin's native front end"),
        # Fails after ROOT/opt/overlayd was created and the background build venv was started.
        "interpreter-fails": ({"PYTHON": shutil.which("false")}, ""),
    }[case]
    proc = _assemble(str(root), **env)
    assert proc.returncode != 0
    assert expected in proc.stderr
    assert os.listdir(root) in ([], ["opt"]) and not (root / "opt/overlayd").exists()


def test_assembly_will_not_overwrite_an_existing_tree(tmp_path):
    dest = tmp_path / "opt/overlayd"
    dest.mkdir(parents=True)
    (dest / "keep").write_text("x")
    proc = _assemble(str(tmp_path))
    assert proc.returncode != 0 and "already exists and is not empty" in proc.stderr
    assert (dest / "keep").read_text() == "x"
