"""overlayd.netlink against the real kernel, in a namespace the test creates."""
import pytest

from overlayd.entries import Entries, FdbEntry, NeighEntry, PeerEntries, Plan, RouteEntry
from overlayd.errors import DatapathError
from overlayd.lab.netns import ip, run
from overlayd.netlink import Netlink, VxlanSpec

pytestmark = pytest.mark.kernel


def peer(n):
    mac = f"aa:bb:cc:00:00:{n:02x}"
    return PeerEntries(route=RouteEntry(f"10.244.{n}.0/24", f"10.244.{n}.0"),
                       neigh=NeighEntry(f"10.244.{n}.0", mac), fdb=FdbEntry(mac, f"192.0.2.{n}"))


def test_device_is_created_as_flannel_does(make_netns):
    """The daemon's own derivation (FamilyConfig from the underlay and net-conf) gives flannel's device."""
    from overlayd.datapath import FamilyPath, family_configs
    from overlayd.underlay import select_underlay
    from subnet_lease.config import parse_net_config

    ns = make_netns("dev")
    ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", "eth0p", "netns", ns)
    ip("addr", "add", "192.0.2.1/24", "dev", "eth0", netns=ns)
    ip("link", "set", "eth0", "up", netns=ns)
    ip("route", "add", "default", "via", "192.0.2.254", netns=ns)
    conf = parse_net_config('{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}')
    with Netlink(ns) as nl:
        cfg = family_configs(conf, select_underlay(nl))
        assert list(cfg) == [4]
        dev = FamilyPath(nl, cfg[4]).ensure_device("02:00:00:00:00:01", None)
        under = nl.link("eth0")
    out = ip("-d", "link", "show", "flannel.1", netns=ns).stdout
    for word in ("vxlan id 1", "local 192.0.2.1", "dev eth0", "dstport 8472", "nolearning", "mtu 1450",
                 "02:00:00:00:00:01", "UP"):
        assert word in out, (word, out)
    assert dev.matches(VxlanSpec("flannel.1", 1, 8472, "192.0.2.1", under.index, 1450))
    assert not dev.matches(VxlanSpec("flannel.1", 1, 8472, "192.0.2.99", under.index, 1450))


def test_apply_programs_what_ip_and_bridge_show_and_dump_reads_it_back(node):
    ns, nl, dev, under = node
    result = nl.apply(Plan(add=[peer(2), peer(3)]), dev.index, under.index)
    assert not result.errors and result.counts == {"add_neigh": 2, "add_fdb": 2, "add_route": 2}
    assert "10.244.2.0/24 via 10.244.2.0 dev flannel.1" in ip("route", netns=ns).stdout
    assert "onlink" in ip("route", "show", "10.244.2.0/24", netns=ns).stdout
    assert "10.244.3.0 lladdr aa:bb:cc:00:00:03 PERMANENT" in ip("neigh", "show", "dev", "flannel.1", netns=ns).stdout
    fdb = run(["bridge", "fdb", "show", "dev", "flannel.1"], netns=ns).stdout
    assert "aa:bb:cc:00:00:02 dst 192.0.2.2 self permanent" in fdb
    actual = nl.dump_entries(dev.index)
    want = Entries()
    want.add_peer(peer(2))
    want.add_peer(peer(3))
    assert actual == want


def test_removal_is_idempotent_gone_is_success(node):
    ns, nl, dev, under = node
    nl.apply(Plan(add=[peer(2)]), dev.index, under.index)
    p = peer(2)
    plan = Plan(del_routes=[p.route], del_fdbs=[p.fdb], del_neighs=[p.neigh])
    assert not nl.apply(plan, dev.index, under.index).errors
    assert not nl.apply(plan, dev.index, under.index).errors   # again: ENOENT is success
    assert len(nl.dump_entries(dev.index)) == 0


def test_a_peer_whose_route_fails_is_rolled_back(node):
    ns, nl, dev, under = node
    bad = PeerEntries(route=RouteEntry("10.244.5.0/24", "fe80::1"),   # v6 gateway for a v4 route
                      neigh=NeighEntry("10.244.5.0", "aa:bb:cc:00:00:05"),
                      fdb=FdbEntry("aa:bb:cc:00:00:05", "192.0.2.5"))
    result = nl.apply(Plan(add=[bad, peer(2)]), dev.index, under.index)
    assert len(result.errors) == 1 and isinstance(result.errors[0], DatapathError)
    actual = nl.dump_entries(dev.index)
    assert "10.244.5.0" not in actual.neighs
    assert FdbEntry("aa:bb:cc:00:00:05", "192.0.2.5") not in actual.fdbs
    assert "10.244.2.0/24" in actual.routes          # the good peer still went in


def test_only_address_replaces_a_stale_one(node):
    ns, nl, dev, under = node
    assert nl.ensure_only_address(dev.index, "10.244.1.0", 32)
    assert not nl.ensure_only_address(dev.index, "10.244.1.0", 32)
    assert nl.ensure_only_address(dev.index, "10.244.9.0", 32)
    assert [a.ip for a in nl.addresses(dev.index)] == ["10.244.9.0"]


def test_default_route_interface(node):
    ns, nl, dev, under = node
    ip("route", "add", "default", "via", "192.0.2.254", "dev", "eth0", netns=ns)
    assert nl.default_route_index() == under.index
