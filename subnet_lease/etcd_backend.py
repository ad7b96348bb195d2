"""Subnet leases in etcd v3, in flannel's layout.

    <prefix>/config                     net-conf.json
    <prefix>/subnets/10.244.3.0-24      {"PublicIP":..,"BackendType":"vxlan","BackendData":{..}}

A node's key is attached to one etcd lease (TTL 24 h by default) whose ID stays stable: the
keeper thread keeps it alive with keep-alives (not new grants), so `etcdctl lease timetolive
--keys` keeps showing the same lease and key. Keys without an etcd lease are reservations.

Acquiring is a create-if-absent transaction; the subnet comes from the pure allocator. Losing a
race is retried (bounded; then AcquireContended, a BackendUnavailable the daemon retries later),
and an etcd lease granted for an attempt that did not keep it is revoked. Because two different
key strings can cover the same addresses (a dual-stack key and a v4-only one, or a changed
SubnetLen), a successful create is checked once more for overlaps and the younger key backs off.

Watching is snapshot-then-watch from revision + 1 with prev_kv (so a removal carries the lease
that went away); a key overwritten with a value we cannot parse is the removal of the lease it
held, as a fresh snapshot would see it. If etcd has compacted the revision we need, we
re-snapshot and emit the difference against what we knew (mark-and-sweep), as Calico's
etcdutils does.
"""
from __future__ import annotations

import dataclasses
import logging
import queue
import random
import threading
import time
import urllib.parse
from typing import Callable, Iterator, Optional

import grpc
from pyetcd import events as etcd_events
from pyetcd import exceptions as etcd_exc
from pyetcd.client import Endpoint, MultiEndpointEtcd3Client

from .allocator import PoolExhausted, choose_subnet, find_own, is_own, overlaps
from .backend import AcquireContended, BackendUnavailable, LeaseError, LeaseHealth, diff_leases
from .backoff import Backoff
from .config import ConfigError, NetConfig, parse_net_config
from .lease import Lease, LeaseEvent, LeaseFormatError, lease_from_json, parse_subnet_key

log = logging.getLogger(__name__)

DEFAULT_ENDPOINTS = ("http://127.0.0.1:4001", "http://127.0.0.1:2379")

# HTTP/2 keepalive pings, so a connection that died silently (the node's address went away, a
# firewall dropped state) fails within ~15 s instead of leaving a watch waiting forever (etcd
# accepts pings every 5 s or slower, --grpc-keepalive-min-time). A subchannel pool of each
# channel's own: gRPC otherwise shares connections between identical channels, and the fresh
# client reconnect() makes would get the dead connection back.
GRPC_OPTIONS = [("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0),
                ("grpc.use_local_subchannel_pool", 1)]


# How old a read handed from one start-up step to the next may be (see EtcdLeaseBackend._handed).
HANDED_READ_MAX_AGE = 5.0


@dataclasses.dataclass(frozen=True)
class EtcdSettings:
    endpoints: tuple[str, ...] = DEFAULT_ENDPOINTS
    prefix: str = "/coreos.com/network"
    cafile: Optional[str] = None
    certfile: Optional[str] = None
    keyfile: Optional[str] = None
    username: Optional[str] = None
    password: Optional[str] = None
    lease_ttl: int = 86400               # seconds; flannel's subnet lease TTL is 24 h
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
                              f"e.g. /coreos.com/network")
        if bool(self.certfile) != bool(self.keyfile):
            raise ConfigError("--etcd-certfile and --etcd-keyfile go together: give both or neither")
        if bool(self.username) != bool(self.password):
            raise ConfigError("--etcd-username and --etcd-password go together: give both or neither")
        if self.lease_ttl < 5:
            raise ConfigError(f"lease TTL {self.lease_ttl}s is too short: use at least 5 seconds")

    @property
    def subnets_prefix(self) -> str:
        return self.prefix.rstrip("/") + "/subnets/"

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


