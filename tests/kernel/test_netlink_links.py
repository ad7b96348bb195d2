"""overlayd.netlink's links, addresses, route lookups and link watcher (overlayd/netlink_links.py
over Wire) against the real kernel, in namespaces the tests create.

What our parser reads is checked against an independent reader, iproute2's JSON (`ip -d -j`),
so the hand-written encoder and parser are not only checked against each other.
"""
import errno
import json
import queue
import threading
import time

import pytest

from overlayd import netlink
from overlayd.errors import DatapathError, DeviceMissing
from overlayd.lab.netns import ip
from overlayd.netlink import Address, LinkEvent, Netlink, VxlanSpec

pytestmark = pytest.mark.kernel


def ip_json(*args, netns):
    return json.loads(ip("-j", *args, netns=netns).stdout or "[]")


def iproute2_link(ns: str, name: str) -> dict:
    return ip_json("-d", "link", "show", "dev", name, netns=ns)[0]


@pytest.fixture
def underlay(make_netns):
    """A namespace with eth0 (192.0.2.1/24, 2001:db8::1/64) and eth1 (198.51.100.1/24), both up."""
    ns = make_netns("lk")
    for dev, peer, v4 in (("eth0", "eth0p", "192.0.2.1/24"), ("eth1", "eth1p", "198.51.100.1/24")):
        ip("link", "add", dev, "type", "veth", "peer", "name", peer, netns=ns)
        ip("addr", "add", v4, "dev", dev, netns=ns)
        ip("link", "set", dev, "up", netns=ns)
        ip("link", "set", peer, "up", netns=ns)
    ip("addr", "add", "2001:db8::1/64", "dev", "eth0", "nodad", netns=ns)
    with Netlink(ns) as nl:
        yield ns, nl


SPECS = [
    VxlanSpec("flannel.1", 1, 8472, "192.0.2.1", 0, 1450),
    VxlanSpec("vx-mac", 4096, 4789, "192.0.2.1", 0, 1400, mac="02:00:00:00:00:2a"),
    VxlanSpec("vx-learn", 16777215, 1, "198.51.100.1", 0, 1300, learning=True),
    VxlanSpec("vx-gbp", 7, 65535, "192.0.2.1", 0, 1200, gbp=True),
    VxlanSpec("vx-v6", 2, 8472, "2001:db8::1", 0, 1430, mac="02:00:00:00:00:06", learning=True, gbp=True),
]


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_a_vxlan_device_is_created_as_specified_and_read_back_as_iproute2_reads_it(underlay, spec):
    ns, nl = underlay
    under = nl.link("eth1" if spec.local_ip.startswith("198.") else "eth0")
    spec = VxlanSpec(**{**spec.__dict__, "underlay_index": under.index})
    dev = nl.create_vxlan(spec)
    assert dev.matches(spec)
    assert (dev.name, dev.kind, dev.mtu, dev.up, dev.vxlan_id, dev.vxlan_port, dev.vxlan_local, dev.vxlan_link,
            dev.vxlan_learning, dev.vxlan_gbp) == (spec.name, "vxlan", spec.mtu, False, spec.vni, spec.port,
                                                   spec.local_ip, under.index, spec.learning, spec.gbp)
    if spec.mac:
        assert dev.mac == spec.mac
    theirs = iproute2_link(ns, spec.name)
    data = theirs["linkinfo"]["info_data"]
    assert theirs["ifindex"] == dev.index and theirs["address"] == dev.mac and theirs["mtu"] == dev.mtu
    assert theirs["linkinfo"]["info_kind"] == "vxlan"
    assert (data["id"], data["port"], data["link"], data["learning"], data.get("gbp", False)) == \
           (dev.vxlan_id, dev.vxlan_port, under.name, dev.vxlan_learning, dev.vxlan_gbp)
    assert data["local6" if ":" in spec.local_ip else "local"] == dev.vxlan_local
    # The same device, whichever way it is asked for.
    assert nl.link(index=dev.index) == dev
    assert [l for l in nl.links() if l.index == dev.index] == [dev]


def test_links_read_every_link_as_iproute2_does(underlay):
    ns, nl = underlay
    ours = {l.index: l for l in nl.links()}
    theirs = ip_json("link", "show", netns=ns)
    assert sorted(ours) == sorted(t["ifindex"] for t in theirs)
    for t in theirs:
        mine = ours[t["ifindex"]]
        assert (mine.name, mine.mtu, mine.mac, mine.up) == (t["ifname"], t["mtu"], t["address"], "UP" in t["flags"])
        assert mine.kind == (None if t["ifname"] == "lo" else "veth")
        assert mine.vxlan_id is None and mine.vxlan_learning is None and not mine.vxlan_gbp


