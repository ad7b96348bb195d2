"""Our etcd client on etcd's JSON gateway, against real servers: Debian's etcd 3.4 and the lab's 3.7.

The watch (order, prev_kv, compaction, cancelling from another thread, a silently dead
connection), failover across endpoints, and an auth token that etcd stops accepting.
"""
from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
import time

import pytest

from overlayd.lab.cleanup import Cleanup
from overlayd.lab.etcd import ETCD_BIN, start_etcd
from overlayd.lab.netns import run
from subnet_lease.backend import BackendUnavailable
from subnet_lease.etcd_api import put_op
from subnet_lease.etcd_client import EtcdConnection, EtcdSettings, RevisionCompacted
from subnet_lease.etcd_gateway import Gateway
from subnet_lease.etcd_types import WatchResult

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module", params=["3.4", "3.7"])
def server(request):
    """Debian's etcd (what the lease tests run) and the control plane's (overlayd.lab.kube_bins)."""
    binary = ETCD_BIN
    if request.param == "3.7":
        from overlayd.lab.kube_bins import etcd_binary
        binary = etcd_binary()
    c = Cleanup()
    try:
        yield start_etcd(c, binary=binary)
    finally:
        c.run()


@pytest.fixture
def conn(server):
    c = EtcdConnection(EtcdSettings(endpoints=(server.endpoint,), rpc_timeout=5))
    yield c
    c.close()


@pytest.fixture
def prefix(server):
    p = f"/ovt-gw-{os.getpid()}-{time.monotonic_ns()}/"
    yield p
    server.etcdctl("del", "--prefix", p, check=False)


def collect(client, key, **kw):
    """A watch whose results go to a queue; -> (stream, queue)."""
    q: queue.Queue = queue.Queue()
    return client.watch(key, q.put, **kw), q


def next_item(q, timeout=10.0):
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError("the watch delivered nothing") from None


def test_the_watch_delivers_puts_and_deletes_in_order_from_a_revision(conn, server, prefix):
    c = conn.client()
    first = c.put(prefix + "a", "1")
    c.put(prefix + "b", "2", lease=c.grant(60).id)
    c.txn([], [put_op(prefix + "a", "3"), put_op(prefix + "c", b"\xff\x00")])    # one revision, two events
    c.delete(prefix + "b")
    c.put(prefix[:-1] + "x", "not under the prefix")
    stream, q = collect(c, prefix, prefix=True, start_revision=first, prev_kv=True)
    try:
        seen = []
        while len(seen) < 5:
            item = next_item(q)
            assert isinstance(item, WatchResult), item
            seen += [(ev.kind, ev.kv.key.decode("latin-1"), ev.kv.value, ev.kv.mod_revision,
                      ev.prev_kv.value if ev.prev_kv else None) for ev in item.events]
        keys = [(kind, key[len(prefix):], value, prev) for kind, key, value, _, prev in seen]
        assert keys == [("put", "a", b"1", None), ("put", "b", b"2", None), ("put", "a", b"3", b"1"),
                        ("put", "c", b"\xff\x00", None), ("delete", "b", b"", b"2")]
        revisions = [rev for *_, rev, _ in seen]
        assert revisions == sorted(revisions) and revisions[0] == first and revisions[2] == revisions[3]
        c.put(prefix + "d", "live")                                         # and what comes next
        item = next_item(q)
        assert [(e.kind, e.kv.key, e.kv.value) for e in item.events] == [("put", (prefix + "d").encode(), b"live")]
    finally:
        stream.cancel()


def test_a_compacted_start_revision_is_reported_as_compaction(conn, server, prefix):
    c = conn.client()
    old = c.put(prefix + "a", "1")
    now = c.put(prefix + "a", "2")
    server.etcdctl("compact", str(now))
    with pytest.raises(RevisionCompacted):            # a read at the old revision
        conn.call("range", lambda cl: cl.range_prefix(prefix, revision=old))
    # A watch from there: refused at creation, or canceled right after (etcd 3.4 confirms first).
    q: queue.Queue = queue.Queue()
    try:
        stream = conn.call("watch", lambda cl: cl.watch(prefix, q.put, prefix=True, start_revision=old))
    except RevisionCompacted:
        return
    try:
        assert isinstance(next_item(q), RevisionCompacted)
        assert q.empty()
    finally:
        stream.cancel()


def test_cancelling_a_watch_from_another_thread_returns_promptly(conn, prefix):
    c = conn.client()
    stream, q = collect(c, prefix, prefix=True)
    reader = stream._thread
    done = threading.Event()
    t0 = time.monotonic()
    threading.Thread(target=lambda: (stream.cancel(), done.set()), daemon=True).start()
    assert done.wait(2), "cancel() did not return"
    assert time.monotonic() - t0 < 1.0
    assert not reader.is_alive()
    c.put(prefix + "after", "x")
    time.sleep(0.3)
    assert q.empty(), "a cancelled watch delivered something"


