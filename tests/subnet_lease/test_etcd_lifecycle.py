"""Lease lifecycle on a real etcd: races, expiry, deletion, re-acquisition, compaction, etcdctl's view."""
from __future__ import annotations

import base64
import ipaddress
import json
import re
import threading

import pytest

from overlayd.lab.etcd import start_etcd
from subnet_lease.config import parse_net_config
from subnet_lease.etcd_backend import EtcdLeaseBackend, EtcdSettings
from subnet_lease.lease import Lease
from watching import Collector, wait_for


def template(n: int, v6: bool = False) -> Lease:
    return Lease(subnet=None, public_ip=ipaddress.ip_address(f"192.0.2.{n}"),
                 backend_data={"VNI": 1, "VtepMAC": f"0a:58:00:00:00:{n:02x}"},
                 public_ipv6=ipaddress.ip_address(f"2001:db8::{n:x}") if v6 else None,
                 backend_v6_data={"VNI": 1, "VtepMAC": f"0a:58:00:00:01:{n:02x}"} if v6 else {})


CONFIG = parse_net_config('{"Network":"10.244.0.0/19"}')      # 31 candidate /24s: races are likely


def test_twenty_managers_racing_get_distinct_subnets_without_failures(make):
    backends = [make() for _ in range(20)]
    barrier = threading.Barrier(20)
    results, errors = {}, []

    def run(i):
        try:
            barrier.wait()
            results[i] = backends[i].acquire(CONFIG, template(i + 1))
        except Exception as err:  # collected: the assertion below names it
            errors.append(repr(err))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    subnets = [lease.subnet for lease in results.values()]
    assert len(subnets) == 20 and len(set(subnets)) == 20
    leases, _ = backends[0].snapshot()
    assert sorted(str(x.subnet) for x in leases) == sorted(str(s) for s in subnets)
    assert len({x.lease_id for x in leases}) == 20             # one etcd lease per node


def test_expiry_and_deletion_reach_watchers(make, etcd_server, etcd_prefix):
    watcher, short, doomed = make(), make(lease_ttl=5), make()
    watcher.acquire(CONFIG, template(1))
    _, revision = watcher.snapshot()
    col = Collector(watcher, revision)
    try:
        a = short.acquire(CONFIG, template(2))
        b = doomed.acquire(CONFIG, template(3))
        wait_for(lambda: {("added", a), ("added", b)} <= set(col.seen()), what="both peers added")
        short.close()                                # stops renewing: etcd expires the lease in ~5 s
        doomed.close()
        etcd_server.etcdctl("del", f"{etcd_prefix}/subnets/{b.key}")
        wait_for(lambda: ("removed", b) in col.seen(), what="deleted peer removed")
        wait_for(lambda: ("removed", a) in col.seen(), timeout=30, what="expired peer removed")
    finally:
        col.close()


def test_own_key_deleted_or_revoked_is_reacquired_with_the_same_subnet(make, etcd_server, etcd_prefix):
    b = make(check_interval=1.0)
    lease = b.acquire(CONFIG, template(5))
    key = f"{etcd_prefix}/subnets/{lease.key}"

    def current():
        out = etcd_server.etcdctl("get", key, "-w", "json").stdout
        kvs = json.loads(out).get("kvs") or []
        return kvs[0] if kvs else None

    # Deleted by hand: same subnet, and the same (still alive) etcd lease ID.
    etcd_server.etcdctl("del", key)
    kv = wait_for(current, what="key re-created after delete")
    assert kv["lease"] == lease.lease_id
    assert json.loads(base64.b64decode(kv["value"]))["BackendData"]["VtepMAC"] == "0a:58:00:00:00:05"
    wait_for(lambda: b.health().reacquisitions == 1, what="reacquisition counted")

    # Lease revoked (the key goes with it): same subnet on a fresh lease.
    etcd_server.etcdctl("lease", "revoke", format(lease.lease_id, "x"))
    kv = wait_for(lambda: (c := current()) and c["lease"] != lease.lease_id and c, what="key back after revoke")
    assert b.own_lease().subnet == lease.subnet and b.own_lease().lease_id == kv["lease"]
    assert b.health().acquired and b.health().last_error is None


