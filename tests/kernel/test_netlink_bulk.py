"""overlayd.netlink's pipelined path at the size issue 4 asks for (5,000 peers), in a namespace.

What the daemon's apply/dump put in and read back is checked against iproute2's own view
(`ip neigh`, `bridge fdb`, `ip route`), so the hand-written encoder and parser are not only
checked against each other.
"""
import errno
import ipaddress
import socket
import sys

import pytest

from overlayd.entries import Entries, FdbEntry, NeighEntry, PeerEntries, Plan, RouteEntry
from overlayd.errors import DatapathError, DeviceMissing
from overlayd.lab.netns import ip, netns_exists, run, unique_token
from overlayd.netlink import Netlink, VxlanSpec
from overlayd.netlink_wire import socket_in_netns

pytestmark = pytest.mark.kernel

PEERS = 5000


def peer(i: int) -> PeerEntries:
    """Peer i: pod subnet 10.x.y.0/24 inside 10.0.0.0/8, PublicIP in 198.18.0.0/15."""
    hi, lo = divmod(i + 1, 256)
    vtep = f"10.{hi}.{lo}.0"
    mac = f"02:aa:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}:01"
    public = f"198.{18 + ((i + 1) >> 16)}.{(i + 1) >> 8 & 255}.{(i + 1) & 255}"
    return PeerEntries(route=RouteEntry(f"{vtep}/24", vtep), neigh=NeighEntry(vtep, mac),
                       fdb=FdbEntry(mac, public))


def entries(peers) -> Entries:
    out = Entries()
    for p in peers:
        out.add_peer(p)
    return out


def lines(*args, netns):
    return [line for line in run(list(args), netns=netns).stdout.splitlines() if line.strip()]


def iproute2_view(ns: str) -> Entries:
    """The device's entries as iproute2 prints them, parsed into the same plain data."""
    view = Entries()
    for line in lines("ip", "-4", "neigh", "show", "dev", "flannel.1", "nud", "permanent", netns=ns):
        words = line.split()
        view.neighs[words[0]] = NeighEntry(words[0], words[words.index("lladdr") + 1])
    for line in lines("bridge", "fdb", "show", "dev", "flannel.1", netns=ns):
        words = line.split()
        if "dst" in words:
            view.fdbs.add(FdbEntry(words[0], words[words.index("dst") + 1]))
    for line in lines("ip", "-4", "route", "show", "dev", "flannel.1", "proto", "115", netns=ns):
        words = line.split()
        view.routes[words[0]] = RouteEntry(words[0], words[words.index("via") + 1])
        assert "onlink" in words, line
    return view


def test_5000_peers_applied_then_dumped_equal_the_desired_set(node):
    ns, nl, dev, under = node
    peers = [peer(i) for i in range(PEERS)]
    result = nl.apply(Plan(add=peers), dev.index, under.index)
    assert not result.errors
    assert result.counts == {"add_neigh": PEERS, "add_fdb": PEERS, "add_route": PEERS}
    want = entries(peers)
    assert nl.dump_entries(dev.index) == want
    assert iproute2_view(ns) == want
    # Applying the same plan again changes nothing (replace/append are idempotent).
    assert not nl.apply(Plan(add=peers[:100]), dev.index, under.index).errors
    assert nl.dump_entries(dev.index) == want


def test_errors_mid_batch_hit_only_their_own_peer_which_is_rolled_back(node):
    ns, nl, dev, under = node
    peers = [peer(i) for i in range(1000)]
    good = list(peers)
    # Peer 400: the kernel refuses its route (a multicast gateway): its ARP and FDB must go again.
    bad_route = peers[400] = PeerEntries(route=RouteEntry(peers[400].route.dst, "224.0.0.1"),
                                         neigh=peers[400].neigh, fdb=peers[400].fdb)
    # Peer 700: the kernel refuses its ARP entry (a 3-byte MAC): no FDB entry or route may follow.
    bad_neigh = peers[700] = PeerEntries(route=peers[700].route, neigh=NeighEntry(peers[700].neigh.ip, "aa:bb:cc"),
                                         fdb=peers[700].fdb)
    # Peer 900: refused before it reaches the kernel (an IPv6 gateway on an IPv4 route).
    bad_family = peers[900] = PeerEntries(route=RouteEntry(peers[900].route.dst, "fe80::1"),
                                          neigh=peers[900].neigh, fdb=peers[900].fdb)
    result = nl.apply(Plan(add=peers), dev.index, under.index)

    assert len(result.errors) == 3, result.errors
    by_what = {err.what: err for err in result.errors}
    route_err = by_what[f"replace route {bad_route.route.dst} via 224.0.0.1"]
    assert route_err.errno == errno.EINVAL and "gateway" in str(route_err)     # the kernel's own words
    assert by_what[f"replace neighbour {bad_neigh.neigh.ip} lladdr aa:bb:cc"].errno == errno.EINVAL
    assert by_what[f"replace route {bad_family.route.dst} via fe80::1"].errno == errno.EINVAL
    assert result.counts == {"add_neigh": 999, "add_fdb": 999, "add_route": 997}

    want = entries(p for i, p in enumerate(good) if i not in (400, 700, 900))
    assert nl.dump_entries(dev.index) == want
    assert iproute2_view(ns) == want