def test_failover_to_the_second_endpoint_when_the_first_is_down(server, prefix):
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))                  # bound, never listening: connection refused
        down = f"http://127.0.0.1:{dead.getsockname()[1]}"
        conn = EtcdConnection(EtcdSettings(endpoints=(down, server.endpoint), rpc_timeout=5))
        try:
            conn.call("put", lambda c: c.put(prefix + "k", "v"))
            assert conn.call("get", lambda c: c.get(prefix + "k")).value == b"v"
            stream, q = collect(conn.client(), prefix + "k")
            try:
                server.etcdctl("put", prefix + "k", "w")
                assert next_item(q).events[0].kv.value == b"w"
            finally:
                stream.cancel()
        finally:
            conn.close()


def test_an_auth_token_etcd_stops_accepting_is_renewed_once(cleanup, monkeypatch):
    server = start_etcd(cleanup)
    server.stop()
    server.cmd += ["--auth-token-ttl", "1"]       # etcd forgets a simple token unused for 1 s
    server.start()
    for args in (("user", "add", "root:rootpw", "--interactive=false"),
                 ("user", "add", "flannel:s3cret", "--interactive=false"), ("role", "add", "flannel"),
                 ("role", "grant-permission", "flannel", "--prefix=true", "readwrite", "/coreos.com/network/"),
                 ("user", "grant-role", "flannel", "flannel"), ("auth", "enable")):
        server.etcdctl(*args)
    monkeypatch.setenv("ETCDCTL_USER", "root:rootpw")        # etcdctl's own calls
    authentications = []
    real = Gateway._authenticate
    monkeypatch.setattr(Gateway, "_authenticate", lambda self: authentications.append(1) or real(self))
    conn = EtcdConnection(EtcdSettings(endpoints=(server.endpoint,), username="flannel", password="s3cret"))
    try:
        conn.call("put", lambda c: c.put("/coreos.com/network/k", "v"))
        assert conn.call("get", lambda c: c.get("/coreos.com/network/k")).value == b"v"
        assert len(authentications) == 1
        time.sleep(3)                                 # the token expires
        assert conn.call("get", lambda c: c.get("/coreos.com/network/k")).value == b"v"
        assert len(authentications) == 2              # renewed once, the call went through
        time.sleep(3)
        # A watch created with a refused token is canceled by etcd (its message says why, there
        # is no status code): that attempt fails, retryable, and the next one authenticates.
        q: queue.Queue = queue.Queue()
        with pytest.raises(BackendUnavailable, match="invalid auth token"):
            conn.call("watch", lambda c: c.watch("/coreos.com/network/", q.put, prefix=True))
        stream = conn.call("watch", lambda c: c.watch("/coreos.com/network/", q.put, prefix=True))
        try:
            assert len(authentications) == 3
            server.etcdctl("put", "/coreos.com/network/k", "w")
            assert next_item(q).events[0].kv.value == b"w"
        finally:
            stream.cancel()
    finally:
        conn.close()


WATCHER = """
import sys, time, queue
from subnet_lease.etcd_client import EtcdConnection, EtcdSettings
conn = EtcdConnection(EtcdSettings(endpoints=(sys.argv[1],)))
q = queue.Queue()
stream = conn.call("watch", lambda c: c.watch("/k", q.put))
print("watching", flush=True)
sys.stdin.readline()                 # the test has cut the connection
t0 = time.monotonic()
item = q.get(timeout=90)
print(type(item).__name__, round(time.monotonic() - t0, 1), item, flush=True)
"""


def test_a_silently_dead_connection_fails_the_watch_within_about_25_s(make_netns, cleanup):
    """etcd and a watcher in a namespace of their own; nftables then drops their packets both
    ways: nothing is closed or reset, only TCP keepalive can tell (as the chaos blackhole)."""
    ns = make_netns("ka")
    server = start_etcd(cleanup, netns=ns)
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", WATCHER, server.endpoint],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    cleanup.push("watcher", lambda: proc.kill() if proc.poll() is None else None)
    assert proc.stdout.readline().strip() == "watching"
    port = server.port
    run(["nft", "-f", "-"], netns=ns, input=f"""
table inet ovt_blackhole {{
  chain input {{ type filter hook input priority 0; tcp dport {port} drop; tcp sport {port} drop; }}
  chain output {{ type filter hook output priority 0; tcp dport {port} drop; tcp sport {port} drop; }}
}}""")
    proc.stdin.write("go\n")
    proc.stdin.flush()
    out, _ = proc.communicate(timeout=120)
    kind, seconds, *_ = out.split()
    assert kind == "EtcdUnavailable", out
    assert 20 <= float(seconds) <= 35, out       # 10 s idle + 3 probes 5 s apart
