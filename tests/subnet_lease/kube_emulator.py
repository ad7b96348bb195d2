"""A small HTTP Kubernetes API emulator (Nodes only), for the faults a real
kube-apiserver cannot be made to produce on demand (test_kube_backend_faults.py): a watch request
answered with an HTTP 410 status, and a 503 at one exact request. Everything else is tested
against the real API server (real_kube.py).

Enough of the real API's behaviour for the kube lease backend, driven through the official
`kubernetes` client over real HTTP: every write bumps a global resourceVersion; watches start
from a resourceVersion and stream newline-delimited JSON events. Strategic-merge patches merge
maps and merge `status.conditions` by `type`. The faults are scripted (`script()`: the next
matching request gets a canned response).
"""
from __future__ import annotations

import copy
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional


def _merge(target: dict, patch: dict) -> dict:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif key == "conditions" and isinstance(value, list):
            by_type = {c.get("type"): c for c in target.get("conditions") or []}
            for cond in value:
                by_type[cond.get("type")] = {**by_type.get(cond.get("type"), {}), **cond}
            target["conditions"] = list(by_type.values())
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def new_node(name: str, pod_cidr: Optional[str] = None, annotations: Optional[dict] = None,
             pod_cidrs: Optional[list] = None, labels: Optional[dict] = None) -> dict:
    """A Node as a freshly registered kubelet leaves it (podCIDR(s) only if the caller gives them)."""
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": dict(annotations or {}), "labels": dict(labels or {})},
            "spec": {}, "status": {"conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "NetworkUnavailable", "status": "True", "reason": "NoRouteCreated"}]}}
    cidrs = list(pod_cidrs or ([pod_cidr] if pod_cidr else []))
    if cidrs:
        node["spec"]["podCIDR"] = pod_cidr or cidrs[0]
        node["spec"]["podCIDRs"] = cidrs
    return node


class KubeEmulator:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._cond = threading.Condition()
        self.revision = 100
        self.nodes: dict[str, dict] = {}
        self.history: list[tuple[int, str, dict]] = []    # (rv, type, object)
        self.oldest_retained = 0                           # watches from before this get 410
        self.requests: list[tuple[str, str, Optional[str]]] = []   # (method, path, content-type)
        self._scripts: list[tuple[str, str, int, dict]] = []
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._servers = [self._server]
        self._threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in self._servers]

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "KubeEmulator":
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for server in self._servers:
            server.shutdown()
            server.server_close()

    _stopping = False

    # ---- state changes (as the controller-manager or kubectl would make them) ---------------

    def _record(self, etype: str, obj: dict) -> None:
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        self.history.append((self.revision, etype, copy.deepcopy(obj)))
        self._cond.notify_all()

    def add_node(self, name: str, pod_cidr: Optional[str] = None, annotations: Optional[dict] = None,
                 pod_cidrs: Optional[list] = None) -> dict:
        return self.create_node(new_node(name, pod_cidr, annotations, pod_cidrs))

    def create_node(self, node: dict) -> dict:
        """Store a Node object (KeyError-free: the caller checked the name is new)."""
        with self._cond:
            node = copy.deepcopy(node)
            node.setdefault("metadata", {}).setdefault("annotations", {})
            node.setdefault("spec", {})
            node.setdefault("status", {})
            self.nodes[node["metadata"]["name"]] = node
            self._record("ADDED", node)
            return copy.deepcopy(node)

    def update_node(self, name: str, patch: dict) -> dict:
        with self._cond:
            node = _merge(self.nodes[name], patch)
            self._record("MODIFIED", node)
            return copy.deepcopy(node)

    def delete_node(self, name: str) -> dict:
        with self._cond:
            node = self.nodes.pop(name)
            self._record("DELETED", node)
            return copy.deepcopy(node)

    def compact(self) -> None:
        """Forget the event history (as etcd compaction does): older watches get 410 Gone."""
        with self._cond:
            self.oldest_retained = self.revision + 1
            self.history.clear()

    def script(self, method: str, path_prefix: str, status: int, body: dict) -> None:
        """The next request matching method and path prefix gets this response instead."""
        with self._cond:
            self._scripts.append((method, path_prefix, status, body))

    def node(self, name: str) -> dict:
        with self._cond:
            return copy.deepcopy(self.nodes[name])

    # ---- HTTP ------------------------------------------------------------------------------

    def _handler(self):
        emu = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _status(self, code: int, reason: str, message: str) -> None:
                self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                  "message": message, "reason": reason, "code": code})

            def _scripted(self, method: str, path: str) -> bool:
                with emu._cond:
                    for i, (m, prefix, status, body) in enumerate(emu._scripts):
                        if m == method and path.startswith(prefix):
                            del emu._scripts[i]
                            break
                    else:
                        return False
                self._send(status, body)
                return True

            def _route(self, method: str):
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                parts = [p for p in url.path.split("/") if p]
                with emu._cond:
                    emu.requests.append((method, url.path, self.headers.get("Content-Type")))
                if self._scripted(method, url.path):
                    return None
                return url, query, parts

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length)

            def do_GET(self):
                routed = self._route("GET")
                if routed is None:
                    return
                url, query, parts = routed
                if parts in (["version"], ["healthz"]):
                    return self._send(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-overlayd-emulator"})
                if parts[:3] == ["api", "v1", "nodes"] and len(parts) == 3:
                    if query.get("watch") in ("true", "1"):
                        return self._watch(query)
                    with emu._cond:
                        items = [copy.deepcopy(n) for n in emu.nodes.values()]
                        rv = str(emu.revision)
                    return self._send(200, {"kind": "NodeList", "apiVersion": "v1",
                                            "metadata": {"resourceVersion": rv}, "items": items})
                if parts[:3] == ["api", "v1", "nodes"] and len(parts) == 4:
                    with emu._cond:
                        node = copy.deepcopy(emu.nodes.get(parts[3]))
                    if node is None:
                        return self._status(404, "NotFound", f'nodes "{parts[3]}" not found')
                    return self._send(200, node)
                self._status(404, "NotFound", f"the emulator does not serve {url.path}")

            def do_POST(self):
                routed = self._route("POST")
                body = self._body()
                if routed is None:
                    return
                url, query, parts = routed
                if parts != ["api", "v1", "nodes"]:
                    return self._status(404, "NotFound", f"the emulator cannot create {url.path}")
                try:
                    node = json.loads(body)
                    name = node["metadata"]["name"]
                except (ValueError, KeyError, TypeError):
                    return self._status(400, "BadRequest", "the body must be a Node with metadata.name")
                with emu._cond:
                    if name in emu.nodes:
                        return self._status(409, "AlreadyExists", f'nodes "{name}" already exists')
                    created = emu.create_node(node)
                self._send(201, created)

            def do_DELETE(self):
                routed = self._route("DELETE")
                self._body()
                if routed is None:
                    return
                url, query, parts = routed
                if parts[:3] != ["api", "v1", "nodes"] or len(parts) != 4:
                    return self._status(404, "NotFound", f"the emulator cannot delete {url.path}")
                with emu._cond:
                    if parts[3] not in emu.nodes:
                        return self._status(404, "NotFound", f'nodes "{parts[3]}" not found')
                    deleted = emu.delete_node(parts[3])
                self._send(200, deleted)

            def do_PATCH(self):
                routed = self._route("PATCH")
                body = self._body()
                if routed is None:
                    return
                url, query, parts = routed
                ctype = self.headers.get("Content-Type", "")
                if ctype not in ("application/strategic-merge-patch+json", "application/merge-patch+json"):
                    return self._status(415, "UnsupportedMediaType", f"the emulator cannot apply {ctype}")
                if parts[:3] != ["api", "v1", "nodes"] or len(parts) not in (4, 5):
                    return self._status(404, "NotFound", url.path)
                if len(parts) == 5 and parts[4] != "status":
                    return self._status(404, "NotFound", url.path)
                patch = json.loads(body)
                with emu._cond:
                    node = emu.nodes.get(parts[3])
                    if node is None:
                        return self._status(404, "NotFound", f'nodes "{parts[3]}" not found')
                    if len(parts) == 4:      # the main resource ignores status, like the real API
                        patch.pop("status", None)
                    else:                    # nodes/status: metadata and status, never spec
                        patch.pop("spec", None)
                    _merge(node, patch)
                    emu._record("MODIFIED", node)
                    result = copy.deepcopy(node)
                self._send(200, result)

            def _watch(self, query: dict) -> None:
                since = int(query.get("resourceVersion") or 0)
                timeout = float(query.get("timeoutSeconds") or 30)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

                def emit(doc):
                    data = json.dumps(doc).encode() + b"\n"
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()

                deadline = time.monotonic() + timeout
                try:
                    with emu._cond:
                        oldest = emu.oldest_retained
                    if since and since < oldest - 1:
                        emit({"type": "ERROR", "object": {
                            "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                            "reason": "Expired", "message": f"too old resource version: {since} ({oldest})"}})
                        return self._end_chunks()
                    sent = since
                    while time.monotonic() < deadline and not emu._stopping:
                        with emu._cond:
                            pending = [(rv, t, o) for rv, t, o in emu.history if rv > sent]
                            if not pending:
                                emu._cond.wait(min(0.5, max(0.0, deadline - time.monotonic())))
                                continue
                        for rv, etype, obj in pending:
                            emit({"type": etype, "object": obj})
                            sent = rv
                    self._end_chunks()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _end_chunks(self):
                try:
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

        return Handler