def test_renewal_keeps_the_lease_id_and_refills_the_ttl(make, etcd_server):
    b = make(lease_ttl=6, renew_margin=4.0, check_interval=1.0)
    lease = b.acquire(CONFIG, template(6))
    wait_for(lambda: b.health().renewals >= 2, timeout=20, what="two renewals")
    out = etcd_server.etcdctl("lease", "timetolive", format(lease.lease_id, "x")).stdout
    assert "remaining" in out and "expired" not in out
    assert b.own_lease().lease_id == lease.lease_id


def test_watch_after_compaction_emits_the_difference(make, etcd_server, etcd_prefix):
    me, stays, goes = make(), make(), make()
    me.acquire(CONFIG, template(1))
    gone = goes.acquire(CONFIG, template(2))
    _, revision = me.snapshot()
    # While "we" were not watching: one peer joins, one vanishes, and etcd compacts history.
    joined = stays.acquire(CONFIG, template(3))
    goes.close()
    etcd_server.etcdctl("del", f"{etcd_prefix}/subnets/{gone.key}")
    now = json.loads(etcd_server.etcdctl("get", "x", "-w", "json").stdout)["header"]["revision"]
    etcd_server.etcdctl("compact", str(now))
    col = Collector(me, revision)                    # the watch (re)starts from a compacted revision
    try:
        wait_for(lambda: {("added", joined), ("removed", gone)} <= set(col.seen()), what="resync diff")
        later = make().acquire(CONFIG, template(4))   # and the watch goes on after the resync
        wait_for(lambda: ("added", later) in col.seen(), what="event after resync")
        assert me.health().watch_restarts == 1        # the re-snapshot, for the daemon's metric
    finally:
        col.close()


def test_restart_from_an_old_revision_yields_removal_of_vanished_peers(make, etcd_server, etcd_prefix):
    me, peer = make(), make()
    me.acquire(CONFIG, template(1))
    p = peer.acquire(CONFIG, template(2))
    _, revision = me.snapshot()
    peer.close()
    etcd_server.etcdctl("del", f"{etcd_prefix}/subnets/{p.key}")
    col = Collector(make(), revision)                 # new process: no snapshot cache
    try:
        wait_for(lambda: ("removed", p) in col.seen(), what="vanished peer removed")
    finally:
        col.close()


def test_etcdctl_shows_what_we_report(make, etcd_server, etcd_prefix):
    a, b = make(), make()
    la, lb = a.acquire(CONFIG, template(7)), b.acquire(CONFIG, template(8))
    reserved = next(f"10.244.{i}.0-24" for i in range(30, 0, -1) if f"10.244.{i}.0-24" not in (la.key, lb.key))
    etcd_server.etcdctl("put", f"{etcd_prefix}/subnets/{reserved}",
                        '{"PublicIP":"192.0.2.99","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:58:00:00:00:99"}}')
    ours, _ = a.leases_with_ttl()
    out = etcd_server.etcdctl("get", "--prefix", f"{etcd_prefix}/subnets").stdout.splitlines()
    theirs = dict(zip(out[0::2], out[1::2]))
    assert {f"{etcd_prefix}/subnets/{x.key}": json.loads(x.to_json()) for x in ours} == \
        {k: json.loads(v) for k, v in theirs.items()}
    by_key = {x.key: x for x in ours}
    assert by_key[reserved].lease_id is None                    # a reservation
    for mine in (la, lb):
        out = etcd_server.etcdctl("lease", "timetolive", "--keys", format(mine.lease_id, "x")).stdout
        m = re.search(r"lease ([0-9a-f]+) granted with TTL\((\d+)s\), remaining\((\d+)s\), attached keys\(\[(.*)\]\)", out)
        assert m, out
        assert int(m.group(1), 16) == mine.lease_id and int(m.group(2)) == 86400
        assert abs(int(m.group(3)) - by_key[mine.key].ttl) <= 5
        assert m.group(4) == f"{etcd_prefix}/subnets/{mine.key}"