def test_removing_5000_peers_leaves_the_device_empty(node):
    ns, nl, dev, under = node
    peers = [peer(i) for i in range(PEERS)]
    assert not nl.apply(Plan(add=peers), dev.index, under.index).errors
    plan = Plan(del_routes=[p.route for p in peers], del_fdbs=[p.fdb for p in peers],
                del_neighs=[p.neigh for p in peers])
    result = nl.apply(plan, dev.index, under.index)
    assert not result.errors
    assert result.counts == {"del_route": PEERS, "del_fdb": PEERS, "del_neigh": PEERS}
    assert len(nl.dump_entries(dev.index)) == 0
    assert iproute2_view(ns) == Entries()


def test_deleting_what_is_not_there_is_success(node):
    ns, nl, dev, under = node
    kept = [peer(i) for i in range(10)]
    absent = [peer(i) for i in range(10, 510)]
    assert not nl.apply(Plan(add=kept), dev.index, under.index).errors
    plan = Plan(del_routes=[p.route for p in absent], del_fdbs=[p.fdb for p in absent],
                del_neighs=[p.neigh for p in absent])
    result = nl.apply(plan, dev.index, under.index)
    assert not result.errors
    assert nl.dump_entries(dev.index) == entries(kept)


def test_a_deleted_device_is_reported_as_missing(node):
    ns, nl, dev, under = node
    ip("link", "del", "flannel.1", netns=ns)
    with pytest.raises(DeviceMissing):
        nl.apply(Plan(add=[peer(i) for i in range(50)]), dev.index, under.index)
    with pytest.raises(DeviceMissing):
        nl.set_tx_checksum(dev.index, False)


def test_dump_tells_our_direct_routes_from_the_operators(node):
    ns, nl, dev, under = node
    direct = PeerEntries(route=RouteEntry("10.244.7.0/24", "192.0.2.7", direct=True))
    assert not nl.apply(Plan(add=[direct, peer(1)]), dev.index, under.index).errors
    ip("route", "add", "10.244.8.0/24", "via", "192.0.2.8", "dev", "eth0", netns=ns)    # the operator's
    ip("route", "add", "172.16.0.0/24", "via", "192.0.2.9", "dev", "eth0", "proto", "115", netns=ns)
    actual = nl.dump_entries(dev.index, direct_within=ipaddress.ip_network("10.244.0.0/16"))
    assert actual.routes == {"10.244.7.0/24": direct.route, peer(1).route.dst: peer(1).route}
    assert "10.244.7.0/24 via 192.0.2.7 dev eth0 proto 115" in ip("route", netns=ns).stdout


def test_ipv6_peers_round_trip(make_netns):
    ns = make_netns("bulk6")
    ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0p", netns=ns)
    ip("addr", "add", "2001:db8::1/64", "dev", "eth0", "nodad", netns=ns)
    ip("link", "set", "eth0", "up", netns=ns)
    with Netlink(ns) as nl:
        under = nl.link("eth0")
        dev = nl.create_vxlan(VxlanSpec("flannel-v6.1", 1, 8472, "2001:db8::1", under.index, 1430))
        nl.set_link(dev.index, up=True)
        peers = []
        for i in range(1, 301):
            vtep = f"fd00:10:{i:x}::"
            mac = f"02:bb:00:00:{i >> 8:02x}:{i & 255:02x}"
            peers.append(PeerEntries(route=RouteEntry(f"{vtep}/64", vtep), neigh=NeighEntry(vtep, mac),
                                     fdb=FdbEntry(mac, f"2001:db8::{i + 1:x}")))
        result = nl.apply(Plan(add=peers), dev.index, under.index)
        assert not result.errors
        assert nl.dump_entries(dev.index, family=10) == entries(peers)
        assert "fd00:10:2a::/64 via fd00:10:2a:: dev flannel-v6.1 proto 115" in ip("-6", "route", netns=ns).stdout


def generic_tx_checksum_seen_by_pyroute2_ethtool(ns: str, dev: str) -> bool:
    """A second opinion from an independent reader (pyroute2's Ethtool, run inside the namespace)."""
    code = ("import sys; from pyroute2.ethtool import Ethtool; "
            "print(Ethtool().get_features(sys.argv[1]).features['tx-checksum-ip-generic'].enable)")
    out = run([sys.executable, "-c", code, dev], netns=ns).stdout.strip()
    assert out in ("True", "False"), out
    return out == "True"


