"""overlayd/netlink_links.py without a kernel: what it builds, it reads back the same.

A create request is an RTM_NEWLINK, the same message the kernel answers a get with, so the
encoder and the parser can be held against each other here; tests/kernel/test_netlink_links.py
holds both against the kernel and iproute2.
"""
import struct

import pytest

from overlayd.netlink_links import (RTM_NEWADDR, RTM_NEWLINK, addr_request, link_set_request, parse_addresses,
                                    parse_events, parse_links, vxlan_create_request)
from overlayd.netlink_types import Address, LinkEvent, VxlanSpec


def message(kind: int, payload: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(payload), kind, 0, 1, 0) + payload


@pytest.mark.parametrize("spec", [
    VxlanSpec("flannel.1", 1, 8472, "192.0.2.1", 3, 1450, mac="02:00:00:00:00:01"),
    VxlanSpec("flannel-v6.1", 16777215, 4789, "2001:db8::1", 7, 1430, learning=True, gbp=True),
])
def test_a_vxlan_create_request_reads_back_as_its_spec(spec):
    kind, flags, payload = vxlan_create_request(spec)
    assert kind == RTM_NEWLINK
    [info] = parse_links([message(kind, payload)])
    assert info.matches(spec) and (info.name, info.mtu, info.mac, info.up) == (spec.name, spec.mtu, spec.mac, False)
    assert parse_events(message(kind, payload)) == [LinkEvent("link-new", 0, spec.name)]


def test_set_up_changes_only_the_up_flag_and_bad_input_is_a_value_error():
    _, _, payload = link_set_request(5, up=True)
    assert struct.unpack_from("=BxHiII", payload)[2:] == (5, 1, 1)
    _, _, payload = link_set_request(5, mtu=1400)
    assert struct.unpack_from("=BxHiII", payload)[2:] == (5, 0, 0)
    with pytest.raises(ValueError, match="not-a-mac"):
        link_set_request(5, mac="not-a-mac")
    with pytest.raises(ValueError, match="10.0.0.300"):
        vxlan_create_request(VxlanSpec("x", 1, 8472, "10.0.0.300", 1, 1450))
    with pytest.raises(ValueError, match="prefix"):
        addr_request("replace", 5, "10.0.0.1", 33)


def test_an_address_request_reads_back_and_ipv6_asks_for_nodad():
    kind, _, payload = addr_request("replace", 9, "fd00::1", 64)
    assert payload[2] == 0x02                                      # ifa_flags: IFA_F_NODAD
    assert parse_addresses([message(RTM_NEWADDR, payload)], 10, 9) == [Address(9, "fd00::1", 64)]
    assert parse_addresses([message(RTM_NEWADDR, payload)], 10, 8) == []
    kind, _, payload = addr_request("replace", 9, "10.244.1.0", 32)
    assert payload[2] == 0 and parse_addresses([message(RTM_NEWADDR, payload)], 2) == [Address(9, "10.244.1.0", 32)]
