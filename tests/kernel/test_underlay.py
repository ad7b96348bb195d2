"""select_underlay against a real namespace: the default route, --iface-can-reach."""
import pytest

from overlayd.errors import SettingsError
from overlayd.lab.netns import ip
from overlayd.netlink import Netlink
from overlayd.underlay import select_underlay

pytestmark = pytest.mark.kernel


def test_default_route_and_can_reach_pick_the_right_interface(make_netns):
    ns = make_netns("ul")
    for name, addr in (("eth0", "192.0.2.1/24"), ("eth1", "198.51.100.1/24")):
        ip("link", "add", name, "netns", ns, "type", "veth", "peer", "name", f"{name}p", "netns", ns)
        ip("addr", "add", addr, "dev", name, netns=ns)
        ip("link", "set", name, "up", netns=ns)
        ip("link", "set", f"{name}p", "up", netns=ns)
    with Netlink(ns) as nl:
        with pytest.raises(SettingsError, match="no default route"):
            select_underlay(nl)
        with pytest.raises(SettingsError, match="--iface-can-reach 203.0.113.9: no route"):
            select_underlay(nl, can_reach="203.0.113.9")
        ip("route", "add", "default", "via", "198.51.100.254", netns=ns)
        assert select_underlay(nl).name == "eth1"
        ip("route", "add", "203.0.113.0/24", "via", "192.0.2.254", netns=ns)
        u = select_underlay(nl, can_reach="203.0.113.9")
        assert (u.name, u.ip) == ("eth0", "192.0.2.1")
        assert select_underlay(nl, ifaces=["192.0.2.1"], public_ip="203.0.113.77").public_ip == "203.0.113.77"
