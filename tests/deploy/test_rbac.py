"""The ClusterRole grants exactly the API calls the code makes: no more, no fewer.

The calls are found in the source (every Kubernetes client API method called in a module that
imports `kubernetes`), then replayed with the official client against a loopback HTTP server that
records what goes over the wire. Each request is turned into an RBAC (apiGroup, resource, verb)
the way the API server's authorizer does: GET on one object = get, on a collection = list, with
watch=true = watch; PATCH = patch, PUT = update, POST = create, DELETE = delete.
"""
from __future__ import annotations

import ast
import http.server
import inspect
import os
import threading
import urllib.parse

import kubernetes.client
import pytest

from .manifest_docs import KUBE_MANIFEST, REPO, daemon_argv, find, load, pod_spec

SCANNED_PACKAGES = ("subnet_lease", "overlayd")
# The test lab is never deployed; `overlayd connectivity-test` is an operator's command that runs with
# the operator's kubeconfig (it creates a namespace, pods and a Service), never as the DaemonSet.
NOT_SCANNED = (os.path.join("overlayd", "lab"), os.path.join("overlayd", "connectivity"),
               os.path.join("overlayd", "commands", "connectivity_test.py"))
VERB_PREFIXES = ("read_", "list_", "patch_", "replace_", "create_", "delete_", "connect_")

# Calls the code makes only on a path the DaemonSet never takes, with the reason checked below.
# The kube backend reads its own Pod to learn the node name only when NODE_NAME is not set.
UNREACHABLE_WITH_THIS_MANIFEST = {
    "read_namespaced_pod": "NODE_NAME is set from the downward API (spec.nodeName)",
}


def _api_classes() -> dict[str, type]:
    """method name -> the client API class that has it (CoreV1Api first)."""
    by_name: dict[str, type] = {}
    # kubernetes.client loads its API classes lazily: vars() holds only those imported so far.
    names = getattr(kubernetes.client, "__all__", None) or list(vars(kubernetes.client))
    classes = [kubernetes.client.CoreV1Api] + [
        cls for cls in (getattr(kubernetes.client, n) for n in names if n.endswith("Api"))
        if inspect.isclass(cls) and cls is not kubernetes.client.CoreV1Api]
    for cls in classes:
        for name in dir(cls):
            if name.startswith(VERB_PREFIXES) and not name.endswith("_with_http_info"):
                by_name.setdefault(name, cls)
    return by_name


def _scanned_files() -> list[str]:
    files = []
    for package in SCANNED_PACKAGES:
        for base, dirs, names in os.walk(os.path.join(REPO, package)):
            rel = os.path.relpath(base, REPO)
            if any(rel == skip or rel.startswith(skip + os.sep) for skip in NOT_SCANNED):
                continue
            files += [os.path.join(base, n) for n in names if n.endswith(".py")
                      and os.path.join(rel, n) not in NOT_SCANNED]
    return sorted(files)


def _imports_kubernetes(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "kubernetes" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "kubernetes":
            return True
    return False


def api_calls_in_code() -> dict[tuple[str, bool], list[str]]:
    """(method, watch) -> where: every client API call in modules that import kubernetes."""
    methods = _api_classes()
    calls: dict[tuple[str, bool], list[str]] = {}
    for path in _scanned_files():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        # The kube backend's modules call the client they get from subnet_lease.kube_client.
        if not _imports_kubernetes(tree) and not os.path.relpath(path, REPO).startswith("subnet_lease/kube_"):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            where = f"{os.path.relpath(path, REPO)}:{node.lineno}"
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in methods:
                watch = any(k.arg == "watch" and isinstance(k.value, ast.Constant) and k.value.value is True
                            for k in node.keywords)
                calls.setdefault((func.attr, watch), []).append(where)
            # watch.Watch().stream(api.list_node, ...) watches through a list method
            if isinstance(func, ast.Attribute) and func.attr == "stream" and node.args \
                    and isinstance(node.args[0], ast.Attribute) and node.args[0].attr in methods:
                calls.setdefault((node.args[0].attr, True), []).append(where)
    return calls


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str]] = []

    def _any(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.seen.append((self.command, self.path))
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PATCH = do_PUT = do_POST = do_DELETE = _any

    def log_message(self, *args):
        pass


@pytest.fixture
def recording_api_server():
    """A loopback HTTP server that answers {} and records (method, path) of every request."""
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.seen
    finally:
        server.shutdown()
        server.server_close()


def _rbac_of(method: str, path: str) -> tuple[str, str, str]:
    """(apiGroup, resource[/subresource], verb) of one request, as the API server sees it."""
    url = urllib.parse.urlsplit(path)
    parts = [p for p in url.path.split("/") if p]
    if parts[0] == "api":                       # /api/v1/...
        group, rest = "", parts[2:]
    else:                                       # /apis/<group>/<version>/...
        group, rest = parts[1], parts[3:]
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) > 2:
        rest = rest[2:]
    resource, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None
    query = urllib.parse.parse_qs(url.query)
    if method == "GET":
        if name is None:
            verb = "watch" if query.get("watch", [""])[0].lower() in ("true", "1") else "list"
        else:
            verb = "get"
    else:
        verb = {"PATCH": "patch", "PUT": "update", "POST": "create",
                "DELETE": "delete" if name else "deletecollection"}[method]
    return group, resource + (f"/{sub}" if sub else ""), verb


