"""etcd settings and the connection: one client, reopened after a transport failure.

Only transport failures (the store cannot be reached, a call timed out, the server shed load,
an expired auth token) become BackendUnavailable, which callers retry. Anything else (a value
or key we cannot read, a refused request) is not made retryable here: retrying cannot fix it.
A read at a compacted revision is told apart by its gRPC status (OUT_OF_RANGE) and raised as
pyetcd's RevisionCompactedError, as the watch API reports it.
"""
from __future__ import annotations

import dataclasses
import threading
import urllib.parse
from typing import Optional

import grpc
from pyetcd import exceptions as etcd_exc
from pyetcd.client import Endpoint, MultiEndpointEtcd3Client

from .backend import BackendUnavailable, LeaseError
from .config import ConfigError
from .defaults import ETCD_PREFIX

DEFAULT_ENDPOINTS = ("http://127.0.0.1:4001", "http://127.0.0.1:2379")

# HTTP/2 keepalive pings, so a connection that died silently (the node's address went away, a
# firewall dropped state) fails within ~15 s instead of leaving a watch waiting forever (etcd
# accepts pings every 5 s or slower, --grpc-keepalive-min-time). A subchannel pool of each
# channel's own: gRPC otherwise shares connections between identical channels, and the fresh
# client reconnect() makes would get the dead connection back.
GRPC_OPTIONS = [("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0),
                ("grpc.use_local_subchannel_pool", 1)]


@dataclasses.dataclass(frozen=True)
class EtcdSettings:
    endpoints: tuple[str, ...] = DEFAULT_ENDPOINTS
    prefix: str = ETCD_PREFIX
    cafile: Optional[str] = None
    certfile: Optional[str] = None
    keyfile: Optional[str] = None
    username: Optional[str] = None
    password: Optional[str] = None
    lease_ttl: int = 86400               # seconds; flannel's subnet lease TTL is 24 h
    # seconds a subnet stays held for its owner after its lease expired (etcd_quarantine); 0: off
    quarantine: int = 3600
    renew_margin: float = 3600.0         # seconds before expiry to renew (flanneld: 60 min)
    check_interval: float = 30.0         # also verify the own key this often (a watch wakes us sooner)
    rpc_timeout: float = 10.0
    acquire_attempts: int = 20
    backoff_initial: float = 0.2
    backoff_max: float = 10.0

    def __post_init__(self):
        if isinstance(self.endpoints, str):
            object.__setattr__(self, "endpoints", tuple(split_endpoints(self.endpoints)))
        if not self.endpoints:
            raise ConfigError("--etcd-endpoints is empty: give e.g. http://127.0.0.1:2379")
        for url in self.endpoints:
            parse_endpoint(url)
        if not self.prefix.startswith("/"):
            raise ConfigError(f"--etcd-prefix {self.prefix!r} must start with '/', "
                              f"e.g. {ETCD_PREFIX}")
        if bool(self.certfile) != bool(self.keyfile):
            raise ConfigError("--etcd-certfile and --etcd-keyfile go together: give both or neither")
        if bool(self.username) != bool(self.password):
            raise ConfigError("--etcd-username and --etcd-password go together: give both or neither")
        if self.lease_ttl < 5:
            raise ConfigError(f"lease TTL {self.lease_ttl}s is too short: use at least 5 seconds")
        if self.quarantine < 0:
            raise ConfigError(f"--subnet-quarantine {self.quarantine} is negative: give seconds, "
                              f"0 to turn the quarantine off")

    @property
    def subnets_prefix(self) -> str:
        return self.prefix.rstrip("/") + "/subnets/"

    @property
    def quarantine_prefix(self) -> str:
        return self.prefix.rstrip("/") + "/quarantine/"

    @property
    def config_key(self) -> str:
        return self.prefix.rstrip("/") + "/config"


def split_endpoints(text: str) -> list[str]:
    return [e.strip() for e in text.split(",") if e.strip()]


def parse_endpoint(url: str) -> tuple[str, str, int]:
    """'https://10.0.0.1:2379' -> ('https', '10.0.0.1', 2379); a clear error otherwise."""
    parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"--etcd-endpoints entry {url!r} is not an etcd URL; "
                          f"write it like http://127.0.0.1:2379 or https://etcd.example:2379")
    try:
        port = parsed.port or 2379
    except ValueError:
        raise ConfigError(f"--etcd-endpoints entry {url!r} has a bad port") from None
    return parsed.scheme, parsed.hostname, port


