"""What `kubectl apply -f manifests/...` would get: schema-valid objects that do what issue 6 asks.

Schemas come from kubernetes-validate (shipped with the package, no network), in strict mode so
a misspelt field is an error, for the oldest Kubernetes we support and the newest it knows.
"""
from __future__ import annotations

import copy
import ipaddress
import json
import os
import re

import kubernetes_validate
import pytest

from cni_plugin import cache, delegate_conf, frontend, request, subnet_env
from subnet_lease.config import parse_net_config

from .manifest_docs import (DEPLOY_MANIFESTS, ETCD_MANIFEST, KIND_CONFIG, KUBE_MANIFEST, all_containers,
                            container, daemon_argv, find, flag_value, host_path_for, load, pod_spec, version)

OLDEST_KUBERNETES = "1.28"
KUBERNETES_VERSIONS = (OLDEST_KUBERNETES, kubernetes_validate.latest_version())
HEALTH_PORT = 8471


def _validate(doc: dict, version_: str) -> None:
    try:
        kubernetes_validate.validate(doc, version_, strict=True)
    except kubernetes_validate.ValidationError as err:
        path = ".".join(str(p) for p in err.path)
        raise AssertionError(f"{doc['kind']}/{doc['metadata']['name']} against Kubernetes {version_}: "
                             f"{path}: {err.message}") from None


@pytest.mark.parametrize("path", DEPLOY_MANIFESTS, ids=lambda p: p.rsplit("/", 1)[-1])
@pytest.mark.parametrize("kube_version", KUBERNETES_VERSIONS)
def test_every_object_is_valid_against_the_kubernetes_schema(path, kube_version):
    docs = load(path)
    assert docs, f"{path} is empty"
    for doc in docs:
        _validate(doc, kube_version)


