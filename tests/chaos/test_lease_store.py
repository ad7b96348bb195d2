"""Scenarios 1 and 2: the lease store stops answering (nftables drops its packets in the switch).

The partitions run side by side (tests/chaos/conftest.py); each test asserts on its own run.
What a user checks: established pod traffic (pings and a TCP stream across nodes), every node's
subnet, kernel entries == leases afterwards, a node joining after the outage is seen by all, and
nothing leaked (fds, threads, child processes, namespaces).
"""
import pytest

from overlayd.lab.scenarios import table

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def assert_nothing_lost_and_kept(r, tcp_gaps=0):
    print(table([r["row"]]), r["pings"], {k: r["tcp"].get(k) for k in ("bps", "retransmits", "gaps")})
    assert r["dropped_packets"] > 0, "the blackhole dropped nothing: the fault never happened"
    assert all(r["subnets_after"][n] == s for n, s in r["subnets_before"].items()), \
        f"a node's subnet changed: {r['subnets_before']} -> {r['subnets_after']}"
    assert r["converge_s"] is not None, f"kernel != leases after the outage: {r['after_problems']}"
    assert r["newcomer_converged"], "a node joining after the outage was not programmed everywhere"
    assert not r["tcp"].get("error"), f"the TCP stream broke: {r['tcp']['error']}"
    assert r["tcp"]["gaps"] <= tcp_gaps, f"the TCP stream stalled for {r['tcp']['gaps']} s: {r['tcp']['intervals']}"
    assert r["leaks"] == [], r["leaks"]


def test_etcd_blackholed_60s(background):
    r = background.result("test_etcd_blackholed_60s", 400)
    assert_nothing_lost_and_kept(r)
    assert r["lost"] == 0, f"pings lost across nodes: {r['pings']}"
    assert not r["store_lost_leases"]
    assert r["kernel_changed_during"] == [], "a node changed its kernel entries while the store was away"


def test_etcd_blackholed_past_lease_ttl(background):
    """The leases expire in etcd during the partition (their owners live on): every owner keeps
    its subnet and datapath meanwhile and takes the same subnet back as soon as etcd answers;
    peers drop an expired peer only once they see the expiry, i.e. after the partition, for the
    moment until its owner re-creates it (docs/chaos.md, "A lease that expires while its owner
    lives")."""
    r = background.result("test_etcd_blackholed_past_lease_ttl", 400)
    assert r["store_lost_leases"], "etcd never expired the leases: the partition was not past the TTL"
    assert r["kernel_changed_during"] == [], "a node tore down entries during the partition"
    # The expiry reaches the peers before the owners' re-creation, which waits for the keeper's
    # next retry (backoff up to 10 s): a blip, bounded by that (see the _with_grace test).
    assert_nothing_lost_and_kept(r, tcp_gaps=15)
    # Pings every 0.1 s: at most 15 s of echoes lost per stream.
    assert max(p["lost"] for p in r["pings"]) <= 150, f"pings lost: {r['pings']}"


def test_etcd_blackholed_past_lease_ttl_with_grace(background):
    """The same with --peer-removal-grace=15: the expiries that reach the peers after the
    partition are held back until the owners' re-creation cancels them: nothing is lost."""
    r = background.result("test_etcd_blackholed_past_lease_ttl_with_grace", 400)
    assert r["store_lost_leases"], "etcd never expired the leases: the partition was not past the TTL"
    assert r["kernel_changed_during"] == []
    assert_nothing_lost_and_kept(r)
    assert r["lost"] == 0, f"pings lost across nodes: {r['pings']}"


def test_owner_alone_cut_off_past_lease_ttl(background):
    """Only the owner loses etcd, past its TTL: etcd expires its lease, the peers drop it (they
    cannot tell a cut-off node from a dead one), the owner keeps its subnet, subnet file and
    datapath, and takes the same subnet back when etcd answers; then everybody converges. A node
    joining during the partition is not handed the owner's subnet (its quarantine key)."""
    r = background.result("test_owner_alone_cut_off_past_lease_ttl", 400)
    print(table([r["row"]]), {k: r.get(k) for k in ("expired_s", "peers_dropped_owner_s", "partition_s")})
    assert r["expired_s"] is not None, "etcd never expired the cut-off owner's lease"
    assert r["peers_dropped_owner_s"] is not None, "peers kept routing to an expired lease"
    assert r["owner_kernel_kept"] and r["owner_subnet_file_kept"], "the owner gave up its subnet while cut off"
    assert r["owner_kept_subnet"], f"the owner came back with another subnet: {r['subnets_after']}"
    assert r["converge_s"] is not None, f"kernel != leases after the partition: {r['problems_after']}"
    # A node joining meanwhile (the only subnet that looked free was the owner's) was not handed
    # it: it waited, named the quarantine, and took the spare once that was released.
    assert r["newcomer_waiting"] and not r["newcomer_subnet"], r.get("newcomer_subnet")
    assert r["newcomer_subnet_after"] not in (None, r["owner_subnet_after"]), r["subnets_after"]
    assert r["leaks"] == [], r["leaks"]


def test_kube_api_unreachable_60s(background):
    r = background.result("test_kube_api_unreachable_60s", 400)
    assert_nothing_lost_and_kept(r)
    assert r["lost"] == 0, f"pings lost across nodes: {r['pings']}"
    assert r["kernel_changed_during"] == [], "a node changed its kernel entries while the API was away"
