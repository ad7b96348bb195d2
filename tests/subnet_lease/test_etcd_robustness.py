"""The etcd backend when things go wrong: malformed leases, a keeper hit by an error, a lost
transaction, a race lost again and again. Real etcd throughout."""
from __future__ import annotations

import ipaddress
import json
import threading

import pytest

from subnet_lease.backend import BackendUnavailable, LeaseError
from subnet_lease.config import parse_net_config
from subnet_lease.etcd_api import put_op
from subnet_lease.etcd_backend import EtcdLeaseBackend, EtcdSettings
from subnet_lease.etcd_client import EtcdConnection
from subnet_lease.lease import Lease
from watching import Collector, wait_for

CONFIG = parse_net_config('{"Network":"10.244.0.0/19"}')
SMALL = parse_net_config('{"Network":"10.244.0.0/22","SubnetLen":24}')     # 10.244.1-3.0/24


def template(n: int, **kw) -> Lease:
    return Lease(subnet=None, public_ip=ipaddress.ip_address(f"192.0.2.{n}"),
                 backend_data={"VNI": 1, "VtepMAC": f"0a:58:00:00:00:{n:02x}", **kw})


def peer_value(n: int) -> str:
    return json.dumps({"PublicIP": f"192.0.2.{n}", "BackendType": "vxlan",
                       "BackendData": {"VNI": 1, "VtepMAC": f"0a:58:00:00:00:{n:02x}"}})


def lease_ids(etcd_server) -> set[int]:
    """`etcdctl lease list`: every etcd lease the server holds (the server is this module's).

    Compared as numbers: etcdctl zero-pads the hex IDs to 16 digits.
    """
    lines = etcd_server.etcdctl("lease", "list").stdout.splitlines()    # "found N leases", then IDs
    assert lines and lines[0].startswith("found"), lines
    return {int(line.strip(), 16) for line in lines[1:] if line.strip()}


def test_malformed_leases_are_skipped_and_an_overwritten_peer_is_removed(make, etcd_server, etcd_prefix, caplog):
    subnets = f"{etcd_prefix}/subnets"
    me = make()
    mine = me.acquire(CONFIG, template(1))
    # Free /24s for the peers, away from ours.
    free = [f"10.244.{i}.0-24" for i in range(1, 31) if f"10.244.{i}.0-24" != mine.key][:3]
    bad_key, peer_key, late_key = free
    etcd_server.etcdctl("put", f"{subnets}/{bad_key}", '{"PublicIP":"192.0.2.50","BackendData":"oops"}')
    etcd_server.etcdctl("put", f"{subnets}/{peer_key}", peer_value(2))
    leases, revision = me.snapshot()
    assert sorted(x.key for x in leases) == sorted([mine.key, peer_key])     # "oops" never reaches the daemon
    assert "BackendData 'oops' is not a JSON object" in caplog.text and bad_key in caplog.text

    col = Collector(me, revision)
    try:
        etcd_server.etcdctl("put", f"{subnets}/{late_key}",
                            '{"PublicIP":"192.0.2.51","BackendData":{"VNI":1,"VtepMAC":"not-a-mac"}}')
        # The peer's key is overwritten with garbage: running daemons drop the peer ...
        etcd_server.etcdctl("put", f"{subnets}/{peer_key}", '{"PublicIP":"192.0.2.2","BackendData":{"VNI":"x"}}')
        wait_for(lambda: any(kind == "removed" and lease.key == peer_key for kind, lease in col.seen()),
                 what="overwritten peer removed")
        etcd_server.etcdctl("put", f"{subnets}/{free[0]}", peer_value(9))       # a good one again
        wait_for(lambda: any(kind == "added" and lease.key == bad_key for kind, lease in col.seen()),
                 what="repaired key added")
        assert not any(lease.key == late_key for _, lease in col.seen())
        assert [kind for kind, lease in col.seen() if lease.key == peer_key] == ["removed"]
    finally:
        col.close()
    # ... and agree with a daemon started now.
    fresh, _ = make().snapshot()
    assert sorted(x.key for x in fresh) == sorted([mine.key, bad_key])


def test_subnets_held_by_unreadable_keys_are_never_chosen(make, etcd_server, etcd_prefix):
    for i in (1, 2):
        etcd_server.etcdctl("put", f"{etcd_prefix}/subnets/10.244.{i}.0-24", "not json at all")
    got = make(acquire_attempts=1).acquire(SMALL, template(3))
    assert got.key == "10.244.3.0-24"


class HookedConnection(EtcdConnection):
    """The backend's public seam: every store call goes through `call`; `hook` may wrap it."""

    def __init__(self, settings):
        super().__init__(settings)
        self.hook = None

    def call(self, what, fn):
        if self.hook is None:
            return super().call(what, fn)
        return self.hook(what, fn, super().call)


@pytest.fixture
def hooked(etcd_server, etcd_prefix):
    """hooked(**EtcdSettings overrides) -> (backend, its HookedConnection), closed afterwards."""
    made = []

    def make(**overrides):
        settings = EtcdSettings(endpoints=(etcd_server.endpoint,), prefix=etcd_prefix, **overrides)
        conn = HookedConnection(settings)
        made.append(EtcdLeaseBackend(settings, connection=conn))
        return made[-1], conn

    yield make
    for b in made:
        b.close()


