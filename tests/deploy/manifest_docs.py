"""The deployment files as plain data: manifests parsed with PyYAML, looked up by kind and name."""
from __future__ import annotations

import configparser
import os

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MANIFESTS = os.path.join(REPO, "manifests")
KUBE_MANIFEST = os.path.join(MANIFESTS, "overlayd.yaml")
ETCD_MANIFEST = os.path.join(MANIFESTS, "overlayd-etcd.yaml")
KIND_CONFIG = os.path.join(MANIFESTS, "kind-config.yaml")
DEPLOY_MANIFESTS = (KUBE_MANIFEST, ETCD_MANIFEST)


def load(path: str) -> list[dict]:
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def find(docs: list[dict], kind: str, name: str | None = None) -> dict:
    hits = [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, found {len(hits)}"
    return hits[0]


def pod_spec(docs: list[dict]) -> dict:
    return find(docs, "DaemonSet")["spec"]["template"]["spec"]


def container(docs: list[dict], name: str) -> dict:
    spec = pod_spec(docs)
    hits = [c for c in spec.get("containers", []) + spec.get("initContainers", []) if c["name"] == name]
    assert len(hits) == 1, f"no container {name!r} in the DaemonSet"
    return hits[0]


def all_containers(docs: list[dict]) -> list[dict]:
    spec = pod_spec(docs)
    return spec.get("initContainers", []) + spec["containers"]


def daemon_argv(docs: list[dict]) -> list[str]:
    c = container(docs, "overlayd")
    return list(c.get("command", [])) + list(c.get("args", []))


def flag_names(argv: list[str]) -> list[str]:
    """--name from `--name`, `--name=value`; values in separate words are not flags."""
    return [a.split("=", 1)[0] for a in argv if a.startswith("--")]


def flag_value(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            return argv[i + 1]
    return None


def version() -> str:
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, "setup.cfg"))
    return cfg["metadata"]["version"]


def host_path_for(docs: list[dict], c: dict, path_in_container: str) -> tuple[str, str] | None:
    """(volume type, source) behind a path inside container `c`: the hostPath or ConfigMap name."""
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    best = None
    for m in c.get("volumeMounts", []):
        mount = m["mountPath"].rstrip("/")
        if path_in_container == mount or path_in_container.startswith(mount + "/"):
            if best is None or len(mount) > len(best[0]):
                best = (mount, volumes[m["name"]])
    if best is None:
        return None
    mount, vol = best
    rest = path_in_container[len(mount):]
    if "hostPath" in vol:
        return "hostPath", vol["hostPath"]["path"].rstrip("/") + rest
    if "configMap" in vol:
        return "configMap", vol["configMap"]["name"] + ":" + rest.lstrip("/")
    if "secret" in vol:
        return "secret", vol["secret"]["secretName"] + ":" + rest.lstrip("/")
    return None
