"""etcd's v3 JSON gateway over HTTP/1.1: POST a JSON body to /v3/..., get a JSON answer back.

The one place that opens sockets to etcd. Standard library only (http.client, json; ssl only when
an https endpoint is configured): the gRPC stack the gateway replaces cost ~50 ms of start-up and
~15 MB of resident memory (docs/architecture.md).

- Endpoints are tried in the order given; one that cannot be connected to is skipped for the
  next, within the same call. The endpoint that answered last is tried first next time.
- Idle connections are kept, one pool per endpoint, so a call costs no TCP (or TLS) handshake;
  a kept connection the server has closed meanwhile is replaced once, transparently.
- Every call has a deadline (the settings' rpc_timeout) and every socket TCP keepalive (10 s idle,
  then 3 probes 5 s apart), so a peer that died silently fails a watch within ~25 s.
- With a username, a token from /v3/auth/authenticate goes in the Authorization header; a token
  etcd refuses (expired, or etcd restarted) is renewed once per call.

Errors, sorted by etcd's gRPC status code (the gateway sends it in the body), never by text:
EtcdUnavailable (cannot reach or hear from etcd, or it sheds load: retrying may help),
RevisionCompacted (OUT_OF_RANGE: a read or watch below the compaction revision), EtcdRefused
(etcd answered no: retrying cannot help).
"""
from __future__ import annotations

import dataclasses
import http.client
import json
import socket
import threading
import time
from typing import Optional

from .config import ConfigError

