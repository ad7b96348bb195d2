"""Which etcd answers are retryable, and how compaction is told: by etcd's gRPC status code, never text.

A fake JSON gateway on a loopback port answers with canned HTTP statuses and bodies (the two
shapes etcd's gateway uses: 3.4/3.5 and 3.6+), closes the socket, or never answers.
"""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from subnet_lease.backend import BackendUnavailable, LeaseError
from subnet_lease.etcd_client import EtcdConnection, EtcdSettings, RevisionCompacted
from subnet_lease.etcd_gateway import EtcdUnavailable, error_from


class FakeGateway:
    """HTTP/1.1 on 127.0.0.1: answer(path, body, headers) -> (status, body bytes) or "close"/"hang"."""

    def __init__(self, answer):
        self.answer = answer
        self.requests: list[tuple[str, dict]] = []
        self.connections = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        f = conn.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                path = line.split()[1].decode()
                headers = {}
                while (h := f.readline()) not in (b"\r\n", b""):
                    k, v = h.decode().split(":", 1)
                    headers[k.strip().lower()] = v.strip()
                body = json.loads(f.read(int(headers.get("content-length", 0))) or b"{}")
                self.requests.append((path, headers))
                out = self.answer(path, body, headers)
                if out == "close":
                    return
                if out == "hang":
                    self._stop.wait(30)
                    return
                status, data = out
                conn.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (status, len(data), data))
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self._stop.set()
        self._sock.close()
        for c in self._open:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def fake():
    made = []

    def make(answer, **settings):
        gw = FakeGateway(answer)
        conn = EtcdConnection(EtcdSettings(endpoints=(gw.url,), **settings))
        made.append((gw, conn))
        return gw, conn

    yield make
    for gw, conn in made:
        conn.close()
        gw.close()


def always(status: int, body) -> callable:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return lambda path, req, headers: (status, data)


def get(conn):
    return conn.call("get config", lambda c: c.get("/coreos.com/network/config"))


OLD = lambda code, msg: {"error": msg, "message": msg, "code": code}  # noqa: E731  etcd 3.4/3.5
NEW = lambda code, msg: {"code": code, "message": msg}                 # noqa: E731  etcd 3.6+


@pytest.mark.parametrize("shape", [OLD, NEW], ids=["3.4", "3.6"])
def test_a_read_below_the_compaction_revision_is_told_by_its_status_code_not_its_text(fake, shape):
    _, conn = fake(always(400, shape(11, "mvcc: history is gone")))
    with pytest.raises(RevisionCompacted):
        get(conn)


def test_the_word_compacted_in_another_error_is_not_compaction(fake):
    _, conn = fake(always(503, NEW(14, "endpoint compacted-etcd:2379 is down")))
    with pytest.raises(BackendUnavailable):
        get(conn)


@pytest.mark.parametrize("status,code,msg", [
    (503, 14, "etcdserver: no leader"), (503, 14, "etcdserver: leader changed"),
    (504, 4, "context deadline exceeded"), (401, 16, "etcdserver: invalid auth token"),
    (429, 8, "etcdserver: too many requests")])
@pytest.mark.parametrize("shape", [OLD, NEW], ids=["3.4", "3.6"])
def test_transport_failures_are_retryable_and_named(fake, shape, status, code, msg):
    _, conn = fake(always(status, shape(code, msg)))
    with pytest.raises(BackendUnavailable) as err:
        get(conn)
    assert str(err.value).startswith(f"etcd get config at {conn.settings.endpoints[0]} failed")
    assert msg in str(err.value) and conn.last_error == str(err.value)


@pytest.mark.parametrize("status,code,name", [(400, 3, "INVALID_ARGUMENT"), (403, 7, "PERMISSION_DENIED"),
                                              (404, 5, "NOT_FOUND")])