_UNAVAILABLE = (etcd_exc.ConnectionFailedError, etcd_exc.ConnectionTimeoutError,
                etcd_exc.NoServerAvailableError, etcd_exc.InternalServerError,
                etcd_exc.WatchTimedOut, grpc.RpcError, ValueError, OSError)


def _describe(err: BaseException) -> str:
    if isinstance(err, grpc.RpcError) and hasattr(err, "details"):
        try:
            return f"{err.code().name}: {err.details()}"
        except Exception:  # a grpc error without a status
            pass
    return str(err) or type(err).__name__


class _KeyWatch:
    def __init__(self) -> None:
        self.failed = False
        self.key: Optional[str] = None
        self.cancel_fn: Optional[Callable[[], None]] = None

    def cancel(self) -> None:
        try:
            if self.cancel_fn:
                self.cancel_fn()
        except Exception:
            pass


@dataclasses.dataclass
class _Own:
    lease: Lease
    full_key: str
    config: NetConfig
    template: Lease
    expires_at: float          # time.monotonic() when the etcd lease would expire unrenewed
    renewed_at: float


class EtcdLeaseBackend:
    def __init__(self, settings: EtcdSettings, *, rng: Optional[random.Random] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._rng = rng or random.Random()
        self._clock = clock
        self._client_lock = threading.Lock()
        self._client_obj: Optional[MultiEndpointEtcd3Client] = None
        self._state_lock = threading.Lock()
        self._own: Optional[_Own] = None
        self._renewals = 0
        self._reacquisitions = 0
        self._last_error: Optional[str] = None
        self._watch_restarts = 0
        self._on_change: Optional[Callable[[Lease], None]] = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._keeper: Optional[threading.Thread] = None
        self._snap_cache: Optional[tuple[int, dict[str, Lease]]] = None
        # One full read handed on to the next step of a start-up (find_own_lease -> acquire ->
        # snapshot), so a daemon reads 5,000 leases once, not three times: (monotonic, read).
        self._handed: Optional[tuple[float, tuple]] = None

    # ---- connection -------------------------------------------------------------------

    def _new_client(self) -> MultiEndpointEtcd3Client:
        s = self.settings
        endpoints = []
        for url in s.endpoints:
            scheme, host, port = parse_endpoint(url)
            creds = None
            if scheme == "https":
                creds = MultiEndpointEtcd3Client.get_secure_creds(s.cafile, s.keyfile, s.certfile) \
                    if s.cafile else grpc.ssl_channel_credentials(
                        None, *(_read(s.keyfile), _read(s.certfile)) if s.certfile else (None, None))
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
                                     f"connection failed ({_describe(err)})") from None
        if not any(ep.secure for ep in endpoints):
            # gRPC refuses call credentials on a plain channel; etcd only needs the token,
            # which the client also sends as metadata.
            client.call_credentials = None
        return client

    def _client(self) -> MultiEndpointEtcd3Client:
        with self._client_lock:
            if self._client_obj is None:
                self._client_obj = self._new_client()
            return self._client_obj

    def reconnect(self) -> None:
        """Open a fresh connection on the next call (e.g. the node's own address just changed)."""
        self._drop_client()

    def _drop_client(self) -> None:
        with self._client_lock:
            client, self._client_obj = self._client_obj, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass

    def _call(self, what: str, fn):
        """Run fn(client); a connection/auth failure drops the client and raises BackendUnavailable."""
        try:
            return fn(self._client())
        except BackendUnavailable as err:
            self._last_error = str(err)
            raise
        except _UNAVAILABLE as err:
            self._drop_client()
            msg = f"etcd {what} at {','.join(self.settings.endpoints)} failed: {_describe(err)}"
            self._last_error = msg
            raise BackendUnavailable(msg) from None

    # ---- reading ------------------------------------------------------------------------

    def get_network_config(self) -> NetConfig:
        key = self.settings.config_key
        value, _ = self._call("get config", lambda c: c.get(key))
        if value is None:
            raise ConfigError(f"no network config at {key}: write one, e.g. etcdctl put {key} "
                              f"'{{\"Network\":\"10.244.0.0/16\",\"Backend\":{{\"Type\":\"vxlan\"}}}}'")
        try:
            return parse_net_config(value)
        except ConfigError as err:
            raise ConfigError(f"{key}: {err}") from None

    def _read(self, revision: Optional[int] = None) -> tuple[dict[str, Lease], dict[str, object], int]:
        """key -> Lease, key -> raw kv (for revisions), and the store revision."""
        leases, raw, _, rev = self._read_all(revision)
        return leases, raw, rev

    def _read_all(self, revision: Optional[int] = None
                  ) -> tuple[dict[str, Lease], dict[str, object], list[Lease], int]:
        """As _read, plus a placeholder for each key whose value we cannot parse: it is no peer
        (it is skipped with a warning), but its subnet is still taken, so we never choose it."""
        kwargs = {"revision": revision} if revision else {}
        resp = self._call("range", lambda c: c.get_prefix_response(self.settings.subnets_prefix, **kwargs))
        leases, raw, unparsed = {}, {}, []
        for kv in resp.kvs:
            key = kv.key.decode()
            try:
                lease = lease_from_json(key, kv.value, lease_id=kv.lease or None)
            except LeaseFormatError as err:
                log.warning("ignoring %s", err)
                try:
                    v4, v6 = parse_subnet_key(key)
                    unparsed.append(Lease(subnet=v4, public_ip=None, ipv6_subnet=v6))
                except LeaseFormatError:
                    pass
                continue
            leases[key] = lease
            raw[key] = kv
        return leases, raw, unparsed, resp.header.revision

    def _hand_on(self, read: tuple, to: str) -> None:
        self._handed = (time.monotonic(), to, read)

    def _take_handed(self, step: str) -> Optional[tuple]:
        """The read the previous step handed on to `step` ("acquire" or "snapshot"), once, if it
        is recent. Safe to use stale: the acquire transaction compares revisions, and a watch
        from the snapshot's revision replays the rest."""
        handed, self._handed = self._handed, None
        if handed is not None and handed[1] == step and time.monotonic() - handed[0] <= HANDED_READ_MAX_AGE:
            return handed[2]
        return None

    def snapshot(self, *, reuse_start_read: bool = False) -> tuple[list[Lease], int]:
        handed = self._take_handed("snapshot")
        leases, _, _, revision = (handed if reuse_start_read else None) or self._read_all()
        self._snap_cache = (revision, leases)
        return list(leases.values()), revision

    def find_own_lease(self, public_ip) -> Optional[Lease]:
        read = self._read_all()
        self._hand_on(read, to="acquire")
        return find_own(read[0].values(), public_ip)

    def leases_with_ttl(self) -> tuple[list[Lease], int]:
        """Every lease with the seconds left on its etcd lease (for `overlayd leases`)."""
        leases, _, revision = self._read()
        ttls: dict[int, int] = {}
        for lease_id in {lease.lease_id for lease in leases.values() if lease.lease_id}:
            info = self._call("lease timetolive", lambda c: c.get_lease_info(lease_id))
            ttls[lease_id] = info.TTL
        return [dataclasses.replace(lease, ttl=ttls.get(lease.lease_id)) if lease.lease_id else lease
                for lease in leases.values()], revision

    # ---- acquiring -----------------------------------------------------------------------

    def _keepalive(self, lease_id: int) -> int:
        """Refresh an etcd lease; its TTL after the refresh (<= 0: the lease is gone)."""
        responses = self._call("lease keep-alive", lambda c: list(c.refresh_lease(lease_id)))
        return responses[0].TTL if responses else 0

    def _grant(self) -> tuple[int, int]:
        grant = self._call("lease grant", lambda c: c.lease(self.settings.lease_ttl))
        return grant.id, grant.ttl

    def _revoke(self, lease_id: int) -> None:
        """Best effort: an etcd lease we granted but do not use would otherwise live 24 h."""
        try:
            self._call("lease revoke", lambda c: c.revoke_lease(lease_id))
            log.info("revoked unused etcd lease %x", lease_id)
        except Exception as err:  # the store is away: the lease expires after its TTL
            log.warning("could not revoke unused etcd lease %x: %s", lease_id, err)

    def _take(self, config: NetConfig, template: Lease, previous_subnet, previous_ipv6_subnet,
              reuse_lease_id: Optional[int]) -> tuple[Lease, str]:
        """One subnet, written; retried (bounded) when another node wins a race.

        An etcd lease granted here is carried from a lost attempt into the next one, and revoked
        if we end up not using it (a failure, or the key kept an older lease), so a node never
        leaves a second lease behind for 24 h.
        """
        granted: list[int] = []          # etcd leases this call granted (at most one)
        used: Optional[int] = None
        try:
            lease, key = self._take_attempts(config, template, previous_subnet, previous_ipv6_subnet,
                                             reuse_lease_id, granted)
            used = lease.lease_id
            return lease, key
        finally:
            for lease_id in granted:
                if lease_id != used:
                    self._revoke(lease_id)

    def _take_attempts(self, config: NetConfig, template: Lease, previous_subnet,
                       previous_ipv6_subnet, reuse_lease_id: Optional[int],
                       granted: list[int]) -> tuple[Lease, str]:
        s = self.settings
        last_conflict = "none"
        for attempt in range(s.acquire_attempts):
            read = (self._take_handed("acquire") if attempt == 0 else None) or self._read_all()
            leases, raw, unparsed, _ = read
            choice = choose_subnet(config, list(leases.values()) + unparsed, template.public_ip,
                                   public_ipv6=template.public_ipv6,
                                   previous_subnet=previous_subnet,
                                   previous_ipv6_subnet=previous_ipv6_subnet,
                                   own_lease_id=reuse_lease_id, rng=self._rng)
            new = dataclasses.replace(template, subnet=choice.subnet, ipv6_subnet=choice.ipv6_subnet,
                                      lease_id=None, ttl=None)
            key = s.subnets_prefix + new.key
            tx = None
            lease_id, ttl = None, None
            if choice.existing is not None:
                kv = raw[s.subnets_prefix + choice.existing.key]
                if choice.existing.lease_id is None:
                    lease_id = 0                                 # our reservation: stays one
                else:
                    left = self._keepalive(choice.existing.lease_id)
                    if left > 0:
                        lease_id, ttl = choice.existing.lease_id, left
                tx = lambda c, kv=kv: c.transactions.mod(key) == kv.mod_revision  # noqa: E731
            else:
                tx = lambda c: c.transactions.create(key) == 0  # noqa: E731
            if lease_id is None and reuse_lease_id:
                left = self._keepalive(reuse_lease_id)
                if left > 0:
                    lease_id, ttl = reuse_lease_id, left
            if lease_id is None:
                lease_id, ttl = self._grant()
                granted.append(lease_id)
            value = new.to_json()
            ok, _ = self._call("transaction", lambda c: c.transaction(
                compare=[tx(c)], success=[c.transactions.put(key, value, lease=lease_id or None)],
                failure=[]))
            if ok and choice.existing is None and self._younger_overlap(key, new):
                ok = False
            if ok:
                dropped = self._drop_stale_own(leases, raw, new, template)
                # For the snapshot that follows: the read as it is now that our writes are done
                # (at its old revision, so a watch from there replays them, and finds them known).
                after = {k: v for k, v in leases.items() if k not in dropped}
                after[key] = dataclasses.replace(new, lease_id=lease_id or None)
                self._hand_on((after, raw, unparsed, read[3]), to="snapshot")
                return dataclasses.replace(new, lease_id=lease_id or None, ttl=ttl), key
            last_conflict = new.key
            reuse_lease_id = lease_id or reuse_lease_id
            log.info("subnet %s was taken by another node meanwhile; retrying", new.key)
            time.sleep(self._rng.uniform(0, 0.02 * (attempt + 1)))
        # Retryable (BackendUnavailable): the daemon's start-up retry and the keeper try again later.
        raise AcquireContended(f"could not acquire a subnet after {s.acquire_attempts} attempts: other "
                               f"nodes kept taking the chosen one (last: {last_conflict}); retrying "
                               f"later; if this persists, is something writing {s.subnets_prefix} "
                               f"in a loop?")

    def _drop_stale_own(self, leases: dict, raw: dict, new: Lease, template: Lease) -> list[str]:
        """Our older keys that the config no longer allows (flannel deletes them too); -> their keys."""
        dropped = []
        for key, lease in leases.items():
            if (key != self.settings.subnets_prefix + new.key and lease.lease_id is not None
                    and is_own(lease, template.public_ip, template.public_ipv6)):
                log.info("deleting our stale lease %s", lease.key)
                kv = raw[key]
                self._call("delete", lambda c: c.transaction(
                    compare=[c.transactions.mod(key) == kv.mod_revision],
                    success=[c.transactions.delete(key)], failure=[]))
                dropped.append(key)
        return dropped

    def _younger_overlap(self, key: str, new: Lease) -> bool:
        """After a create: does an older key cover the same addresses? Then ours backs off."""
        _, raw, _ = self._read()
        mine = raw.get(key)
        if mine is None:
            return True
        for other_key, kv in raw.items():
            if other_key == key:
                continue
            try:
                other = lease_from_json(other_key, kv.value)
            except LeaseFormatError:
                continue
            if overlaps(other, new) and kv.create_revision < mine.create_revision:
                self._call("delete", lambda c: c.transaction(
                    compare=[c.transactions.mod(key) == mine.mod_revision],
                    success=[c.transactions.delete(key)], failure=[]))
                return True
        return False

    def acquire(self, config: NetConfig, template: Lease, previous_subnet=None, *,
                previous_ipv6_subnet=None,
                on_change: Optional[Callable[[Lease], None]] = None) -> Lease:
        if template.public_ip is None and template.public_ipv6 is None:
            raise LeaseError("the lease template needs the node's public IP")
        with self._state_lock:
            # Acquiring again (e.g. the node's address changed): the keeper pauses while we
            # rewrite our key, so it cannot "repair" it back to the old value meanwhile.
            held, self._own = self._own, None
        try:
            lease, key = self._take(config, template, previous_subnet, previous_ipv6_subnet,
                                    held.lease.lease_id if held is not None else None)
        except BaseException:
            with self._state_lock:
                if self._own is None:
                    self._own = held
            raise
        now = self._clock()
        with self._state_lock:
            self._own = _Own(lease, key, config, template, now + (lease.ttl or 0), now)
            self._on_change = on_change
            self._last_error = None
        log.info("acquired %s (etcd lease %s)", lease.key, lease.lease_id or "none: reservation")
        if self._keeper is None:
            self._stop.clear()
            self._keeper = threading.Thread(target=self._keep, name="etcd-lease-keeper", daemon=True)
            self._keeper.start()
        return lease

    def own_lease(self) -> Optional[Lease]:
        with self._state_lock:
            return self._own.lease if self._own else None

    # ---- keeping -------------------------------------------------------------------------

    def _renew_due(self, own: _Own) -> float:
        """Monotonic time of the next keep-alive: `renew_margin` before expiry, at most half-way."""
        ttl = own.expires_at - own.renewed_at
        margin = min(self.settings.renew_margin, ttl / 2)
        return own.expires_at - margin

    def _keep(self) -> None:
        backoff = Backoff(self.settings.backoff_initial, self.settings.backoff_max, rng=self._rng)
        key_watch: Optional[_KeyWatch] = None
        while not self._stop.is_set():
            with self._state_lock:
                own = self._own
            if own is None:
                self._stop.wait(1.0)
                continue
            delay = 1.0
            try:
                if key_watch is None or key_watch.failed or key_watch.key != own.full_key:
                    if key_watch:
                        key_watch.cancel()
                    key_watch = self._watch_own_key(own.full_key)
                    key_watch.key = own.full_key
                self._check(own)
                backoff.reset()
                delay = self.settings.check_interval
                if own.lease.lease_id:
                    # `own`, not self._own: acquire() sets that to None while it re-acquires.
                    delay = min(delay, max(0.0, self._renew_due(own) - self._clock()))
            except Exception as err:
                # Whatever goes wrong, the keeper must live on: a dead keeper lets the lease
                # expire 24 h later with nobody noticing.
                self._last_error = str(err) or type(err).__name__
                if isinstance(err, (BackendUnavailable, LeaseError, PoolExhausted)):
                    log.warning("keeping lease %s: %s", own.lease.key, err)
                else:
                    log.exception("keeping lease %s: unexpected error; retrying", own.lease.key)
                if key_watch:
                    key_watch.cancel()
                key_watch = None
                delay = backoff.next()
            self._wake.wait(delay)
            self._wake.clear()
        if key_watch:
            key_watch.cancel()

    def _watch_own_key(self, key: str) -> "_KeyWatch":
        """Wake the keeper as soon as the own key changes or goes (the periodic check is the net)."""
        kw = _KeyWatch()

        def on_event(response):
            if response is None or isinstance(response, Exception):
                kw.failed = True
            self._wake.set()

        client = self._client()
        watch_id = self._call("watch own key", lambda c: c.add_watch_callback(key, on_event))
        kw.cancel_fn = lambda: client.cancel_watch(watch_id)
        return kw

    def _check(self, own: _Own) -> None:
        """Renew when due; re-acquire (same subnet preferred, same lease ID if alive) if the key vanished."""
        now = self._clock()
        lease_id = own.lease.lease_id
        if lease_id and now >= self._renew_due(own):
            left = self._keepalive(lease_id)
            if left > 0:
                with self._state_lock:
                    if self._own is own:
                        own.renewed_at, own.expires_at = now, now + left
                        self._renewals += 1
            else:
                log.warning("etcd lease %x of %s is gone (expired or revoked)", lease_id, own.lease.key)
                lease_id = None
        value, meta = self._call("get own key", lambda c: c.get(own.full_key))
        intact = (value is not None and (meta.lease_id or None) == own.lease.lease_id
                  and lease_id == own.lease.lease_id)
        if intact:
            try:
                intact = lease_from_json(own.full_key, value) == dataclasses.replace(
                    own.lease, lease_id=None, ttl=None)
            except LeaseFormatError:
                intact = False
        if intact:
            self._last_error = None
            return
        log.warning("own lease %s vanished or changed in etcd; re-acquiring it", own.lease.key)
        lease, key = self._take(own.config, own.template, own.lease.subnet, own.lease.ipv6_subnet,
                                lease_id)
        now = self._clock()
        with self._state_lock:
            if self._own is not own:
                return
            self._own = _Own(lease, key, own.config, own.template, now + (lease.ttl or 0), now)
            self._reacquisitions += 1
            self._last_error = None
            callback = self._on_change
        log.info("re-acquired %s (etcd lease %s)", lease.key, lease.lease_id)
        if callback is not None and (lease.subnet, lease.ipv6_subnet) != (own.lease.subnet,
                                                                          own.lease.ipv6_subnet):
            callback(lease)

    def health(self) -> LeaseHealth:
        with self._state_lock:
            own = self._own
            if own is None:
                return LeaseHealth(acquired=False, last_error=self._last_error,
                                   watch_restarts=self._watch_restarts)
            ttl_left = None
            if own.lease.lease_id:
                ttl_left = max(0.0, own.expires_at - self._clock())
            return LeaseHealth(acquired=True, subnet=own.lease.subnet,
                               ipv6_subnet=own.lease.ipv6_subnet, lease_id=own.lease.lease_id,
                               ttl_left=ttl_left, renewals=self._renewals,
                               reacquisitions=self._reacquisitions, last_error=self._last_error,
                               watch_restarts=self._watch_restarts)

    # ---- watching ------------------------------------------------------------------------

    def _known_at(self, revision: int) -> Optional[dict[str, Lease]]:
        cache = self._snap_cache
        if cache is not None and cache[0] == revision:
            return dict(cache[1])
        try:
            leases, _, _ = self._read(revision)
            return leases
        except BackendUnavailable as err:
            if "compacted" in str(err):
                return None
            raise

    def watch(self, from_revision: int, stop: threading.Event) -> Iterator[list[LeaseEvent]]:
        """Changes after `from_revision` (snapshot()'s revision), in batches, until `stop` is set."""
        s = self.settings
        backoff = Backoff(s.backoff_initial, s.backoff_max, rng=self._rng)
        revision = from_revision
        known: Optional[dict[str, Lease]] = None
        while not stop.is_set():
            client = None
            watch_id = None
            try:
                if known is None:
                    known = self._known_at(revision)
                    if known is None:   # that revision is compacted: resync below
                        raise etcd_exc.RevisionCompactedError(0)
                client = self._new_client()
                responses: queue.Queue = queue.Queue()
                watch_id = client.add_watch_prefix_callback(
                    s.subnets_prefix, responses.put, start_revision=revision + 1, prev_kv=True)
                backoff.reset()
                while not stop.is_set():
                    try:
                        item = responses.get(timeout=0.5)
                    except queue.Empty:
                        continue
                    if isinstance(item, Exception):
                        raise item
                    if item is None:
                        raise BackendUnavailable("the watch stream was closed by the server")
                    batch = self._apply(item.events, known)
                    for ev in item.events:
                        revision = max(revision, ev.mod_revision)
                    if batch:
                        yield batch
            except etcd_exc.RevisionCompactedError:
                # The events between our revision and the compaction are gone for good. Read the
                # whole state again and emit what differs from what we knew (mark and sweep).
                log.warning("etcd revision %d is compacted; re-reading all leases", revision + 1)
                self._count_restart()
                try:
                    fresh, _, new_revision = self._read()
                except BackendUnavailable as err:
                    log.warning("watch: %s", err)
                    stop.wait(backoff.next())
                    continue
                events = diff_leases(known or {}, fresh)
                known, revision = fresh, new_revision
                if events:
                    yield events
            except (BackendUnavailable, *_UNAVAILABLE) as err:
                log.warning("watching %s: %s; reconnecting", s.subnets_prefix, _describe(err))
                self._count_restart()
                self._last_error = f"watch: {_describe(err)}"
                stop.wait(backoff.next())
            finally:
                if client is not None:
                    if watch_id is not None:
                        try:
                            client.cancel_watch(watch_id)
                        except Exception:
                            pass
                    try:
                        client.close()
                    except Exception:
                        pass

    def _count_restart(self) -> None:
        with self._state_lock:
            self._watch_restarts += 1

    @staticmethod
    def _apply(events, known: dict[str, Lease]) -> list[LeaseEvent]:
        batch = []
        for ev in events:
            key = ev.key.decode()
            if isinstance(ev, etcd_events.DeleteEvent):
                old = known.pop(key, None)
                if old is None and ev._event.HasField("prev_kv"):
                    try:
                        old = lease_from_json(key, ev._event.prev_kv.value)
                    except LeaseFormatError:
                        old = None
                if old is not None:
                    batch.append(LeaseEvent("removed", old))
                continue
            try:
                lease = lease_from_json(key, ev.value, lease_id=ev.lease or None)
            except LeaseFormatError as err:
                # Overwritten with something we cannot read: the lease it replaced is gone, as a
                # fresh snapshot (a restarted daemon) would see it.
                log.warning("ignoring %s", err)
                old = known.pop(key, None)
                if old is not None:
                    batch.append(LeaseEvent("removed", old))
                continue
            if known.get(key) != lease:
                batch.append(LeaseEvent("added", lease))
            known[key] = lease
        return batch

    # ---- end -----------------------------------------------------------------------------

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._keeper is not None:
            self._keeper.join(timeout=self.settings.rpc_timeout + 5)
            self._keeper = None
        self._drop_client()


def _read(path: Optional[str]) -> Optional[bytes]:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()