def test_set_link_up_down_mtu_and_mac(underlay):
    ns, nl = underlay
    dev = nl.create_vxlan(VxlanSpec("flannel.1", 1, 8472, "192.0.2.1", nl.link("eth0").index, 1450))
    nl.set_link(dev.index, up=True)
    assert "UP" in iproute2_link(ns, "flannel.1")["flags"] and nl.link(index=dev.index).up
    nl.set_link(dev.index, mtu=1234)
    nl.set_link(dev.index, mac="02:aa:bb:cc:dd:ee")
    theirs = iproute2_link(ns, "flannel.1")
    assert (theirs["mtu"], theirs["address"], "UP" in theirs["flags"]) == (1234, "02:aa:bb:cc:dd:ee", True)
    now = nl.link("flannel.1")
    assert (now.mtu, now.mac, now.up) == (1234, "02:aa:bb:cc:dd:ee", True)
    nl.set_link(dev.index, up=False, mtu=1300)
    assert "UP" not in iproute2_link(ns, "flannel.1")["flags"]
    assert (nl.link("flannel.1").up, nl.link("flannel.1").mtu) == (False, 1300)
    nl.set_link(dev.index)                       # nothing asked: nothing sent, nothing changed
    assert nl.link("flannel.1") == nl.link(index=dev.index)


def test_only_address_v4_and_v6_with_nodad(underlay):
    ns, nl = underlay
    dev = nl.create_vxlan(VxlanSpec("flannel.1", 1, 8472, "192.0.2.1", nl.link("eth0").index, 1450))
    nl.set_link(dev.index, up=True)
    assert nl.ensure_only_address(dev.index, "10.244.1.0", 32)
    assert nl.ensure_only_address(dev.index, "fd00:10:244:1::", 128)
    assert not nl.ensure_only_address(dev.index, "fd00:10:244:1::", 128)
    assert nl.ensure_only_address(dev.index, "fd00:10:244:9::", 64)     # the old one goes
    assert nl.addresses(dev.index) == [Address(dev.index, "10.244.1.0", 32)]
    ours6 = [a for a in nl.addresses(dev.index, family=10) if not a.ip.startswith("fe80:")]
    assert ours6 == [Address(dev.index, "fd00:10:244:9::", 64)]
    theirs = [a for a in ip_json("-6", "addr", "show", "dev", "flannel.1", netns=ns)[0]["addr_info"]
              if a["scope"] == "global"]
    assert [(a["local"], a["prefixlen"]) for a in theirs] == [("fd00:10:244:9::", 64)]
    assert theirs[0].get("nodad") is True and not theirs[0].get("tentative")
    # Every address of the namespace, by family, as iproute2 lists them.
    for fam, flag in ((2, "-4"), (10, "-6")):
        want = sorted((t["ifindex"], a["local"], a["prefixlen"]) for t in ip_json(flag, "addr", "show", netns=ns)
                      for a in t["addr_info"])
        assert sorted((a.index, a.ip, a.prefixlen) for a in nl.addresses(family=fam)) == want


def test_default_route_index_single_multipath_and_none(underlay):
    ns, nl = underlay
    eth0, eth1 = nl.link("eth0").index, nl.link("eth1").index
    assert nl.default_route_index() is None
    ip("route", "add", "default", "nexthop", "via", "198.51.100.254", "dev", "eth1",
       "nexthop", "via", "192.0.2.254", "dev", "eth0", netns=ns)
    assert nl.default_route_index() == eth1           # a multipath route: its first next hop
    ip("route", "replace", "default", "via", "192.0.2.254", "dev", "eth0", netns=ns)
    assert nl.default_route_index() == eth0
    assert nl.default_route_index(family=10) is None
    ip("-6", "route", "add", "default", "via", "2001:db8::fe", "dev", "eth0", netns=ns)
    assert nl.default_route_index(family=10) == eth0


def test_route_get_index(underlay):
    ns, nl = underlay
    assert nl.route_get_index("198.51.100.7") == nl.link("eth1").index
    assert nl.route_get_index("2001:db8::7") == nl.link("eth0").index
    assert nl.route_get_index("203.0.113.9") is None            # no route: unreachable
    ip("route", "add", "default", "via", "192.0.2.254", netns=ns)
    assert nl.route_get_index("203.0.113.9") == nl.link("eth0").index
    with pytest.raises(DatapathError) as err:
        nl.route_get_index("not-an-ip")
    assert err.value.errno == errno.EINVAL and "not-an-ip" in str(err.value)