def test_a_refused_request_is_a_lease_error_naming_the_call_not_retryable(fake, status, code, name):
    _, conn = fake(always(status, OLD(code, "etcdserver: no way")))
    with pytest.raises(LeaseError, match=f"etcd get config at .* failed: {name}: etcdserver: no way") as err:
        get(conn)
    assert not isinstance(err.value, BackendUnavailable)


def test_an_answer_without_an_etcd_error_body_is_sorted_by_its_http_status(fake):
    _, conn = fake(always(503, b"upstream gone"))
    with pytest.raises(BackendUnavailable, match="HTTP 503: upstream gone"):
        get(conn)
    _, conn = fake(always(404, b"404 page not found"))       # an etcd without the gateway
    with pytest.raises(LeaseError, match="HTTP 404: 404 page not found .does this etcd serve its JSON gateway") as err:
        get(conn)
    assert not isinstance(err.value, BackendUnavailable)


def test_the_error_line_of_a_streamed_answer_is_sorted_too():
    assert isinstance(error_from(200, b'{"error":{"grpc_code":14,"http_code":503,"message":"x"}}'), EtcdUnavailable)
    assert isinstance(error_from(200, b'{"error":{"code":11,"message":"compacted"}}'), RevisionCompacted)


def test_a_closed_socket_is_retryable(fake):
    _, conn = fake(lambda *a: "close")
    with pytest.raises(BackendUnavailable, match="get config"):
        get(conn)


def test_an_unanswered_call_times_out_after_rpc_timeout(fake):
    _, conn = fake(lambda *a: "hang", rpc_timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailable, match="timed out"):
        get(conn)
    assert time.monotonic() - t0 < 2


def test_a_refused_connection_is_retryable_and_names_the_endpoint():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"            # bound, not listening: refused
        conn = EtcdConnection(EtcdSettings(endpoints=(url,)))
        with pytest.raises(BackendUnavailable, match=f"no endpoint answered \\({url}: .*refused"):
            get(conn)
        conn.close()


def test_a_kept_connection_the_server_closed_is_replaced_once_transparently(fake):
    answers = []

    def answer(path, body, headers):
        answers.append(path)
        return "close" if len(answers) == 2 else (200, b'{"header":{"revision":"7"}}')
    gw, conn = fake(answer)
    assert get(conn) is None                 # kept afterwards
    assert get(conn) is None                 # the kept one is closed unanswered: a fresh one answers
    assert gw.connections == 2 and len(answers) == 3


def test_a_refused_token_is_renewed_once_then_the_call_fails(fake):
    def answer(path, body, headers):
        if path == "/v3/auth/authenticate":
            return 200, json.dumps({"token": f"t{len(gw.requests)}"}).encode()
        return 401, json.dumps(OLD(16, "etcdserver: invalid auth token")).encode()
    gw, conn = fake(answer, username="flannel", password="pw")
    with pytest.raises(BackendUnavailable, match="invalid auth token"):
        get(conn)
    paths = [p for p, _ in gw.requests]
    assert paths == ["/v3/auth/authenticate", "/v3/kv/range", "/v3/auth/authenticate", "/v3/kv/range"]
    assert [h.get("authorization") for _, h in gw.requests[1::2]] == ["t1", "t3"]


@pytest.mark.parametrize("err", [ValueError("bad value"), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"),
                                 OSError("disk")])
def test_value_and_os_errors_are_not_disguised_as_an_unreachable_store(err):
    conn = EtcdConnection(EtcdSettings(endpoints=("http://127.0.0.1:1",)))

    def fn(_client):
        raise err

    with pytest.raises(type(err)):
        conn.call("range", fn)


def test_an_answer_that_is_not_json_is_a_lease_error_naming_the_call(fake):
    _, conn = fake(always(200, b"<html>a proxy's page</html>"))
    with pytest.raises(LeaseError, match="etcd get config at .* failed: /v3/kv/range: the answer is not JSON") as err:
        get(conn)
    assert not isinstance(err.value, BackendUnavailable)
