"""Daemon.handle and FamilyPath.incremental against a fake datapath: plain fakes, no kernel.

The fakes record what the daemon asked of the datapath; the assertions are about the peers a
user would find programmed afterwards.
"""
import ipaddress
import threading

from subnet_lease.lease import Lease, LeaseEvent
from overlayd.daemon import Daemon
from overlayd.datapath import FamilyConfig, FamilyPath
from overlayd.lease_feed import LeaseFeed, Until
from overlayd.netlink import ApplyResult
from overlayd.settings import DaemonSettings


def lease(n, mac=None):
    return Lease(subnet=ipaddress.ip_network(f"10.244.{n}.0/24"),
                 public_ip=ipaddress.ip_address(f"192.0.2.{n}"),
                 backend_data={"VNI": 1, "VtepMAC": mac or f"aa:bb:cc:00:00:{n:02x}"})


OWN = lease(1)


class FakePath:
    """What Daemon.full_reconcile/incremental_reconcile use of a FamilyPath, recording the peers."""

    class cfg:
        family = 4
        device_name = "flannel.1"

    def __init__(self):
        self.programmed = {}
        self.full_calls = []
        self.incremental_calls = []

    def ensure_device(self, mac, own):
        return None

    def full(self, own, peers):
        self.full_calls.append(sorted(p.key for p in peers))
        return None, ApplyResult()

    def incremental(self, own, events):
        self.incremental_calls.append([(e.kind, e.lease.key) for e in events])
        return None, ApplyResult()


class NoStore:
    """A lease backend the loop must never call: handle() runs without the store."""

    def __getattr__(self, name):
        raise AssertionError(f"the reconcile loop called the lease store: {name}")


def daemon_with_fake_path():
    d = Daemon(DaemonSettings(), NoStore())
    d.own = OWN
    d.paths = {4: FakePath()}
    return d, d.paths[4]


def at(kind, payload):
    return (kind, payload, 0.0)


def test_a_snapshot_drops_the_lease_events_queued_before_it():
    d, path = daemon_with_fake_path()
    d.peers = {lease(2).key: lease(2)}
    # Queued: peer 2 removed, peer 3 added; then a snapshot read after both, in which peer 2 was
    # re-added and peer 3 removed again. The snapshot is the truth.
    d.handle([at("leases", [LeaseEvent("removed", lease(2)), LeaseEvent("added", lease(3))]),
              at("snapshot", [OWN, lease(2)])])
    assert set(d.peers) == {OWN.key, lease(2).key}
    assert path.full_calls == [sorted([OWN.key, lease(2).key])]
    assert path.incremental_calls == []


def test_lease_events_after_a_snapshot_apply_on_top_of_it():
    d, path = daemon_with_fake_path()
    d.handle([at("snapshot", [OWN, lease(2), lease(3)]),
              at("leases", [LeaseEvent("removed", lease(3)), LeaseEvent("added", lease(4))])])
    assert set(d.peers) == {OWN.key, lease(2).key, lease(4).key}
    assert path.full_calls == [sorted([OWN.key, lease(2).key, lease(4).key])]


def test_lease_events_alone_take_the_incremental_path_in_arrival_order():
    d, path = daemon_with_fake_path()
    d.handle([at("leases", [LeaseEvent("added", lease(2))]),
              at("leases", [LeaseEvent("removed", lease(2)), LeaseEvent("added", lease(3))])])
    assert set(d.peers) == {lease(3).key}
    assert path.full_calls == []
    assert path.incremental_calls == [[("added", lease(2).key), ("removed", lease(2).key),
                                       ("added", lease(3).key)]]


def test_a_deleted_device_runs_a_full_reconcile_with_every_peer():
    d, path = daemon_with_fake_path()
    d.peers = {lease(2).key: lease(2)}

    class Gone:
        name, index = "flannel.1", 7

    d.handle([at("device", Gone())])
    assert path.full_calls == [[lease(2).key]]


# -- FamilyPath.incremental -----------------------------------------------------------------------
class FakeNetlink:
    """Netlink's apply(), recording each plan."""

    def __init__(self):
        self.plans = []

    def apply(self, plan, device_index, underlay_index):
        self.plans.append(plan)
        return ApplyResult()


class Dev:
    index = 5


