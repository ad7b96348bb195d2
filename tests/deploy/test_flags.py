"""Every flag the DaemonSets pass is one the real `overlayd` knows, with a value it accepts."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from overlayd import daemon_main
from overlayd.backend_flags import etcd_settings, kube_settings

from .manifest_docs import (DEPLOY_MANIFESTS, KUBE_MANIFEST, container, daemon_argv, find, flag_names,
                            load, pod_spec)

OVERLAYD = os.path.join(os.path.dirname(sys.executable), "overlayd")   # the installed entry point
_FLAG = re.compile(r"(?<![\w-])--[a-z0-9][a-z0-9-]*")


def _help_flags(*subcommand: str) -> set[str]:
    proc = subprocess.run([OVERLAYD, *subcommand, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"overlayd {' '.join(subcommand)} --help failed:\n{proc.stderr}"
    return set(_FLAG.findall(proc.stdout))


def _expanded(docs: list[dict], argv: list[str]) -> list[str]:
    """Kubernetes' $(VAR) expansion, with the values the ConfigMap would give the env vars."""
    cm = find(docs, "ConfigMap", "overlayd-cfg")["data"]
    env = {}
    for e in container(docs, "overlayd").get("env", []):
        ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
        if ref:
            env[e["name"]] = cm[ref["key"]]
        elif "value" in e:
            env[e["name"]] = e["value"]
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in argv]


@pytest.mark.parametrize("path", DEPLOY_MANIFESTS, ids=lambda p: p.rsplit("/", 1)[-1])
def test_every_daemon_flag_exists_in_overlayd_help(path):
    argv = daemon_argv(load(path))
    assert argv[0].endswith("/overlayd")
    known = _help_flags()
    unknown = [f for f in flag_names(argv[1:]) if f not in known]
    assert not unknown, f"{os.path.basename(path)} passes flags `overlayd --help` does not list: {unknown}"


@pytest.mark.parametrize("path", DEPLOY_MANIFESTS, ids=lambda p: p.rsplit("/", 1)[-1])
def test_every_install_cni_flag_exists_in_its_help(path):
    c = container(load(path), "install-cni")
    argv = c["command"] + c.get("args", [])
    assert argv[0].endswith("/overlayd") and argv[1] == "install-cni"
    known = _help_flags("install-cni")
    unknown = [f for f in flag_names(argv[2:]) if f not in known]
    assert not unknown, f"install-cni does not know {unknown}"


def test_kube_mode_flags_parse_into_the_settings_the_daemon_runs_with():
    docs = load(KUBE_MANIFEST)
    args = daemon_main.build_parser().parse_args(_expanded(docs, daemon_argv(docs)[1:]))
    settings = daemon_main.settings_from_args(args)
    assert settings.healthz_port == 8471 and settings.ip_masq
    assert settings.subnet_file == "/run/flannel/subnet.env"
    assert settings.cni_socket == "/run/flannel/cni.sock"
    # the plugin's default dataDir, which the DaemonSet mounts at the node's own path
    assert settings.cni_data_dir == "/var/lib/cni/overlay"
    assert any(m["mountPath"] == settings.cni_data_dir and not m.get("readOnly")
               for c in pod_spec(docs)["containers"] for m in c.get("volumeMounts", []))
    kube = kube_settings(args, environ={"NODE_NAME": "node-a"})
    assert kube.node_name == "node-a"
    assert kube.annotation_prefix == "flannel.alpha.coreos.com"
    assert kube.net_config_path == "/etc/kube-flannel/net-conf.json"
    env_names = {e["name"] for c in pod_spec(docs)["containers"] for e in c.get("env", [])}
    assert "NODE_NAME" in env_names


def test_etcd_mode_flags_parse_into_tls_etcd_settings():
    path = [p for p in DEPLOY_MANIFESTS if p.endswith("overlayd-etcd.yaml")][0]
    docs = load(path)
    args = daemon_main.build_parser().parse_args(_expanded(docs, daemon_argv(docs)[1:]))
    assert not args.kube_subnet_mgr
    assert daemon_main.settings_from_args(args).cni_socket == "/run/flannel/cni.sock"
    etcd = etcd_settings(args)
    assert len(etcd.endpoints) == 3 and all(e.startswith("https://") for e in etcd.endpoints)
    assert etcd.prefix == "/coreos.com/network"
    assert (etcd.cafile, etcd.certfile, etcd.keyfile) == (
        "/etc/overlayd/etcd/ca.crt", "/etc/overlayd/etcd/tls.crt", "/etc/overlayd/etcd/tls.key")