def test_dual_stack_keys_are_flannels(make, etcd_server, etcd_prefix):
    config = parse_net_config('{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48"}')
    lease = make().acquire(config, template(9, v6=True))
    assert lease.subnet.subnet_of(config.network) and lease.ipv6_subnet.prefixlen == 64
    key = f"{lease.subnet.network_address}-24&{lease.ipv6_subnet.network_address}-64"
    value = json.loads(etcd_server.etcdctl("get", f"{etcd_prefix}/subnets/{key}", "--print-value-only").stdout)
    assert value["PublicIPv6"] == "2001:db8::9" and value["BackendV6Data"]["VtepMAC"] == "0a:58:00:00:01:09"
    # Restart: the same dual-stack lease comes back.
    assert make().acquire(config, template(9, v6=True)) == lease


def test_reservation_is_never_taken_and_own_reservation_is_kept(make, etcd_server, etcd_prefix):
    small = parse_net_config('{"Network":"10.244.0.0/22","SubnetLen":24}')   # 3 subnets
    for i in (1, 2):
        etcd_server.etcdctl("put", f"{etcd_prefix}/subnets/10.244.{i}.0-24",
                            f'{{"PublicIP":"192.0.2.{100 + i}","BackendType":"vxlan"}}')
    got = make().acquire(small, template(1))
    assert str(got.subnet) == "10.244.3.0/24"
    with pytest.raises(Exception, match="Network 10.244.0.0/22 with SubnetLen 24"):
        make().acquire(small, template(2))
    own = make().acquire(small, template(101))       # the node the reservation is for
    assert str(own.subnet) == "10.244.1.0/24" and own.lease_id is None
    out = json.loads(etcd_server.etcdctl("get", f"{etcd_prefix}/subnets/10.244.1.0-24", "-w", "json").stdout)
    assert out["kvs"][0].get("lease", 0) == 0         # still a reservation


def test_etcd_restart_is_survived_by_keeper_and_watch(cleanup):
    server = start_etcd(cleanup)                          # this test's own: it stops and restarts it
    settings = dict(endpoints=(server.endpoint,), prefix="/coreos.com/network", check_interval=0.5,
                    backoff_initial=0.1, backoff_max=1.0, rpc_timeout=3)
    me, peer = EtcdLeaseBackend(EtcdSettings(**settings)), EtcdLeaseBackend(EtcdSettings(**settings))
    cleanup.push("backends", lambda: (me.close(), peer.close()))
    lease = me.acquire(CONFIG, template(1))
    _, revision = me.snapshot()
    col = Collector(me, revision)
    try:
        server.stop()
        wait_for(lambda: me.health().last_error, what="the outage to be noticed")
        server.start()                                    # same port, same data
        p = peer.acquire(CONFIG, template(2))
        wait_for(lambda: ("added", p) in col.seen(), what="watch reconnected")
        wait_for(lambda: me.health().last_error is None, what="keeper recovered")
        assert me.own_lease().lease_id == lease.lease_id and me.health().reacquisitions == 0
        assert me.health().watch_restarts >= 1        # the reconnect, for the daemon's metric
    finally:
        col.close()


def test_changed_network_moves_the_node_and_drops_its_stale_key(make):
    # Each step is one daemon run on the same node: the previous run has stopped.
    first = make()
    old = first.acquire(CONFIG, template(11))
    first.close()
    wider = parse_net_config('{"Network":"10.200.0.0/16"}')
    b = make()
    new = b.acquire(wider, template(11))
    assert new.subnet.subnet_of(wider.network)
    leases, _ = b.snapshot()
    assert [x.key for x in leases] == [new.key] and old.key != new.key
    b.close()
    assert make().acquire(wider, template(11)) == new          # and it stays there
