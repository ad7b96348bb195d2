"""Choosing the underlay interface (flanneld's --iface rules): pure, on plain link/address data."""
import pytest

from overlayd.errors import SettingsError
from overlayd.netlink import Address, LinkInfo
from overlayd.underlay import choose_underlay

LINKS = [LinkInfo(1, "lo", None, 65536, None, True), LinkInfo(2, "eth0", "02:00:00:00:00:02", 1500, "veth", True),
         LinkInfo(3, "eth1", "02:00:00:00:00:03", 9000, "veth", True), LinkInfo(4, "bond0", None, 1500, "bond", True)]
ADDRS = [Address(2, "192.0.2.10", 24), Address(3, "198.51.100.7", 24), Address(3, "198.51.100.8", 24)]


def test_default_route_interface_when_nothing_is_asked():
    u = choose_underlay(LINKS, ADDRS, default_index=3)
    assert (u.name, u.ip, u.mtu, u.public_ip) == ("eth1", "198.51.100.7", 9000, "198.51.100.7")
    assert str(u.network) == "198.51.100.0/24"


def test_iface_by_name_or_by_ip_first_match_wins():
    assert choose_underlay(LINKS, ADDRS, ifaces=["eth0"], default_index=3).name == "eth0"
    u = choose_underlay(LINKS, ADDRS, ifaces=["198.51.100.8"], default_index=2)
    assert (u.name, u.ip) == ("eth1", "198.51.100.8")
    assert choose_underlay(LINKS, ADDRS, ifaces=["bond0", "eth1"]).name == "eth1"   # bond0 has no address


def test_iface_regex_matches_names_then_addresses():
    assert choose_underlay(LINKS, ADDRS, iface_regex=[r"eth\d"]).name == "eth0"
    assert choose_underlay(LINKS, ADDRS, iface_regex=[r"198\.51\.100\.8"]).ip == "198.51.100.8"


def test_can_reach_and_public_ip_override():
    u = choose_underlay(LINKS, ADDRS, reach_index=3, public_ip="203.0.113.5")
    assert (u.name, u.ip, u.public_ip) == ("eth1", "198.51.100.7", "203.0.113.5")


@pytest.mark.parametrize("kwargs,needle", [
    ({"ifaces": ["wlan0"]}, "--iface wlan0"),
    ({"iface_regex": ["^nope$"]}, "--iface-regex"),
    ({"iface_regex": ["("]}, "not a regular expression"),
    ({"default_index": 4}, "bond0"),
    ({}, "no default route"),
])
def test_no_usable_interface_is_a_clear_error(kwargs, needle):
    with pytest.raises(SettingsError, match=needle.replace("(", r"\(")):
        choose_underlay(LINKS, ADDRS, **kwargs)