def test_tx_checksum_offload_switch(node):
    ns, nl, dev, under = node
    assert nl.tx_checksum(dev.index) is True          # the kernel's default for a vxlan device
    nl.set_tx_checksum(dev.index, False)
    assert nl.tx_checksum(dev.index) is False
    # flannel #2152's workaround is `ethtool -K flannel.1 tx-checksum-ip-generic off`: that bit is off.
    assert generic_tx_checksum_seen_by_pyroute2_ethtool(ns, "flannel.1") is False
    assert nl.tx_checksum(under.index) is True        # only the device asked for changed
    nl.set_tx_checksum(dev.index, True)
    assert nl.tx_checksum(dev.index) is True


def test_errors_are_datapath_errors_naming_the_request(node):
    ns, nl, dev, under = node
    bad = PeerEntries(route=RouteEntry("10.244.9.0/24", "10.244.9.0"),
                      neigh=NeighEntry("10.244.9.0", "not-a-mac"), fdb=FdbEntry("not-a-mac", "192.0.2.9"))
    result = nl.apply(Plan(add=[bad]), dev.index, under.index)
    assert [type(e) for e in result.errors] == [DatapathError]
    assert "not-a-mac" in str(result.errors[0]) and "10.244.9.0" in str(result.errors[0])
    assert len(nl.dump_entries(dev.index)) == 0


def test_a_missing_namespace_is_an_error_and_is_not_created():
    name = f"ovt-{unique_token()}-absent"
    with pytest.raises(DatapathError):
        Netlink(name)
    with pytest.raises(FileNotFoundError):
        socket_in_netns(name, socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    assert not netns_exists(name)


def test_the_bulk_socket_lives_in_the_namespace(node):
    ns, nl, dev, under = node
    with socket_in_netns(ns, socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("192.0.2.1", 0))        # an address that exists only inside the namespace


def test_errors_are_matched_to_requests_across_chunk_boundaries(node):
    ns, nl, dev, under = node
    nl._bulk().chunk = 7                     # many small sends: boundaries at 7, 14, ...
    peers = [peer(i) for i in range(100)]
    bad = {6, 7, 50, 99}                     # last of a chunk, first of the next, middle, the very last
    for i in bad:
        peers[i] = PeerEntries(route=RouteEntry(peers[i].route.dst, "224.0.0.1"), neigh=peers[i].neigh,
                               fdb=peers[i].fdb)
    result = nl.apply(Plan(add=peers), dev.index, under.index)
    assert sorted(err.what for err in result.errors) == sorted(
        f"replace route {peers[i].route.dst} via 224.0.0.1" for i in bad)
    assert nl.dump_entries(dev.index) == entries(p for i, p in enumerate(peers) if i not in bad)


def test_5000_failures_at_once_are_all_reported(node):
    ns, nl, dev, under = node
    # Every route is refused (with the kernel's extended-ack text): 5,000 error answers must all
    # fit the receive buffer, and every peer is rolled back.
    peers = [PeerEntries(route=RouteEntry(p.route.dst, "224.0.0.1"), neigh=p.neigh, fdb=p.fdb)
             for p in map(peer, range(PEERS))]
    result = nl.apply(Plan(add=peers), dev.index, under.index)
    assert len(result.errors) == PEERS
    assert {err.errno for err in result.errors} == {errno.EINVAL}
    assert len(nl.dump_entries(dev.index)) == 0


def test_a_missing_device_fails_every_add_as_device_missing(node):
    ns, nl, dev, under = node
    ip("link", "del", "flannel.1", netns=ns)
    with pytest.raises(DeviceMissing):
        nl.apply(Plan(add=[peer(i) for i in range(PEERS)]), dev.index, under.index)


def test_removing_a_route_never_removes_the_operators_route_to_the_same_prefix(node):
    ns, nl, dev, under = node
    ours = peer(1)
    direct = PeerEntries(route=RouteEntry("10.244.7.0/24", "192.0.2.7", direct=True))
    assert not nl.apply(Plan(add=[ours, direct]), dev.index, under.index).errors
    # The operator's routes to the same prefixes, put in front of ours: a delete by prefix alone
    # would remove them first.
    ip("route", "prepend", ours.route.dst, "via", "192.0.2.50", "dev", "eth0", netns=ns)
    ip("route", "prepend", "10.244.7.0/24", "via", "192.0.2.51", "dev", "eth0", netns=ns)
    result = nl.apply(Plan(del_routes=[ours.route, direct.route]), dev.index, under.index)
    assert not result.errors
    left = ip("route", netns=ns).stdout
    assert f"{ours.route.dst} via 192.0.2.50 dev eth0" in left
    assert "10.244.7.0/24 via 192.0.2.51 dev eth0" in left
    assert "flannel.1" not in left and "192.0.2.7 " not in left
