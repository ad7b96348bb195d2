"""--peer-removal-grace bookkeeping (overlayd/peer_grace.py): pure, with a hand-driven clock."""
import ipaddress

from overlayd.peer_grace import PeerGrace
from subnet_lease.lease import Lease


def lease(n: int) -> Lease:
    return Lease(subnet=ipaddress.ip_network(f"10.244.{n}.0/24"), public_ip=ipaddress.ip_address(f"192.0.2.{n}"))


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_zero_grace_removes_at_once():
    g = PeerGrace(0, Clock())
    peers = {lease(1).key: lease(1)}
    assert not g.removed(peers, lease(1))
    assert g.snapshot(peers, {}) == {}


def test_a_removal_waits_for_the_grace_and_a_comeback_cancels_it():
    clock = Clock()
    g = PeerGrace(15, clock)
    a, b = lease(1), lease(2)
    peers = {a.key: a, b.key: b}
    assert g.removed(peers, a) and g.removed(peers, b)
    assert a.key in peers                                  # still programmed meanwhile
    g.added(a.key)                                         # the owner re-created its key
    clock.t += 14.9
    assert g.expired(peers) == []
    clock.t += 0.2
    gone = g.expired(peers)
    assert [(e.kind, e.lease.key) for e in gone] == [("removed", b.key)]
    assert set(peers) == {a.key}
    assert g.expired(peers) == [] and g.deadlines == {}


def test_a_second_removal_does_not_extend_the_grace():
    clock = Clock()
    g = PeerGrace(10, clock)
    a = lease(1)
    peers = {a.key: a}
    g.removed(peers, a)
    clock.t += 8
    g.removed(peers, a)
    clock.t += 3
    assert [e.lease.key for e in g.expired(peers)] == [a.key]


def test_a_snapshot_keeps_missing_peers_in_grace_and_clears_those_it_has():
    clock = Clock()
    g = PeerGrace(10, clock)
    a, b, c = lease(1), lease(2), lease(3)
    old = {a.key: a, b.key: b}
    g.removed(old, a)
    peers = g.snapshot(old, {a.key: a, c.key: c})          # a came back, b is missing, c is new
    assert set(peers) == {a.key, b.key, c.key}
    assert set(g.deadlines) == {b.key}
    clock.t += 10
    assert [e.lease.key for e in g.expired(peers)] == [b.key] and set(peers) == {a.key, c.key}


def test_an_unknown_peer_is_not_deferred():
    g = PeerGrace(10, Clock())
    assert not g.removed({}, lease(1))
