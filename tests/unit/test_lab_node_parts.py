"""The real-node lab's pure parts: OCI archives, containerd's and kubelet's configuration."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tomllib

from overlayd.lab import containerd, kubelet, kube_proxy
from overlayd.lab.node_host import NodeHost
from overlayd.lab.oci_archive import Entry, ImageConfig, layer_tar, write_archive


def _members(path):
    with tarfile.open(path) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()}


def test_archive_is_an_oci_layout_whose_digests_match_their_blobs(tmp_path):
    out = tmp_path / "img.tar"
    digest = write_archive(str(out), ImageConfig("localhost/x/y:1", entrypoint=("/pause",)),
                           [Entry("/pause", data=b"\x7fELF", mode=0o755), Entry("/bin/sh", link="busybox")])
    files = _members(out)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    [desc] = index["manifests"]
    assert desc["digest"] == digest
    assert desc["annotations"]["io.containerd.image.name"] == "localhost/x/y:1"
    for name, data in files.items():
        if name.startswith("blobs/sha256/") and data is not None:
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    manifest = json.loads(files["blobs/sha256/" + digest.split(":")[1]])
    config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"].split(":")[1]])
    assert config["config"]["Entrypoint"] == ["/pause"]
    assert config["rootfs"]["diff_ids"] == [manifest["layers"][0]["digest"]]   # uncompressed layer


def test_layer_has_parent_directories_links_and_modes_and_is_reproducible():
    entries = [Entry("/usr/bin/tool", data=b"x", mode=0o755), Entry("/bin", link="usr/bin"), Entry("/tmp", mode=0o1777)]
    first, second = layer_tar(entries), layer_tar(list(reversed(entries)))
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["usr"].isdir() and members["usr/bin"].isdir()
    assert members["usr/bin/tool"].mode == 0o755 and members["usr/bin/tool"].mtime == 0
    assert members["bin"].issym() and members["bin"].linkname == "usr/bin"
    assert members["tmp"].mode == 0o1777


def _host(tmp_path):
    return NodeHost("n1", "lab-n1", str(tmp_path), "/overlayd-lab/lab/n1", holder_pid=4242)


def test_containerd_config_is_per_node_and_uses_the_lab_sandbox_image(tmp_path):
    s = containerd.settings_for(_host(tmp_path), "localhost/overlayd-lab/pause:1")
    conf = tomllib.loads(containerd.config_toml(s))
    assert conf["grpc"]["address"] == str(tmp_path / "containerd.sock")
    cri = conf["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "localhost/overlayd-lab/pause:1"
    assert cri["cni"] == {"bin_dir": "/opt/cni/bin", "conf_dir": "/etc/cni/net.d"}   # per node: its mount ns
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert conf["plugins"]["io.containerd.internal.v1.opt"]["path"].startswith(str(tmp_path))


def test_kubelet_runs_on_cgroup_v1_under_its_own_root_and_leaves_kernel_defaults_alone(tmp_path):
    host = _host(tmp_path)
    s = kubelet.KubeletSettings(node_name="n1", node_ip="192.0.2.1", kubeconfig="/k", ca_cert="/ca",
                                runtime_socket="/c.sock", cgroup_root=host.cgroup_root, binary="/kubelet")
    conf = kubelet.config(s, host)
    assert conf["failCgroupV1"] is False and conf["cgroupDriver"] == "cgroupfs"
    assert conf["cgroupRoot"] == "/overlayd-lab/lab/n1" and conf["cgroupsPerQOS"] is True
    assert conf["containerRuntimeEndpoint"] == "unix:///c.sock"
    assert conf["authentication"]["anonymous"]["enabled"] is False
    assert conf["authorization"]["mode"] == "Webhook"
    assert conf["address"] == "192.0.2.1"
    assert host.enter() == ["nsenter", "--target=4242", "--mount", "--net", "--"]


def test_kube_proxy_leaves_the_machine_wide_conntrack_sysctls_alone():
    conf = kube_proxy.proxy_config(kube_proxy.KubeProxySettings("n1", "/k", ("10.244.0.0/16",), "/kp"))
    assert conf["mode"] == "iptables" and conf["clusterCIDR"] == "10.244.0.0/16"
    assert conf["conntrack"]["maxPerCore"] == 0 and conf["conntrack"]["min"] == 0