# pyetcd's own transport errors; gRPC errors are sorted by status code (is_transport).
TRANSPORT_ERRORS = (etcd_exc.ConnectionFailedError, etcd_exc.ConnectionTimeoutError,
                    etcd_exc.NoServerAvailableError, etcd_exc.InternalServerError,
                    etcd_exc.WatchTimedOut)
TRANSPORT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                             grpc.StatusCode.CANCELLED, grpc.StatusCode.RESOURCE_EXHAUSTED,
                             grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.ABORTED,
                             grpc.StatusCode.INTERNAL})


def status_code(err: BaseException) -> Optional[grpc.StatusCode]:
    if isinstance(err, grpc.RpcError) and hasattr(err, "code"):
        try:
            return err.code()
        except Exception:  # a grpc error without a status
            return None
    return None


def is_transport(err: BaseException) -> bool:
    """A failure to reach or hear from the store (retrying may help), not a refused request."""
    if isinstance(err, TRANSPORT_ERRORS):
        return True
    if isinstance(err, grpc.RpcError):
        code = status_code(err)
        return code is None or code in TRANSPORT_CODES
    return False


def is_compacted(err: BaseException) -> bool:
    """etcd refuses a read or watch below its compaction revision: OUT_OF_RANGE, or pyetcd's type."""
    return isinstance(err, etcd_exc.RevisionCompactedError) or status_code(err) == grpc.StatusCode.OUT_OF_RANGE


def describe(err: BaseException) -> str:
    code = status_code(err)
    if code is not None:
        try:
            return f"{code.name}: {err.details()}"
        except Exception:
            pass
    return str(err) or type(err).__name__


class EtcdConnection:
    """The one etcd client of a backend; `call` turns transport failures into BackendUnavailable."""

    def __init__(self, settings: EtcdSettings) -> None:
        self.settings = settings
        self.last_error: Optional[str] = None
        self._lock = threading.Lock()
        self._client: Optional[MultiEndpointEtcd3Client] = None

    def new_client(self) -> MultiEndpointEtcd3Client:
        s = self.settings
        endpoints = []
        for url in s.endpoints:
            scheme, host, port = parse_endpoint(url)
            creds = None
            if scheme == "https":
                creds = MultiEndpointEtcd3Client.get_secure_creds(s.cafile, s.keyfile, s.certfile) \
                    if s.cafile else grpc.ssl_channel_credentials(
                        None, *(_read_file(s.keyfile), _read_file(s.certfile)) if s.certfile else (None, None))
            # time_retry: how long a failed endpoint is skipped; short, so a restarted etcd
            # is used again quickly and a single endpoint is never locked out for minutes.
            endpoints.append(Endpoint(host, port, secure=scheme == "https", creds=creds,
                                      time_retry=1.0, opts=GRPC_OPTIONS))
        try:
            client = MultiEndpointEtcd3Client(endpoints=endpoints, timeout=s.rpc_timeout,
                                              user=s.username, password=s.password, failover=True)
        except grpc.RpcError as err:
            for ep in endpoints:
                ep.close()
            raise BackendUnavailable(f"etcd at {','.join(s.endpoints)}: authentication or "
                                     f"connection failed ({describe(err)})") from None
        if not any(ep.secure for ep in endpoints):
            # gRPC refuses call credentials on a plain channel; etcd only needs the token,
            # which the client also sends as metadata.
            client.call_credentials = None
        return client

    def client(self) -> MultiEndpointEtcd3Client:
        with self._lock:
            if self._client is None:
                self._client = self.new_client()
            return self._client

    def drop(self) -> None:
        """Open a fresh connection on the next call (e.g. the node's own address just changed)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass

    def call(self, what: str, fn):
        """fn(client). A transport failure drops the client and raises BackendUnavailable; a read
        below the compaction revision raises RevisionCompactedError; anything else LeaseError."""
        try:
            return fn(self.client())
        except BackendUnavailable as err:
            self.last_error = str(err)
            raise
        except Exception as err:
            if is_compacted(err):
                raise etcd_exc.RevisionCompactedError(0) from None
            msg = f"etcd {what} at {','.join(self.settings.endpoints)} failed: {describe(err)}"
            self.last_error = msg
            if is_transport(err):
                self.drop()
                raise BackendUnavailable(msg) from None
            if isinstance(err, grpc.RpcError):
                raise LeaseError(msg) from None
            raise


def _read_file(path: Optional[str]) -> Optional[bytes]:
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise ConfigError(f"cannot read {path} (--etcd-certfile/--etcd-keyfile): {err.strerror}") from None