def test_errors_keep_the_errno_and_the_kernels_text(underlay):
    ns, nl = underlay
    spec = VxlanSpec("flannel.1", 1, 8472, "192.0.2.1", nl.link("eth0").index, 1450)
    dev = nl.create_vxlan(spec)
    with pytest.raises(DatapathError) as err:
        nl.create_vxlan(spec)
    assert type(err.value) is DatapathError and err.value.errno == errno.EEXIST
    assert str(err.value) == "create vxlan device flannel.1: File exists"
    with pytest.raises(DatapathError) as err:
        nl.set_link(dev.index, mtu=70000)
    assert err.value.errno == errno.EINVAL and "mtu greater than device maximum" in str(err.value)
    with pytest.raises(DatapathError) as err:
        nl.create_vxlan(VxlanSpec("vx-bad", 1, 8472, "192.0.2.1", 999999, 1450))
    assert err.value.errno == errno.ENODEV and type(err.value) is DeviceMissing


def test_a_missing_device(underlay):
    ns, nl = underlay
    dev = nl.create_vxlan(VxlanSpec("flannel.1", 1, 8472, "192.0.2.1", nl.link("eth0").index, 1450))
    nl.delete_link(dev.index)
    assert nl.link("flannel.1") is None and nl.link(index=dev.index) is None
    assert nl.link("a-name-longer-than-ifnamsiz") is None and nl.link("") is None
    assert nl.addresses(dev.index) == []
    nl.delete_link(dev.index)                      # gone already: success
    with pytest.raises(DeviceMissing):
        nl.set_link(dev.index, up=True)
    with pytest.raises(DeviceMissing):
        nl.ensure_only_address(dev.index, "10.244.1.0", 32)


def test_a_netlink_object_works_from_another_thread(underlay):
    ns, nl = underlay
    box = {}
    t = threading.Thread(target=lambda: box.update(links=nl.links(), eth0=nl.link("eth0")))
    t.start()
    t.join()
    assert box["eth0"] in box["links"] and box["eth0"] == nl.link("eth0")


def watching(ns, on_event):
    """watch_links in a thread: (stop, thread, errors), once the watch is bound."""
    stop, ready, errors = threading.Event(), threading.Event(), []

    def run():
        try:
            Netlink.watch_links(ns, stop, on_event, ready)
        except Exception as err:
            errors.append(err)
            ready.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert ready.wait(5)
    return stop, t, errors


def wait_for(events: "queue.Queue[LinkEvent]", want) -> list[LinkEvent]:
    seen, deadline = [], time.monotonic() + 5
    while not any(want(e) for e in seen):
        seen.append(events.get(timeout=max(0.01, deadline - time.monotonic())))
    return seen


def test_watch_links_sees_links_and_addresses_come_and_go_and_stops_promptly(underlay):
    ns, nl = underlay
    events: "queue.Queue[LinkEvent]" = queue.Queue()
    stop, t, errors = watching(ns, events.put)
    ip("link", "add", "vw0", "type", "veth", "peer", "name", "vw0p", netns=ns)
    index = nl.link("vw0").index
    wait_for(events, lambda e: e == LinkEvent("link-new", index, "vw0"))
    ip("addr", "add", "10.9.9.1/24", "dev", "vw0", netns=ns)
    wait_for(events, lambda e: e == LinkEvent("addr-new", index, None))
    ip("addr", "del", "10.9.9.1/24", "dev", "vw0", netns=ns)
    wait_for(events, lambda e: e == LinkEvent("addr-del", index, None))
    ip("link", "del", "vw0", netns=ns)
    wait_for(events, lambda e: e == LinkEvent("link-del", index, "vw0"))
    started = time.monotonic()
    stop.set()                                     # with no event coming: noticed within WATCH_POLL
    t.join(3)
    assert not t.is_alive() and time.monotonic() - started < netlink.WATCH_POLL + 0.5
    assert not errors


def test_watch_links_overflow_is_raised_for_the_caller_to_reopen_and_reconcile(underlay, monkeypatch):
    ns, nl = underlay
    monkeypatch.setattr(netlink, "WATCH_BUFFER", 4096)   # the smallest the kernel allows, about
    first, release = threading.Event(), threading.Event()

    def slow(event):
        first.set()
        release.wait(10)

    stop, t, errors = watching(ns, slow)
    ip("link", "add", "vw0", "type", "veth", "peer", "name", "vw0p", netns=ns)
    assert first.wait(5)                           # the watcher is stuck in our callback now
    for i in range(40):
        ip("addr", "add", f"10.9.{i}.1/24", "dev", "vw0", netns=ns)
    release.set()
    t.join(5)
    stop.set()
    assert not t.is_alive()
    assert [e.errno for e in errors] == [errno.ENOBUFS]