def family_path():
    nl = FakeNetlink()
    cfg = FamilyConfig(family=4, device_name="flannel.1", vni=1, port=8472, local_ip="192.0.2.1",
                       underlay_index=2, underlay_mtu=1500, underlay_net=ipaddress.ip_network("192.0.2.0/24"),
                       network=ipaddress.ip_network("10.244.0.0/16"))
    path = FamilyPath(nl, cfg)
    path.device = Dev()
    return path, nl


def test_incremental_adds_a_new_peer_and_skips_ourselves():
    path, nl = family_path()
    path.incremental(OWN, [LeaseEvent("added", OWN), LeaseEvent("added", lease(2))])
    (plan,) = nl.plans
    assert [p.neigh.ip for p in plan.add] == ["10.244.2.0"]
    assert set(path.programmed) == {lease(2).key}


def test_incremental_removes_a_peer_and_the_last_event_for_a_key_wins():
    path, nl = family_path()
    path.incremental(OWN, [LeaseEvent("added", lease(2)), LeaseEvent("added", lease(3))])
    path.incremental(OWN, [LeaseEvent("removed", lease(2)), LeaseEvent("removed", lease(3)),
                           LeaseEvent("added", lease(3))])
    plan = nl.plans[-1]
    assert [r.dst for r in plan.del_routes] == ["10.244.2.0/24"]
    assert plan.add == []                 # peer 3 is unchanged: nothing to do for it
    assert set(path.programmed) == {lease(3).key}


def test_incremental_keeps_an_fdb_entry_another_peer_still_needs():
    path, nl = family_path()
    shared = "aa:bb:cc:00:00:99"
    a = lease(2, mac=shared)
    b = Lease(subnet=ipaddress.ip_network("10.244.3.0/24"), public_ip=ipaddress.ip_address("192.0.2.2"),
              backend_data={"VNI": 1, "VtepMAC": shared})
    path.incremental(OWN, [LeaseEvent("added", a), LeaseEvent("added", b)])
    path.incremental(OWN, [LeaseEvent("removed", a)])
    plan = nl.plans[-1]
    assert plan.del_fdbs == []            # b still reaches the same VTEP
    assert [r.dst for r in plan.del_routes] == ["10.244.2.0/24"]


def test_a_changed_vtep_mac_replaces_the_peers_entries():
    path, nl = family_path()
    path.incremental(OWN, [LeaseEvent("added", lease(2))])
    path.incremental(OWN, [LeaseEvent("added", lease(2, mac="aa:bb:cc:00:00:77"))])
    plan = nl.plans[-1]
    assert [p.neigh.mac for p in plan.add] == ["aa:bb:cc:00:00:77"]
    assert [f.mac for f in plan.del_fdbs] == ["aa:bb:cc:00:00:02"]


# -- the lease feed: the periodic re-read ----------------------------------------------------------
class CountingStore:
    """watch() yields nothing until its stop says so; snapshot() counts the re-reads."""

    def __init__(self):
        self.snapshots = 0
        self.revisions = []

    def watch(self, from_revision, stop):
        self.revisions.append(from_revision)
        while not stop.wait(0.05):
            pass
        return
        yield

    def snapshot(self):
        self.snapshots += 1
        return [lease(self.snapshots + 1)], 100 + self.snapshots


def test_the_feed_re_reads_the_store_every_lease_resync_and_watches_on_from_there():
    store, posted, stop = CountingStore(), [], threading.Event()
    got_two = threading.Event()

    def post(kind, payload):
        posted.append((kind, payload))
        if sum(k == "snapshot" for k, _ in posted) >= 2:
            got_two.set()

    feed = LeaseFeed(store, post, stop, reread_every=0.1)
    t = feed.start_watch(7)
    try:
        assert got_two.wait(10)
    finally:
        stop.set()
        t.join(5)
    assert store.revisions[:3] == [7, 101, 102]
    assert [k for k, _ in posted][:2] == ["snapshot", "snapshot"]


def test_until_is_set_by_its_deadline_or_by_the_outer_flag():
    outer = threading.Event()
    now = [0.0]
    u = Until(outer, 10, clock=lambda: now[0])
    assert not u.is_set()
    now[0] = 10.0
    assert u.is_set() and u.wait(5)
    never = Until(outer, 0)
    assert not never.is_set()
    outer.set()
    assert never.is_set() and never.wait(1)
