"""Desired state and the diff: pure functions, no kernel, no mocks."""
import ipaddress

from subnet_lease.lease import Lease
from overlayd.desired import desired_entries
from overlayd.diff import plan_changes
from overlayd.entries import Entries, FdbEntry, NeighEntry, RouteEntry


def lease(n, mac=None, public=None):
    return Lease(subnet=ipaddress.ip_network(f"10.244.{n}.0/24"),
                 public_ip=ipaddress.ip_address(public or f"192.0.2.{n}"),
                 backend_data={"VNI": 1, "VtepMAC": mac or f"aa:bb:cc:00:00:{n:02x}"})


OWN = lease(1)


def test_each_peer_gets_arp_fdb_and_an_onlink_route_and_we_skip_ourselves():
    d = desired_entries(OWN, [OWN, lease(2), lease(3)])
    assert d.neighs == {"10.244.2.0": NeighEntry("10.244.2.0", "aa:bb:cc:00:00:02"),
                        "10.244.3.0": NeighEntry("10.244.3.0", "aa:bb:cc:00:00:03")}
    assert d.fdbs == {FdbEntry("aa:bb:cc:00:00:02", "192.0.2.2"), FdbEntry("aa:bb:cc:00:00:03", "192.0.2.3")}
    assert d.routes["10.244.2.0/24"] == RouteEntry("10.244.2.0/24", "10.244.2.0")
    assert len(d) == 6


def test_leases_that_cannot_be_programmed_are_skipped():
    no_mac = Lease(subnet=ipaddress.ip_network("10.244.9.0/24"), public_ip=ipaddress.ip_address("192.0.2.9"))
    other = Lease(subnet=ipaddress.ip_network("10.244.8.0/24"), public_ip=ipaddress.ip_address("192.0.2.8"),
                  backend_type="host-gw")
    assert len(desired_entries(OWN, [no_mac, other])) == 0


def test_direct_routing_only_for_peers_on_our_l2_subnet():
    far = lease(3, public="198.51.100.3")
    d = desired_entries(OWN, [lease(2), far], direct_routing=True,
                        underlay_net=ipaddress.ip_network("192.0.2.0/24"))
    assert d.routes["10.244.2.0/24"] == RouteEntry("10.244.2.0/24", "192.0.2.2", direct=True)
    assert "10.244.2.0" not in d.neighs
    assert d.routes["10.244.3.0/24"] == RouteEntry("10.244.3.0/24", "10.244.3.0")


def test_in_sync_means_an_empty_plan():
    d = desired_entries(OWN, [lease(2), lease(3)])
    actual = Entries(dict(d.neighs), set(d.fdbs), dict(d.routes))
    assert plan_changes(d, actual).empty


def test_a_new_peer_is_added_in_full_and_only_it():
    before = desired_entries(OWN, [lease(2)])
    after = desired_entries(OWN, [lease(2), lease(3)])
    plan = plan_changes(after, Entries(dict(before.neighs), set(before.fdbs), dict(before.routes)))
    assert [p.route.dst for p in plan.add] == ["10.244.3.0/24"]
    assert plan.add[0].neigh and plan.add[0].fdb
    assert not (plan.del_routes or plan.del_fdbs or plan.del_neighs)


def test_stale_entries_no_lease_explains_are_removed():
    d = desired_entries(OWN, [lease(2)])
    actual = Entries(dict(d.neighs), set(d.fdbs), dict(d.routes))
    actual.neighs["10.244.7.0"] = NeighEntry("10.244.7.0", "aa:bb:cc:00:00:07")
    actual.fdbs.add(FdbEntry("aa:bb:cc:00:00:07", "192.0.2.7"))
    actual.routes["10.244.7.0/24"] = RouteEntry("10.244.7.0/24", "10.244.7.0")
    plan = plan_changes(d, actual)
    assert not plan.add
    assert [r.dst for r in plan.del_routes] == ["10.244.7.0/24"]
    assert plan.del_fdbs == [FdbEntry("aa:bb:cc:00:00:07", "192.0.2.7")]
    assert [n.ip for n in plan.del_neighs] == ["10.244.7.0"]


def test_a_changed_vtep_mac_replaces_arp_adds_the_new_fdb_and_drops_the_old():
    old = desired_entries(OWN, [lease(2)])
    new = desired_entries(OWN, [lease(2, mac="aa:bb:cc:99:99:02")])
    plan = plan_changes(new, Entries(dict(old.neighs), set(old.fdbs), dict(old.routes)))
    assert len(plan.add) == 1
    assert plan.add[0].neigh == NeighEntry("10.244.2.0", "aa:bb:cc:99:99:02")
    assert plan.add[0].fdb == FdbEntry("aa:bb:cc:99:99:02", "192.0.2.2")
    assert plan.del_fdbs == [FdbEntry("aa:bb:cc:00:00:02", "192.0.2.2")]
    assert not plan.del_neighs and not plan.del_routes   # replaced in place, never missing


def test_a_moved_peer_keeps_its_route_and_gets_a_new_fdb_dst():
    old = desired_entries(OWN, [lease(2)])
    new = desired_entries(OWN, [lease(2, public="192.0.2.200")])
    plan = plan_changes(new, Entries(dict(old.neighs), set(old.fdbs), dict(old.routes)))
    assert plan.add[0].fdb == FdbEntry("aa:bb:cc:00:00:02", "192.0.2.200") and plan.add[0].neigh is None
    assert plan.del_fdbs == [FdbEntry("aa:bb:cc:00:00:02", "192.0.2.2")]
