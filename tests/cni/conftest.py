"""Fixtures for the CNI plugin: a node namespace with overlayd's subnet file, pods, a runtime."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from cni_plugin import launcher
from overlayd.lab.netns import NETNS_DIR, unique_token

from cni_chain import Runtime

SUBNET_ENV = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET={subnet}\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"


@pytest.fixture(scope="session")
def overlay_exe(tmp_path_factory):
    """The plugin as kubelet finds it in its CNI bin dir (the fast source-tree launcher).

    OVERLAYD_TEST_FRONTEND=PATH puts that build of the native front end in its place (fuzz/check.sh
    runs these tests against one built with ASan and UBSan)."""
    exe = launcher.write(str(tmp_path_factory.mktemp("cnibin")))
    other = os.environ.get("OVERLAYD_TEST_FRONTEND")
    if other:
        shutil.copyfile(other, exe)
    return exe


class Node:
    """One Kubernetes node: its namespace (kubelet's view), files, and a runtime driving the conflist."""

    def __init__(self, netns: str, root, overlay: str, make_netns, version: str, subnet: str,
                 cni_socket: str = ""):
        self.netns, self.root, self.make_netns = netns, root, make_netns
        self.cni_socket = cni_socket      # "": no overlayd CNI service, the Python plugin runs
        self.subnet_file = str(root / "subnet.env")
        self.data_dir = str(root / "cni-cache")
        self.ipam_dir = str(root / "ipam")
        self.name = f"ovt-{unique_token()}"
        self.write_subnet(subnet)
        self.runtime = Runtime(self.conflist(version), overlay, netns)

    def write_subnet(self, subnet: str = "10.244.7.1/24") -> None:
        with open(self.subnet_file, "w") as f:
            f.write(SUBNET_ENV.format(subnet=subnet))

    def conflist(self, version: str) -> dict:
        # Debian's portmap (plugins 1.1.1) stops at 1.0.0: a 1.1.0 conflist carries only our plugin.
        plugins = self.plugins() if version == "1.1.0" else self.plugins() + [
            {"type": "portmap", "capabilities": {"portMappings": True}}]
        return {"cniVersion": version, "name": self.name, "plugins": plugins}

    def plugins(self) -> list:
        return [
                {"type": "overlay", "subnetFile": self.subnet_file, "dataDir": self.data_dir,
                 "cniSocket": self.cni_socket,
                 "ipam": {"dataDir": self.ipam_dir},
                 "delegate": {"hairpinMode": True, "isDefaultGateway": True}}]

    def leftovers(self) -> dict:
        """Everything an attachment leaves on the node; all empty means nothing leaked."""
        return {"veths": self.veths(), "ips": self.reserved_ips(), "cache": self.cache_entries()}

    def pod(self, role: str = "pod") -> str:
        return self.make_netns(role)

    @staticmethod
    def netns_path(name: str) -> str:
        return os.path.join(NETNS_DIR, name)

    # What a user looks at afterwards -------------------------------------------------------
    def ip_json(self, *args: str, netns: str) -> list:
        out = subprocess.run(["ip", "-n", netns, "-j", *args], capture_output=True, text=True)
        return json.loads(out.stdout or "[]")

    def veths(self) -> list[str]:
        links = self.ip_json("link", "show", "type", "veth", netns=self.netns)
        return [link["ifname"] for link in links]

    def reserved_ips(self) -> list[str]:
        d = os.path.join(self.ipam_dir, self.name)
        if not os.path.isdir(d):
            return []
        return sorted(n for n in os.listdir(d) if n[0].isdigit() or ":" in n)

    def cache_entries(self) -> list[str]:
        if not os.path.isdir(self.data_dir):
            return []
        return sorted(n for n in os.listdir(self.data_dir) if n.endswith(".json"))

    def pod_addrs(self, pod: str, ifname: str = "eth0") -> list[str]:
        links = self.ip_json("addr", "show", "dev", ifname, netns=pod)
        return [f"{a['local']}/{a['prefixlen']}" for link in links for a in link.get("addr_info", [])
                if a.get("scope") == "global"]

    def ping(self, pod: str, dst: str) -> bool:
        return subprocess.run(["ip", "netns", "exec", pod, "ping", "-c1", "-W2", dst],
                              capture_output=True).returncode == 0


@pytest.fixture
def make_node(make_netns, tmp_path, overlay_exe):
    count = [0]

    def make(version: str = "1.0.0", subnet: str = "10.244.7.1/24", cni_socket: str = "") -> Node:
        count[0] += 1
        root = tmp_path / f"node{count[0]}"
        root.mkdir()
        return Node(make_netns(f"node{count[0]}"), root, overlay_exe, make_netns, version, subnet, cni_socket)

    return make


@pytest.fixture
def node(make_node):
    return make_node()
