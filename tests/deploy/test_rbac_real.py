"""The ClusterRole against a real kube-apiserver (Node,RBAC): everything the code calls is allowed
to the overlayd ServiceAccount, and nothing else a node agent must never do is.

The manifest's own Namespace, ServiceAccount, ClusterRole and ClusterRoleBinding are applied (read
from the file); `kubectl auth can-i --as=system:serviceaccount:<ns>:<sa>` asks the server's
authorizer. What the code calls comes from the same source scan as test_rbac.py.
"""
from __future__ import annotations

import pytest

from overlayd.lab import control_plane as cplane

from .manifest_docs import KUBE_MANIFEST, load
from .test_rbac import UNREACHABLE_WITH_THIS_MANIFEST, _Recorder, _replay, api_calls_in_code

pytestmark = pytest.mark.e2e

# What a node agent must never be allowed (verb, resource[, subresource]).
DENIED = [("delete", "nodes"), ("get", "secrets"), ("list", "secrets"), ("patch", "pods"),
          ("update", "nodes"), ("patch", "nodes"), ("create", "pods"), ("create", "nodes"),
          ("create", "namespaces"), ("create", "configmaps"), ("create", "clusterrolebindings"),
          ("create", "serviceaccounts/token"), ("delete", "pods"), ("escalate", "clusterroles"),
          ("impersonate", "users"), ("create", "pods/exec")]


@pytest.fixture(scope="module")
def rbac(kube_control_plane):
    cp, _ = kube_control_plane
    cplane.apply_rbac(cp, KUBE_MANIFEST)
    ns, sa = cplane.service_account(KUBE_MANIFEST)
    return cp, f"system:serviceaccount:{ns}:{sa}"


def can_i(cp, who: str, verb: str, resource: str, group: str = "") -> bool:
    resource, _, sub = resource.partition("/")
    resource += f".{group}" if group else ""
    args = ["auth", "can-i", verb, resource, f"--as={who}"] + ([f"--subresource={sub}"] if sub else [])
    proc = cp.kubectl(*args, check=False)
    assert proc.stdout.strip() in ("yes", "no"), proc.stderr
    return proc.stdout.strip() == "yes"


def needed_permissions() -> dict[tuple[str, str, str], list[str]]:
    """(apiGroup, resource, verb) -> where in the code, replayed against a recording server."""
    import http.server
    import threading
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        needed: dict[tuple[str, str, str], list[str]] = {}
        for (name, watch), where in sorted(api_calls_in_code().items()):
            if name not in UNREACHABLE_WITH_THIS_MANIFEST:
                rule = _replay(f"http://127.0.0.1:{server.server_address[1]}", _Recorder.seen, name, watch)
                needed.setdefault(rule, []).extend(where)
        return needed
    finally:
        server.shutdown()
        server.server_close()


def test_every_call_the_code_makes_is_allowed_to_the_service_account(rbac):
    cp, who = rbac
    needed = needed_permissions()
    assert ("", "nodes", "list") in needed and ("", "nodes/status", "patch") in needed, needed
    refused = {rule: where for rule, where in needed.items()
               if not can_i(cp, who, rule[2], rule[1], rule[0])}
    assert not refused, f"the real API server refuses {who}: {refused}"


@pytest.mark.parametrize("verb,resource", DENIED, ids=[f"{v}-{r}" for v, r in DENIED])
def test_what_a_node_agent_must_not_do_is_denied(rbac, verb, resource):
    cp, who = rbac
    assert not can_i(cp, who, verb, resource), f"{who} may {verb} {resource}"


def test_the_service_account_token_really_lists_nodes_and_is_refused_secrets(rbac, tmp_path):
    """Not only the authorizer's answer: a TokenRequest token of the ServiceAccount, used."""
    cp, who = rbac
    ns, sa = who.split(":")[2:]
    kc = cplane.write_kubeconfig(str(tmp_path / "sa.kubeconfig"), cp.local_url, cp.pki.ca_cert,
                                 token=cplane.token(cp, ns, sa))
    ok = cp.kubectl(f"--kubeconfig={kc}", "get", "nodes", check=False)
    assert ok.returncode == 0, ok.stderr
    denied = cp.kubectl(f"--kubeconfig={kc}", "get", "secrets", "-A", check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr


def test_every_manifest_passes_server_side_dry_run_with_pod_security_admission(kube_control_plane):
    """`kubectl apply --dry-run=server` of every file in manifests/ (its Namespace applied for real
    first: a dry-run of a namespaced object needs the namespace), with no PodSecurity warning."""
    import glob
    import os
    import yaml
    cp, _ = kube_control_plane
    for path in sorted(glob.glob(os.path.join(os.path.dirname(KUBE_MANIFEST), "*.yaml"))):
        docs = load(path)
        if not any("apiVersion" in d and "kind" in d and d.get("kind") != "Cluster" for d in docs):
            continue                                   # kind-config.yaml: kind's own file, not the API's
        namespaces = [d for d in docs if d.get("kind") == "Namespace"]
        if namespaces:
            cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(namespaces))
        proc = cp.kubectl("apply", "--dry-run=server", "-f", path, check=False)
        assert proc.returncode == 0, f"{path}: {proc.stderr}"
        assert "PodSecurity" not in proc.stderr, f"{path}: {proc.stderr}"


def test_pod_security_admission_is_on(kube_control_plane):
    """The negative control: the same DaemonSet in a namespace that warns at `restricted` is warned
    about, so the dry-run above would have shown a violation."""
    import yaml
    cp, _ = kube_control_plane
    ds = next(d for d in load(KUBE_MANIFEST) if d.get("kind") == "DaemonSet")
    cp.kubectl("create", "namespace", "psa-check", check=False)
    cp.kubectl("label", "--overwrite", "namespace", "psa-check", "pod-security.kubernetes.io/warn=restricted")
    ds = dict(ds, metadata=dict(ds["metadata"], namespace="psa-check"))
    proc = cp.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(ds), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "would violate PodSecurity" in proc.stderr, proc.stderr