def test_keeper_survives_an_unexpected_error_and_acquire_running_beside_it(hooked, etcd_server, etcd_prefix, caplog):
    b, conn = hooked(check_interval=0.2, backoff_initial=0.1, backoff_max=0.5)
    lease = b.acquire(CONFIG, template(4))
    checks, checking, acquiring = [], threading.Event(), threading.Event()
    main = threading.current_thread()

    def hook(what, fn, call):
        if what == "range" and threading.current_thread() is main and checking.is_set():
            acquiring.set()               # acquire() has cleared the own lease and reads now
        if what != "get own key":
            return call(what, fn)
        checks.append(what)
        result = call(what, fn)
        if len(checks) == 1:
            # What acquire() does meanwhile in the daemon's thread (the node's address changed):
            # this check finishes while acquire() runs beside it.
            checking.set()
            acquiring.wait(10)
        if len(checks) == 3:
            raise RuntimeError("something nobody expected")
        return result

    conn.hook = hook
    assert checking.wait(10), "the keeper never checked the own key"
    assert b.acquire(CONFIG, template(4)) == lease                  # the re-acquire finishes
    assert acquiring.is_set()
    wait_for(lambda: len(checks) >= 4, what="the keeper going on after an unexpected error")
    assert "something nobody expected" in caplog.text
    # And it still does its job: a deleted own key comes back.
    etcd_server.etcdctl("del", f"{etcd_prefix}/subnets/{lease.key}")
    wait_for(lambda: b.health().reacquisitions == 1, what="own key re-acquired")
    out = etcd_server.etcdctl("get", f"{etcd_prefix}/subnets/{lease.key}", "--print-value-only").stdout
    assert json.loads(out)["PublicIP"] == "192.0.2.4"


def test_a_failed_transaction_leaves_no_etcd_lease_behind(make, etcd_server, etcd_prefix):
    before = lease_ids(etcd_server)
    # A value bigger than etcd's request limit (1.5 MiB): the grant works, the transaction fails.
    # etcd refuses it (INVALID_ARGUMENT): a LeaseError, not a retryable BackendUnavailable.
    b = make(acquire_attempts=3)
    with pytest.raises(LeaseError, match="request is too large") as err:
        b.acquire(CONFIG, template(5, Padding="x" * 2_000_000))
    assert not isinstance(err.value, BackendUnavailable)
    assert lease_ids(etcd_server) - before == set()
    # The node then starts normally, on exactly one lease for its subnet and one for its
    # quarantine hold (subnet_lease/etcd_quarantine.py).
    lease = b.acquire(CONFIG, template(5))
    new = lease_ids(etcd_server) - before
    assert lease.lease_id in new and len(new) == 2
    held = etcd_server.etcdctl("get", f"{etcd_prefix}/quarantine/{lease.key}", "--print-value-only").stdout
    assert json.loads(held) == {"PublicIP": "192.0.2.5"}


def test_losing_every_race_is_retryable_and_leaks_no_lease(hooked, etcd_server, etcd_prefix):
    subnets = f"{etcd_prefix}/subnets"
    for i in (1, 2):
        etcd_server.etcdctl("put", f"{subnets}/10.244.{i}.0-24", peer_value(100 + i))
    before = lease_ids(etcd_server)
    b, conn = hooked(acquire_attempts=3)

    def racing_peer(what, fn, real_call):
        # Another node takes the one free subnet just before each of our transactions, and
        # gives it up again right after (its own start failed), so every attempt loses.
        if what != "transaction":
            return real_call(what, fn)
        etcd_server.etcdctl("put", f"{subnets}/10.244.3.0-24", peer_value(103))
        try:
            return real_call(what, fn)
        finally:
            etcd_server.etcdctl("del", f"{subnets}/10.244.3.0-24")

    conn.hook = racing_peer
    with pytest.raises(BackendUnavailable, match="after 3 attempts"):   # the daemon retries it
        b.acquire(SMALL, template(3))
    assert lease_ids(etcd_server) - before == set()
    conn.hook = None
    assert b.acquire(SMALL, template(3)).key == "10.244.3.0-24"          # the retry succeeds


def test_a_key_that_is_not_utf8_is_skipped_with_a_warning_naming_it(make, etcd_server, etcd_prefix, caplog):
    subnets = f"{etcd_prefix}/subnets/"
    etcd_server.etcdctl("put", f"{subnets}10.244.1.0-24", peer_value(1))
    etcd_server.etcdctl("put", f"{subnets}bad-\xff".encode("latin-1").decode("utf-8", "surrogateescape"),
                        "{}")
    b = make()
    leases, revision = b.snapshot()                  # start-up reads every key: no crash
    assert [x.key for x in leases] == ["10.244.1.0-24"]
    assert "bad-\\xff" in caplog.text
    col = Collector(b, revision, shape=lambda e: (e.kind, e.lease.key))
    try:
        # In one watch batch: a good lease, the bad key again, another good lease.
        client = b.conn.new_client()
        try:
            client.txn([], [put_op(f"{subnets}10.244.2.0-24", peer_value(2)),
                            put_op(f"{subnets}bad-".encode() + b"\xfe", "{}"),
                            put_op(f"{subnets}10.244.3.0-24", peer_value(3))])
        finally:
            client.close()
        wait_for(lambda: len(col.seen()) >= 2, what="both good leases")
        assert col.seen() == [("added", "10.244.2.0-24"), ("added", "10.244.3.0-24")]
        assert b.health().watch_restarts == 0        # the watch did not reconnect over it
    finally:
        col.close()
