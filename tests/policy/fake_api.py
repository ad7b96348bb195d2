"""A small API server for the watcher's wire protocol: list, watch from a resourceVersion (newline-
delimited JSON events), 410 Gone for a compacted version, 403 on demand. Pods, Namespaces and
NetworkPolicies only. Real HTTP, spoken to by the official client, on loopback.
"""
from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATHS = {"/api/v1/pods": "pods", "/api/v1/namespaces": "namespaces",
         "/apis/networking.k8s.io/v1/networkpolicies": "networkpolicies"}


class FakeApi:
    def __init__(self):
        self.cond = threading.Condition()
        self.rv = 1
        self.objects = {k: {} for k in PATHS.values()}
        self.events = []              # (rv, kind, type, object)
        self.compacted = 0            # watches from before this get 410
        self.forbidden: set = set()
        self.requests = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                kind = PATHS.get(url.path)
                q = dict(urllib.parse.parse_qsl(url.query))
                api.requests.append((kind, q.get("watch") == "true"))
                if kind is None or kind in api.forbidden:
                    code = 404 if kind is None else 403
                    body = json.dumps({"kind": "Status", "code": code, "reason": "Forbidden"}).encode()
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if q.get("watch") == "true":
                    return self._watch(kind, int(q.get("resourceVersion") or 0))
                with api.cond:
                    body = json.dumps({"metadata": {"resourceVersion": str(api.rv)},
                                       "items": list(api.objects[kind].values())}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _watch(self, kind, since):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

                def chunk(obj):
                    data = (json.dumps(obj) + "\n").encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                try:
                    with api.cond:
                        if since < api.compacted:
                            chunk({"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}})
                            self.wfile.write(b"0\r\n\r\n")
                            return
                        last = since
                        gen = api.compacted
                    while True:
                        with api.cond:
                            pending = [e for e in api.events if e[0] > last and e[1] == kind]
                            if not pending:
                                api.cond.wait(0.2)
                                if api.compacted != gen or api.closed:   # "restart": end the watch
                                    self.wfile.write(b"0\r\n\r\n")
                                    return
                                continue
                        for rv, _, etype, obj in pending:
                            chunk({"type": etype, "object": obj})
                            last = rv
                except (BrokenPipeError, ConnectionResetError):
                    return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.closed = False
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "FakeApi":
        self.thread.start()
        return self

    def close(self):
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def _key(obj):
        m = obj["metadata"]
        return f"{m.get('namespace', '')}/{m['name']}"

    def put(self, kind, obj, etype=None, record=True):
        with self.cond:
            self.rv += 1
            obj = json.loads(json.dumps(obj))
            obj["metadata"]["resourceVersion"] = str(self.rv)
            key = self._key(obj)
            etype = etype or ("MODIFIED" if key in self.objects[kind] else "ADDED")
            self.objects[kind][key] = obj
            if record:
                self.events.append((self.rv, kind, etype, obj))
            self.cond.notify_all()

    def delete(self, kind, obj, record=True):
        with self.cond:
            self.rv += 1
            gone = self.objects[kind].pop(self._key(obj))
            if record:
                self.events.append((self.rv, kind, "DELETED", gone))
            self.cond.notify_all()

    def compact(self):
        """Forget the history and end every watch: the next watch from an old version gets 410."""
        with self.cond:
            self.compacted = self.rv + 1
            self.events.clear()
            self.cond.notify_all()
