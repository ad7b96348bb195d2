"""The kube backend treats resourceVersion as opaque, as Kubernetes' API conventions require.

A tiny API server hands out resourceVersions that are not numbers. The backend must watch from
exactly the value the list returned, and then from the last value an event carried; parsing
them (a non-number became 0, "watch from any point") loses or replays events.
"""
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from subnet_lease.backend import BackendUnavailable
from subnet_lease.kube_backend import KubeLeaseBackend, KubeSettings
from watching import wait_for

P = "flannel.alpha.coreos.com"


def node(name, n, rv):
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "resourceVersion": rv, "annotations": {
                f"{P}/kube-subnet-manager": "true", f"{P}/backend-type": "vxlan",
                f"{P}/backend-data": json.dumps({"VNI": 1, "VtepMAC": f"0a:58:00:00:00:{n:02x}"}),
                f"{P}/public-ip": f"192.0.2.{n}"}},
            "spec": {"podCIDR": f"10.244.{n}.0/24"}}


class OpaqueApi:
    """GET /api/v1/nodes: a list at resourceVersion "Zq-list"; each watch answers with the
    events scripted for the resourceVersion it was asked from, then ends."""

    def __init__(self, list_rv="Zq-list"):
        self.list_rv = list_rv
        self.watched_from = []
        self.script = {"Zq-list": [{"type": "ADDED", "object": node("n2", 2, "Zq-2")}],
                       "Zq-2": [{"type": "BOOKMARK", "object": {"kind": "Node", "metadata": {"resourceVersion": "Zq-b"}}}],
                       "Zq-b": [{"type": "ADDED", "object": node("n3", 3, "Zq-3")}]}
        self.cond = threading.Condition()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                if query.get("watch") in ("true", "True", "1"):
                    rv = query.get("resourceVersion", "")
                    with api.cond:
                        api.watched_from.append(rv)
                        api.cond.notify_all()
                    body = b"".join(json.dumps(e).encode() + b"\n" for e in api.script.get(rv, []))
                else:
                    body = json.dumps({"kind": "NodeList", "apiVersion": "v1",
                                       "metadata": {"resourceVersion": api.list_rv},
                                       "items": [node("n1", 1, "Zq-1")]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api():
    a = OpaqueApi()
    yield a
    a.close()


def backend(api, tmp_path):
    return KubeLeaseBackend(KubeSettings(node_name="n1", api_url=api.url, net_config_path=str(tmp_path / "x"),
                                         backoff_initial=0.05, backoff_max=0.2))


def test_the_watch_starts_from_the_lists_resource_version_and_follows_events_and_bookmarks(api, tmp_path):
    b = backend(api, tmp_path)
    stop = threading.Event()
    try:
        leases, revision = b.snapshot()
        assert revision == "Zq-list"
        assert [x.node_name for x in leases] == ["n1"]
        seen, it = [], b.watch(revision, stop)
        t = threading.Thread(target=lambda: [seen.extend(batch) for batch in it], daemon=True)
        t.start()
        wait_for(lambda: len(seen) >= 2, what="the events of both watches")
        assert [(e.kind, e.lease.node_name) for e in seen] == [("added", "n2"), ("added", "n3")]
        assert api.watched_from[:3] == ["Zq-list", "Zq-2", "Zq-b"]
    finally:
        stop.set()
        b.close()


def test_a_list_without_a_resource_version_is_retried_not_watched_from_any_point(tmp_path):
    a = OpaqueApi(list_rv="")
    try:
        b = backend(a, tmp_path)
        with pytest.raises(BackendUnavailable, match="resourceVersion"):
            b.snapshot()
        b.close()
    finally:
        a.close()