# gRPC status codes (the gateway reports etcd's as "code": N).
CODE_NAMES = {0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
              5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED",
              9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED",
              13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED"}
OUT_OF_RANGE = 11
UNAUTHENTICATED = 16
FAILED_PRECONDITION = 9
# etcd could not serve the request now ("etcdserver: no leader", "leader changed", "request timed
# out", "too many requests", an expired token): retrying may help.
TRANSPORT_CODES = frozenset({1, 4, 8, 10, 13, 14, 16})

# TCP keepalive on every connection: ~25 s until a silently dead peer fails a blocked read.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 10, 5, 3


class EtcdUnavailable(Exception):
    """etcd could not be reached or did not answer in time, or it answered "not now" (code)."""

    def __init__(self, message: str, code: Optional[int] = None) -> None:
        super().__init__(message)
        self.code = code


class RevisionCompacted(Exception):
    """A read or watch asked for a revision etcd has compacted away (OUT_OF_RANGE)."""


class EtcdRefused(Exception):
    """etcd answered the request with an error that retrying will not fix."""

    def __init__(self, code: Optional[int], message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def tune_socket(sock) -> None:
    """TCP keepalive, so a read on a connection whose peer vanished fails instead of hanging."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)


class _HTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        tune_socket(self.sock)


class _HTTPSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        tune_socket(self.sock)


def error_from(status: int, body: bytes) -> Exception:
    """The exception for a gateway error answer: by the gRPC code in the body, else the HTTP status.

    etcd 3.4/3.5 answer {"error": text, "message": text, "code": N}; 3.6+ {"code": N, "message":
    text}; a streamed call {"error": {...}} with either inside (grpc_code in older gateways).
    """
    code, message = None, ""
    try:
        obj = json.loads(body)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        if isinstance(obj.get("error"), dict):
            obj = obj["error"]
        raw = obj.get("code", obj.get("grpc_code"))
        code = raw if isinstance(raw, int) else None
        message = str(obj.get("message") or obj.get("error") or "")
    if code is None:
        text = body[:200].decode("utf-8", "replace").strip() or http.client.responses.get(status, "")
        if status == 401:
            return EtcdUnavailable(f"HTTP {status}: {text}", UNAUTHENTICATED)
        if status >= 500 or status in (408, 429):
            return EtcdUnavailable(f"HTTP {status}: {text}")
        if status == 404:
            text += (" (does this etcd serve its JSON gateway? etcd 3.4+ does unless started with "
                     "--enable-grpc-gateway=false, or from a --config-file without enable-grpc-gateway: true)")
        return EtcdRefused(None, f"HTTP {status}: {text}")
    named = f"{CODE_NAMES.get(code, f'code {code}')}: {message}"
    if code == OUT_OF_RANGE:
        return RevisionCompacted(named)
    if code in TRANSPORT_CODES:
        return EtcdUnavailable(named, code)
    return EtcdRefused(code, named)


class Gateway:
    """HTTP connections to etcd's endpoints; post() one JSON request, open_stream() a watch."""

    def __init__(self, endpoints: list[Endpoint], *, timeout: float, cafile: Optional[str] = None,
                 certfile: Optional[str] = None, keyfile: Optional[str] = None,
                 username: Optional[str] = None, password: Optional[str] = None) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self.username, self.password = username, password
        self._ssl = None
        if any(ep.scheme == "https" for ep in self.endpoints):
            self._ssl = _ssl_context(cafile, certfile, keyfile)
        self._lock = threading.Lock()
        self._idle: dict[int, list[http.client.HTTPConnection]] = {i: [] for i in range(len(self.endpoints))}
        self._preferred = 0
        self._closed = False
        self._auth_lock = threading.Lock()
        self._token: Optional[str] = None        # "" once etcd said auth is not enabled

    # ---- one request ----------------------------------------------------------------------

    def post(self, path: str, body: dict) -> bytes:
        """The raw answer body of a successful POST; the sorted exception otherwise."""
        payload = json.dumps(body, separators=(",", ":")).encode()
        token = self._current_token()
        try:
            return self._post(path, payload, token)
        except EtcdUnavailable as err:
            if err.code != UNAUTHENTICATED or not self.username:
                raise
        # The token expired (etcd's simple tokens live 5 minutes unused) or etcd restarted.
        self.forget_token(token)
        return self._post(path, payload, self._current_token())

    def _post(self, path: str, payload: bytes, token: Optional[str]) -> bytes:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = token
        deadline = time.monotonic() + self.timeout
        idx, conn, reused = self._connect(deadline)
        try:
            resp, data = self._exchange(conn, path, payload, headers, deadline)
        except (OSError, http.client.HTTPException) as err:
            conn.close()
            if not (reused and _never_answered(err)):
                self._skip(idx)
                raise EtcdUnavailable(f"{self.endpoints[idx].url}: {_describe_os(err)}") from None
            # A kept connection the server had closed (etcd restarted): the request was not
            # served; once more on a fresh connection to the same endpoint.
            try:
                conn = self._open(idx, deadline)
                resp, data = self._exchange(conn, path, payload, headers, deadline)
            except (OSError, http.client.HTTPException) as err2:
                conn.close()
                self._skip(idx)
                raise EtcdUnavailable(f"{self.endpoints[idx].url}: {_describe_os(err2)}") from None
        if resp.will_close:
            conn.close()
        else:
            self._checkin(idx, conn)
        if resp.status == 200:
            return data
        raise error_from(resp.status, data)

    @staticmethod
    def _exchange(conn, path: str, payload: bytes, headers: dict, deadline: float):
        conn.sock.settimeout(max(0.001, deadline - time.monotonic()))
        conn.request("POST", path, body=payload, headers=headers)
        resp = conn.getresponse()
        return resp, resp.read()

    def _connect(self, deadline: float) -> tuple[int, http.client.HTTPConnection, bool]:
        """A connection: a kept one to the preferred endpoint, else the first endpoint (in the
        configured order, from the preferred one) that accepts a new one."""
        with self._lock:
            if self._closed:
                raise EtcdUnavailable("the etcd client was closed")
            start = self._preferred
            idle = self._idle[start]
            if idle:
                return start, idle.pop(), True
        n = len(self.endpoints)
        failures = []
        for i in range(n):
            idx = (start + i) % n
            if time.monotonic() >= deadline:
                failures.append(f"{self.endpoints[idx].url}: not tried (time is up)")
                continue
            try:
                conn = self._open(idx, deadline)
            except (OSError, http.client.HTTPException) as err:
                failures.append(f"{self.endpoints[idx].url}: {_describe_os(err)}")
                continue
            with self._lock:
                self._preferred = idx
            return idx, conn, False
        raise EtcdUnavailable("no endpoint answered (" + "; ".join(failures) + ")")

    def _open(self, idx: int, deadline: float) -> http.client.HTTPConnection:
        ep = self.endpoints[idx]
        timeout = max(0.001, deadline - time.monotonic())
        if ep.scheme == "https":
            conn = _HTTPSConnection(ep.host, ep.port, timeout=timeout, context=self._ssl)
        else:
            conn = _HTTPConnection(ep.host, ep.port, timeout=timeout)
        try:
            conn.connect()
        except BaseException:
            conn.close()
            raise
        return conn

    def _checkin(self, idx: int, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed:
                self._idle[idx].append(conn)
                return
        conn.close()

    def _skip(self, idx: int) -> None:
        """After a failure on endpoint idx: start with the next one next time."""
        with self._lock:
            if self._preferred == idx:
                self._preferred = (idx + 1) % len(self.endpoints)

    # ---- a streamed answer (the watch) ------------------------------------------------------

    def open_stream(self, path: str, body: dict) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse,
                                                          socket.socket, Optional[str]]:
        """POST on a connection of its own whose answer is read as it comes; -> (connection,
        response, socket, the token sent). The socket times out after the call timeout until the
        caller changes that."""
        payload = json.dumps(body, separators=(",", ":")).encode()
        for attempt in (0, 1):
            token = self._current_token()
            headers = {"Content-Type": "application/json"}
            if token:
                headers["Authorization"] = token
            deadline = time.monotonic() + self.timeout
            idx, conn = self._connect_fresh(deadline)
            sock = conn.sock
            try:
                conn.request("POST", path, body=payload, headers=headers)
                resp = conn.getresponse()
                if resp.status == 200:
                    return conn, resp, sock, token
                err = error_from(resp.status, resp.read())
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._skip(idx)
                raise EtcdUnavailable(f"{self.endpoints[idx].url}: {_describe_os(exc)}") from None
            conn.close()
            if getattr(err, "code", None) == UNAUTHENTICATED and self.username and attempt == 0:
                self.forget_token(token)
                continue
            raise err
        raise AssertionError("unreachable")

    def _connect_fresh(self, deadline: float) -> tuple[int, http.client.HTTPConnection]:
        n = len(self.endpoints)
        with self._lock:
            start = self._preferred
        failures = []
        for i in range(n):
            idx = (start + i) % n
            try:
                return idx, self._open(idx, deadline)
            except (OSError, http.client.HTTPException) as err:
                failures.append(f"{self.endpoints[idx].url}: {_describe_os(err)}")
        raise EtcdUnavailable("no endpoint answered (" + "; ".join(failures) + ")")

    # ---- auth --------------------------------------------------------------------------------

    def _current_token(self) -> Optional[str]:
        if not self.username:
            return None
        with self._auth_lock:
            if self._token is None:
                self._token = self._authenticate()
            return self._token

    def forget_token(self, token: Optional[str]) -> None:
        """etcd refused `token`: the next request authenticates again (once, for all threads)."""
        with self._auth_lock:
            if self._token == token:
                self._token = None

    def _authenticate(self) -> str:
        try:
            data = self._post("/v3/auth/authenticate", json.dumps(
                {"name": self.username, "password": self.password}).encode(), None)
        except EtcdRefused as err:
            if err.code == FAILED_PRECONDITION:       # etcd runs without auth: no token needed
                return ""
            raise EtcdUnavailable(f"authentication as {self.username!r} failed ({err}); check "
                                  f"--etcd-username and --etcd-password") from None
        except EtcdUnavailable as err:
            raise EtcdUnavailable(f"authentication as {self.username!r} failed ({err})") from None
        token = json.loads(data).get("token")
        if not isinstance(token, str) or not token:
            raise EtcdUnavailable(f"authentication as {self.username!r}: etcd sent no token")
        return token

    # ---- end ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """Close the kept connections: the next call connects afresh (e.g. our address changed)."""
        with self._lock:
            idle = [c for conns in self._idle.values() for c in conns]
            for conns in self._idle.values():
                conns.clear()
        for conn in idle:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.reset()


def _never_answered(err: BaseException) -> bool:
    """The server closed a kept connection before answering (so the request was not served)."""
    return isinstance(err, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                            http.client.BadStatusLine))


def _describe_os(err: BaseException) -> str:
    if isinstance(err, socket.timeout):
        return "timed out"
    text = str(err) or type(err).__name__
    return text if isinstance(err, OSError) and err.strerror else f"{type(err).__name__}: {text}"


def _ssl_context(cafile: Optional[str], certfile: Optional[str], keyfile: Optional[str]):
    """TLS for https endpoints: the CA bundle (else the system's), a client certificate if given."""
    import ssl          # only with an https endpoint: it loads OpenSSL
    try:
        ctx = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"cannot use --etcd-cafile {cafile}: {getattr(err, 'strerror', None) or err}")
    if certfile:
        try:
            ctx.load_cert_chain(certfile, keyfile)
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(f"cannot use --etcd-certfile {certfile} / --etcd-keyfile {keyfile}: "
                                f"{getattr(err, 'strerror', None) or err}")
    return ctx

