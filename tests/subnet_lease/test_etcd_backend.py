"""The etcd backend against a real etcd server: acquire, keep, watch, in flannel's layout."""
from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import threading
import time

import pytest

from overlayd.backend_flags import add_backend_arguments, make_backend
from subnet_lease.backend import LeaseBackend
from subnet_lease.config import ConfigError
from subnet_lease.etcd_backend import EtcdLeaseBackend, EtcdSettings
from subnet_lease.lease import Lease

NETCONF = '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}'


def template(n: int) -> Lease:
    return Lease(subnet=None, public_ip=ipaddress.ip_address(f"192.0.2.{n}"),
                 backend_data={"VNI": 1, "VtepMAC": f"0a:58:00:00:00:{n:02x}"})


@pytest.fixture
def backends(etcd_server, etcd_prefix, make):
    """`make` (conftest.py) on a prefix whose <prefix>/config holds NETCONF."""
    etcd_server.etcdctl("put", f"{etcd_prefix}/config", NETCONF)
    return make


def next_batch(it, timeout=15.0):
    """The next batch from a watch generator running in a thread."""
    out = []
    t = threading.Thread(target=lambda: out.append(next(it)), daemon=True)
    t.start()
    t.join(timeout)
    assert out, "no watch event arrived"
    return out[0]


def test_flags_build_an_etcd_backend_that_satisfies_the_protocol(etcd_server, etcd_prefix):
    parser = argparse.ArgumentParser()
    add_backend_arguments(parser)
    args = parser.parse_args(["--etcd-endpoints", etcd_server.endpoint, "--etcd-prefix", etcd_prefix])
    backend = make_backend(args)
    try:
        assert isinstance(backend, LeaseBackend)
        assert backend.settings.renew_margin == 3600 and backend.settings.lease_ttl == 86400
    finally:
        backend.close()
    bad = parser.parse_args(["--subnet-lease-renew-margin", "1440"])
    with pytest.raises(ConfigError, match="renew-margin 1440"):
        make_backend(bad)
    with pytest.raises(ConfigError, match="not an etcd URL"):
        make_backend(parser.parse_args(["--etcd-endpoints", "ftp://x"]))


def test_acquire_writes_flannels_key_and_json_on_one_lease(etcd_server, etcd_prefix, backends):
    b = backends()
    config = b.get_network_config()
    assert str(config.network) == "10.244.0.0/16" and config.subnet_len == 24
    lease = b.acquire(config, template(1))
    assert lease.subnet.subnet_of(config.network) and lease.subnet.prefixlen == 24
    assert lease.lease_id and lease.ttl > 86000

    key = f"{etcd_prefix}/subnets/{lease.subnet.network_address}-24"
    out = etcd_server.etcdctl("get", "--prefix", f"{etcd_prefix}/subnets", "-w", "json").stdout
    kvs = json.loads(out)["kvs"]
    assert len(kvs) == 1
    import base64
    assert base64.b64decode(kvs[0]["key"]).decode() == key
    assert json.loads(base64.b64decode(kvs[0]["value"])) == {
        "PublicIP": "192.0.2.1", "BackendType": "vxlan",
        "BackendData": {"VNI": 1, "VtepMAC": "0a:58:00:00:00:01"}}
    assert kvs[0]["lease"] == lease.lease_id

    # The protocol's read side: the daemon finds its own lease (VTEP MAC) and the snapshot.
    own = b.find_own_lease(ipaddress.ip_address("192.0.2.1"))
    assert own == lease and own.vtep_mac == "0a:58:00:00:00:01"
    leases, revision = b.snapshot()
    assert leases == [lease] and revision > 0
    health = b.health()
    assert health.acquired and health.subnet == lease.subnet and health.ttl_left > 86000


def test_restart_keeps_subnet_and_lease_id(backends):
    first = backends()
    config = first.get_network_config()
    lease = first.acquire(config, template(2))
    first.close()
    second = backends()
    again = second.acquire(config, template(2))
    assert again.subnet == lease.subnet and again.lease_id == lease.lease_id


def test_watch_sees_peers_come_and_go(etcd_server, etcd_prefix, backends):
    me, peer = backends(), backends()
    config = me.get_network_config()
    me.acquire(config, template(3))
    _, revision = me.snapshot()
    stop = threading.Event()
    it = me.watch(revision, stop)
    try:
        peer_lease = peer.acquire(config, template(4))
        batch = next_batch(it)
        assert [(e.kind, e.lease) for e in batch] == [("added", peer_lease)]
        etcd_server.etcdctl("del", f"{etcd_prefix}/subnets/{peer_lease.key}")
        batch = next_batch(it)
        assert [(e.kind, e.lease.public_ip) for e in batch] == [("removed", peer_lease.public_ip)]
        assert batch[0].lease.vtep_mac == "0a:58:00:00:00:04"
    finally:
        stop.set()
        t0 = time.monotonic()
        it.close()
        assert time.monotonic() - t0 < 10


def test_missing_network_config_names_the_key_and_fix(etcd_server, etcd_prefix):
    b = EtcdLeaseBackend(EtcdSettings(endpoints=(etcd_server.endpoint,), prefix=etcd_prefix))
    try:
        with pytest.raises(ConfigError, match=f"no network config at {etcd_prefix}/config.*etcdctl put"):
            b.get_network_config()
    finally:
        b.close()


@pytest.mark.parametrize("prefetch", [False, True], ids=["plain", "prefetched"])
def test_a_start_up_reads_the_leases_once_and_its_snapshot_watch_misses_nothing(etcd_server, etcd_prefix, backends,
                                                                                 prefetch):
    first = backends()
    config = first.get_network_config()
    mine_before = first.acquire(config, template(3))          # this node ran before: its key exists
    me = backends()                                            # ... and now starts again
    reads_before = me.reads.count                              # full reads of the subnets prefix
    if prefetch:                      # overlayd reads while it imports (overlayd.start_up): still one read
        me.prefetch()
    # the daemon's start-up: find our lease, acquire, snapshot; a peer arrives in between
    assert me.find_own_lease(template(3).public_ip) == dataclasses.replace(mine_before, ttl=None)
    late = backends()
    late_lease = late.acquire(config, template(8))
    mine = me.acquire(config, template(3))
    leases, revision = me.snapshot(reuse_start_read=True)
    assert mine.subnet == mine_before.subnet
    assert me.reads.count - reads_before == 1                  # was 3: find, acquire, snapshot
    assert mine.key in {x.key for x in leases}                 # our own write is in it
    stop = threading.Event()
    it = me.watch(revision, stop)
    try:
        batch = next_batch(it)                                 # the late peer, replayed; not us
        assert [(e.kind, e.lease.key) for e in batch] == [("added", late_lease.key)]
    finally:
        stop.set()
        it.close()
    fresh, _ = me.snapshot()                                   # a plain snapshot reads again
    assert {x.key for x in fresh} == {x.key for x in leases} | {late_lease.key}