def _replay(base_url: str, seen: list, method_name: str, watch: bool) -> tuple[str, str, str]:
    cls = _api_classes()[method_name]
    cfg = kubernetes.client.Configuration(host=base_url)
    api = cls(kubernetes.client.ApiClient(cfg))
    method = getattr(api, method_name)
    args = []
    for p in inspect.signature(method).parameters.values():
        if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            args.append({} if p.name == "body" else "placeholder")
    kwargs = {"_preload_content": False}
    if watch:
        kwargs["watch"] = True
    before = len(seen)
    method(*args, **kwargs)
    assert len(seen) == before + 1, f"{method_name} sent {len(seen) - before} requests"
    return _rbac_of(*seen[-1])


def _granted(cluster_role: dict) -> set[tuple[str, str, str]]:
    granted = set()
    for rule in cluster_role["rules"]:
        assert "*" not in rule.get("verbs", []) + rule.get("resources", []), f"wildcard in {rule}"
        assert not rule.get("resourceNames"), "the daemon patches its own node, whose name is not known here"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    granted.add((group, resource, verb))
    return granted


def test_the_scan_finds_the_kube_backend_calls():
    """Guards the comparison below against a scan that finds nothing."""
    calls = api_calls_in_code()
    assert calls, "no Kubernetes API calls found in subnet_lease/ or overlayd/"
    assert any(name == "list_node" for name, _ in calls), calls


def test_rbac_is_exactly_what_the_code_calls(recording_api_server):
    base_url, seen = recording_api_server
    docs = load(KUBE_MANIFEST)
    spec = pod_spec(docs)
    env = {e["name"]: e for c in spec["containers"] for e in c.get("env", [])}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName", \
        UNREACHABLE_WITH_THIS_MANIFEST["read_namespaced_pod"]
    assert "--kube-subnet-mgr" in daemon_argv(docs)

    needed: dict[tuple[str, str, str], list[str]] = {}
    for (name, watch), where in sorted(api_calls_in_code().items()):
        if name in UNREACHABLE_WITH_THIS_MANIFEST:
            continue
        needed.setdefault(_replay(base_url, seen, name, watch), []).extend(f"{name} at {w}" for w in where)

    granted = _granted(find(docs, "ClusterRole"))
    missing = {rule: needed[rule] for rule in set(needed) - granted}
    unused = granted - set(needed)
    assert not missing, f"the code calls what the ClusterRole does not grant: {missing}"
    assert not unused, f"the ClusterRole grants what no code calls: {sorted(unused)}"
    # What the issue names, as a readable summary of the above.
    assert granted == {("", "nodes", "get"), ("", "nodes", "list"), ("", "nodes", "watch"),
                       ("", "nodes/status", "patch"),
                       # --network-policy (issue 10): the policy watcher's list + watch
                       ("", "pods", "list"), ("", "pods", "watch"), ("", "namespaces", "list"),
                       ("", "namespaces", "watch"), ("networking.k8s.io", "networkpolicies", "list"),
                       ("networking.k8s.io", "networkpolicies", "watch")}
