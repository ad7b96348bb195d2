"""etcd settings and the connection: one client, its kept connections closed after a transport failure.

Only transport failures (the store cannot be reached, a call timed out, the server shed load,
an expired auth token) become BackendUnavailable, which callers retry. Anything else (a value
or key we cannot read, a refused request) is not made retryable here: retrying cannot fix it.
A read at a compacted revision is told apart by its gRPC status code (OUT_OF_RANGE, which the
JSON gateway reports in its answer) and raised as RevisionCompacted, which the watch handles.
The client is our own (etcd_api over etcd_gateway): etcd's v3 JSON gateway, standard library only.
"""
from __future__ import annotations

import dataclasses
import threading
import urllib.parse
from typing import Optional

from .backend import BackendUnavailable, LeaseError
from .config import ConfigError
from .defaults import ETCD_PREFIX
from .etcd_api import EtcdClient
from .etcd_gateway import Endpoint, EtcdRefused, EtcdUnavailable, RevisionCompacted

__all__ = ["DEFAULT_ENDPOINTS", "EtcdConnection", "EtcdSettings", "RevisionCompacted", "describe",
           "is_compacted", "is_transport", "parse_endpoint", "split_endpoints"]

DEFAULT_ENDPOINTS = ("http://127.0.0.1:4001", "http://127.0.0.1:2379")


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


def is_transport(err: BaseException) -> bool:
    """A failure to reach or hear from the store (retrying may help), not a refused request."""
    return isinstance(err, EtcdUnavailable)


def is_compacted(err: BaseException) -> bool:
    """etcd refuses a read or watch below its compaction revision (OUT_OF_RANGE)."""
    return isinstance(err, RevisionCompacted)


def describe(err: BaseException) -> str:
    return str(err) or type(err).__name__


class EtcdConnection:
    """The one etcd client of a backend; `call` turns transport failures into BackendUnavailable."""

    def __init__(self, settings: EtcdSettings) -> None:
        self.settings = settings
        self.last_error: Optional[str] = None
        self._lock = threading.Lock()
        self._client: Optional[EtcdClient] = None

    def new_client(self) -> EtcdClient:
        """A client with connections of its own (the backend shares one: client())."""
        s = self.settings
        endpoints = [Endpoint(*parse_endpoint(url)) for url in s.endpoints]
        return EtcdClient(endpoints, timeout=s.rpc_timeout, cafile=s.cafile, certfile=s.certfile,
                          keyfile=s.keyfile, username=s.username, password=s.password)

    def client(self) -> EtcdClient:
        with self._lock:
            if self._client is None:
                self._client = self.new_client()
            return self._client

    def drop(self) -> None:
        """Connect afresh on the next call (e.g. the node's own address just changed). The client
        stays, with its auth token and the endpoint that answered last."""
        with self._lock:
            client = self._client
        if client is not None:
            client.reset()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def call(self, what: str, fn):
        """fn(client). A transport failure drops the kept connections and raises BackendUnavailable;
        a read below the compaction revision raises RevisionCompacted; a request etcd refused
        LeaseError; anything else (a bug, a value we cannot read) goes on as it is."""
        try:
            return fn(self.client())
        except (BackendUnavailable, RevisionCompacted) as err:
            if isinstance(err, BackendUnavailable):
                self.last_error = str(err)
            raise
        except (EtcdUnavailable, EtcdRefused) as err:
            msg = f"etcd {what} at {','.join(self.settings.endpoints)} failed: {describe(err)}"
            self.last_error = msg
            if isinstance(err, EtcdUnavailable):
                self.drop()
                raise BackendUnavailable(msg) from None
            raise LeaseError(msg) from None