def test_the_validator_rejects_a_misspelt_field():
    """Guards the test above: strict mode must catch what kubectl's server-side validation would."""
    ds = copy.deepcopy(find(load(KUBE_MANIFEST), "DaemonSet"))
    ds["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(AssertionError, match="livenesProbe"):
        _validate(ds, OLDEST_KUBERNETES)


def test_net_conf_is_accepted_by_the_config_parser_and_matches_kubeadm_and_kind():
    cm = find(load(KUBE_MANIFEST), "ConfigMap", "overlayd-cfg")
    config = parse_net_config(cm["data"]["net-conf.json"])
    assert config.network == ipaddress.ip_network("10.244.0.0/16")   # kubeadm --pod-network-cidr
    assert config.backend.type == "vxlan"
    kind = load(KIND_CONFIG)[0]
    assert ipaddress.ip_network(kind["networking"]["podSubnet"]) == config.network


@pytest.mark.parametrize("path", DEPLOY_MANIFESTS, ids=lambda p: p.rsplit("/", 1)[-1])
def test_cni_conf_is_accepted_by_the_plugin_config_loader(path, tmp_path):
    """The conflist as libcni hands its first plugin to us (name + cniVersion injected), through
    the plugin's own request parser and delegate builder: bridge with hairpin and default gateway."""
    cm = find(load(path), "ConfigMap", "overlayd-cfg")
    conflist = json.loads(cm["data"]["cni-conf.json"])
    assert [p["type"] for p in conflist["plugins"]] == ["overlay", "portmap"]
    assert conflist["plugins"][1]["capabilities"] == {"portMappings": True}
    netconf = dict(conflist["plugins"][0], name=conflist["name"], cniVersion=conflist["cniVersion"])
    environ = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "deploytest", "CNI_NETNS": "/proc/self/ns/net",
               "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}
    req = request.parse(environ, json.dumps(netconf).encode())
    assert req.cni_version == "1.0.0" and req.subnet_file == subnet_env.DEFAULT_PATH
    subnet = subnet_env.parse("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\n"
                              "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n")
    delegate = delegate_conf.build(req.netconf, subnet)
    assert delegate["type"] == "bridge"
    assert delegate["hairpinMode"] is True and delegate["isDefaultGateway"] is True
    assert delegate["ipam"]["ranges"] == [[{"subnet": "10.244.3.0/24"}]]


def test_daemonset_runs_kube_subnet_mgr_with_least_privilege():
    docs = load(KUBE_MANIFEST)
    spec = pod_spec(docs)
    assert spec["hostNetwork"] is True
    assert spec["priorityClassName"] == "system-node-critical"
    assert {"operator": "Exists"} in spec["tolerations"], "must tolerate every taint"
    assert spec["serviceAccountName"] == find(docs, "ServiceAccount")["metadata"]["name"]

    daemon = container(docs, "overlayd")
    sc = daemon["securityContext"]
    assert sc.get("privileged") is False
    assert sorted(sc["capabilities"]["add"]) == ["NET_ADMIN", "NET_RAW"]
    for c in all_containers(docs):
        assert not (c.get("securityContext") or {}).get("privileged"), f"{c['name']} is privileged"
        res = c.get("resources") or {}
        assert {"cpu", "memory"} <= set(res.get("requests", {})), f"{c['name']} has no cpu/memory requests"
        assert "memory" in res.get("limits", {}), f"{c['name']} has no memory limit"

    argv = daemon_argv(docs)
    assert "--kube-subnet-mgr" in argv
    env = {e["name"]: e for e in daemon["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"

    ns = find(docs, "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    for kind in ("ServiceAccount", "ConfigMap", "DaemonSet"):
        assert find(docs, kind)["metadata"]["namespace"] == ns["metadata"]["name"]
    binding = find(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == find(docs, "ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": spec["serviceAccountName"],
                                    "namespace": ns["metadata"]["name"]}]


@pytest.mark.parametrize("path", DEPLOY_MANIFESTS, ids=lambda p: p.rsplit("/", 1)[-1])
def test_probes_hit_the_port_the_daemon_serves(path):
    docs = load(path)
    daemon = container(docs, "overlayd")
    argv = daemon_argv(docs)
    port = int(flag_value(argv, "--healthz-port"))
    assert port == HEALTH_PORT
    # hostNetwork: kubelet probes the node's address, so the daemon must listen beyond loopback.
    assert flag_value(argv, "--healthz-ip") == "0.0.0.0"
    assert daemon["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    assert daemon["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    assert daemon["ports"][0]["containerPort"] == daemon["ports"][0]["hostPort"] == port


@pytest.mark.parametrize("path", DEPLOY_MANIFESTS, ids=lambda p: p.rsplit("/", 1)[-1])
def test_every_path_the_containers_use_comes_from_the_node_or_the_config_map(path):
    """subnet.env, the CNI dirs and the xtables lock are the node's; the configs are the ConfigMap's."""
    docs = load(path)
    argv = daemon_argv(docs)
    daemon = container(docs, "overlayd")
    assert host_path_for(docs, daemon, flag_value(argv, "--subnet-file")) == ("hostPath", "/run/flannel/subnet.env")
    assert host_path_for(docs, daemon, "/run/xtables.lock") == ("hostPath", "/run/xtables.lock")
    if "--kube-subnet-mgr" in argv:
        assert host_path_for(docs, daemon, flag_value(argv, "--net-config-path")) == \
            ("configMap", "overlayd-cfg:net-conf.json")

    install = container(docs, "install-cni")
    install_argv = install["command"] + install.get("args", [])
    assert host_path_for(docs, install, flag_value(install_argv, "--bin-dir")) == ("hostPath", "/opt/cni/bin")
    assert host_path_for(docs, install, flag_value(install_argv, "--conf-dir")) == ("hostPath", "/etc/cni/net.d")
    assert host_path_for(docs, install, flag_value(install_argv, "--cni-conf")) == \
        ("configMap", "overlayd-cfg:cni-conf.json")
    assert flag_value(install_argv, "--conf-name") == "10-overlay.conflist"
    reference = container(docs, "install-reference-plugins")
    assert host_path_for(docs, reference, reference["command"][2]) == ("hostPath", "/opt/cni/bin")
    # The daemon starts only after both installs: init containers run before it, in order.
    assert [c["name"] for c in pod_spec(docs)["initContainers"]] == ["install-reference-plugins", "install-cni"]


@pytest.mark.parametrize("path", DEPLOY_MANIFESTS, ids=lambda p: p.rsplit("/", 1)[-1])
def test_rolling_update_replaces_one_node_at_a_time(path):
    ds = find(load(path), "DaemonSet")
    strategy = ds["spec"]["updateStrategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}
    assert ds["spec"]["minReadySeconds"] > 0


@pytest.mark.parametrize("path", DEPLOY_MANIFESTS, ids=lambda p: p.rsplit("/", 1)[-1])
def test_every_container_runs_this_release_of_the_image(path):
    images = {c["image"] for c in all_containers(load(path))}
    assert images == {f"overlayd:{version()}"}


def test_etcd_mode_takes_client_certificates_from_a_secret_and_no_api_access():
    docs = load(ETCD_MANIFEST)
    argv = daemon_argv(docs)
    daemon = container(docs, "overlayd")
    assert "--kube-subnet-mgr" not in argv
    assert flag_value(argv, "--etcd-endpoints").startswith("$(")     # from the ConfigMap, via env
    env = {e["name"]: e["valueFrom"]["configMapKeyRef"] for e in daemon["env"]}
    cm = find(docs, "ConfigMap", "overlayd-cfg")
    for var in ("ETCD_ENDPOINTS", "ETCD_PREFIX"):
        assert f"$({var})" in " ".join(argv)
        assert env[var]["name"] == "overlayd-cfg" and env[var]["key"] in cm["data"]
    assert cm["data"]["etcd-prefix"] == "/coreos.com/network"      # flannel's key layout
    for endpoint in cm["data"]["etcd-endpoints"].split(","):
        assert endpoint.startswith("https://"), "client certificates need TLS endpoints"
    for flag, key in (("--etcd-cafile", "ca.crt"), ("--etcd-certfile", "tls.crt"), ("--etcd-keyfile", "tls.key")):
        assert host_path_for(docs, daemon, flag_value(argv, flag)) == ("secret", f"overlayd-etcd-tls:{key}")
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")]
    assert find(docs, "ServiceAccount")["automountServiceAccountToken"] is False
    assert pod_spec(docs)["automountServiceAccountToken"] is False


def _front_end_default_socket() -> str:
    """The socket path compiled into the native front end (cni_plugin/native/overlay.c)."""
    with open(frontend.SOURCE) as f:
        match = re.search(r'^#define DEFAULT_SOCKET "([^"]+)"', f.read(), re.M)
    assert match, f"{frontend.SOURCE} no longer defines DEFAULT_SOCKET"
    return match.group(1)


def _overlay_netconf(docs: list[dict]) -> dict:
    conflist = json.loads(find(docs, "ConfigMap", "overlayd-cfg")["data"]["cni-conf.json"])
    return dict(conflist["plugins"][0], name=conflist["name"], cniVersion=conflist["cniVersion"])


@pytest.mark.parametrize("path", DEPLOY_MANIFESTS, ids=lambda p: p.rsplit("/", 1)[-1])
def test_the_daemon_serves_the_cni_socket_the_installed_front_end_dials(path):
    """kubelet's `overlay` (on the host) connects to the conflist's cniSocket, default compiled in;
    the daemon must listen on that host path, through a hostPath mount."""
    docs = load(path)
    argv = daemon_argv(docs)
    sock = flag_value(argv, "--cni-socket")
    assert sock, "pass --cni-socket explicitly so operators see the CNI service is on"
    dialled = _overlay_netconf(docs).get("cniSocket", _front_end_default_socket())
    assert dialled == _front_end_default_socket() == request.SOCKET_DEFAULT
    assert host_path_for(docs, container(docs, "overlayd"), sock) == ("hostPath", dialled)
    # The same directory as subnet.env: the service refuses requests for another daemon's subnet file.
    assert os.path.dirname(sock) == os.path.dirname(flag_value(argv, "--subnet-file"))


@pytest.mark.parametrize("path", DEPLOY_MANIFESTS, ids=lambda p: p.rsplit("/", 1)[-1])
def test_every_host_path_the_daemon_mounts_is_one_it_needs(path):
    """Each hostPath of the daemon container, with why it is there; nothing else, nothing writable that need not be."""
    docs = load(path)
    daemon = container(docs, "overlayd")
    argv = daemon_argv(docs)
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    mounted = {}
    for m in daemon["volumeMounts"]:
        host = volumes[m["name"]].get("hostPath")
        if host:
            mounted[m["mountPath"].rstrip("/")] = (host["path"].rstrip("/"), bool(m.get("readOnly")))
    req = request.parse({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "deploytest", "CNI_NETNS": "/proc/self/ns/net",
                         "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"},
                        json.dumps(_overlay_netconf(docs)).encode())
    install = container(docs, "install-cni")
    bin_dir_on_host = host_path_for(docs, install, flag_value(install["command"], "--bin-dir"))[1]
    needed = {
        # subnet.env (written) and the CNI service's socket (served): same directory
        os.path.dirname(flag_value(argv, "--subnet-file")): ("/run/flannel", False),
        # iptables' lock, shared with kube-proxy and every other iptables user on the node
        "/run/xtables.lock": ("/run/xtables.lock", False),
        # the plugin's per-pod cache: the service writes it where the plugin on the host reads it
        req.data_dir: (cache.DEFAULT_DATA_DIR, False),
        # the delegates on CNI_PATH, at the node's own path; looked up, never written
        bin_dir_on_host: ("/opt/cni/bin", True),
        # the runtime's CNI conf dir (install-cni writes it): read by `overlayd doctor --daemon-pid 1`
        host_path_for(docs, install, flag_value(install["command"], "--conf-dir"))[1]: ("/etc/cni/net.d", True),
    }
    assert mounted == needed
    assert all(inside == host for inside, (host, _) in mounted.items()), "hostPaths keep the node's paths"
    for name, vol in volumes.items():   # every volume is used by some container
        assert any(m["name"] == name for c in all_containers(docs) for m in c.get("volumeMounts", [])), name
