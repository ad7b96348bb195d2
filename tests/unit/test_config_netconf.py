"""net-conf.json: flannel's defaults and checks; refusals name field, value and rule."""
import ipaddress

import pytest

from subnet_lease.config import ConfigError, parse_net_config


def test_minimal_config_gets_flannels_defaults_and_vxlan():
    c = parse_net_config('{"Network":"10.244.0.0/16"}')
    assert c.subnet_len == 24
    assert c.subnet_min == ipaddress.ip_address("10.244.1.0")      # the first subnet is skipped
    assert c.subnet_max == ipaddress.ip_address("10.244.255.0")
    assert c.backend.type == "vxlan" and c.backend.vni == 1 and c.backend.port == 8472
    assert c.enable_ipv4 and not c.enable_ipv6


@pytest.mark.parametrize("network,expected_len", [
    ("10.0.0.0/8", 24), ("10.244.0.0/22", 24), ("10.244.0.0/23", 25), ("10.244.0.0/28", 30)])
def test_default_subnet_len_follows_the_network_size(network, expected_len):
    assert parse_net_config(f'{{"Network":"{network}"}}').subnet_len == expected_len


def test_full_dual_stack_config_round_trips():
    text = ('{"Network":"10.5.0.0/16","SubnetLen":26,"SubnetMin":"10.5.1.0","SubnetMax":"10.5.9.192",'
            '"EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetLen":64,'
            '"Backend":{"Type":"vxlan","VNI":4096,"Port":4789,"GBP":true,"DirectRouting":true,"MTU":1400}}')
    c = parse_net_config(text)
    assert c.subnet_len == 26 and str(c.subnet_max) == "10.5.9.192"
    assert c.enable_ipv6 and str(c.ipv6_subnet_min) == "fc00:0:0:1::" and str(c.ipv6_subnet_max) == "fc00:0:0:ffff::"
    b = c.backend
    assert (b.vni, b.port, b.gbp, b.direct_routing, b.mtu) == (4096, 4789, True, True, 1400)
    import json
    assert parse_net_config(json.dumps(c.to_dict())) == c


def test_ipv6_only_needs_no_ipv4_network():
    c = parse_net_config('{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/48"}')
    assert c.network is None and c.ipv6_subnet_len == 64


@pytest.mark.parametrize("text,needle", [
    ('{"Backend":{"Type":"vxlan"}}', "Network is missing"),
    ('{"Network":"10.244.0.1/16"}', "Network '10.244.0.1/16' is not a CIDR network"),
    ('{"Network":"fc00::/48"}', "Network 'fc00::/48' must be an IPv4 network"),
    ('{"Network":"10.244.0.0/16","SubnetLen":31}', "SubnetLen 31 is too long: it must be at most 30"),
    ('{"Network":"10.244.0.0/16","SubnetLen":17}', "SubnetLen 17 is too short for the /16 network"),
    ('{"Network":"10.244.0.0/29"}', "Network 10.244.0.0/29 is too small"),
    ('{"Network":"10.244.0.0/16","SubnetMin":"10.245.0.0"}', "SubnetMin 10.245.0.0 is not in the range"),
    ('{"Network":"10.244.0.0/16","SubnetMax":"10.244.3.7"}', "SubnetMax 10.244.3.7 is not on a /24 boundary"),
    ('{"Network":"10.244.0.0/16","SubnetMin":"10.244.9.0","SubnetMax":"10.244.3.0"}', "SubnetMin 10.244.9.0 is above"),
    ('{"Network":"10.244.0.0/16","EnableIPv6":true}', "IPv6Network is missing"),
    ('{"Network":"10.244.0.0/16","EnableIPv4":"yes"}', "EnableIPv4 'yes' must be true or false"),
    ('{"EnableIPv4":false,"EnableIPv6":false}', "enable at least one"),
    ('{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}', "Backend.Type 'host-gw' is not supported"),
    ('{"Network":"10.244.0.0/16","Backend":{"VNI":16777216}}', "Backend.VNI 16777216"),
    ('{"Network":"10.244.0.0/16","Backend":{"Port":70000}}', "Backend.Port 70000"),
    ('{"Network":"10.244.0.0/16","Backend":{"MTU":100}}', "Backend.MTU 100"),
    ('{"Network":"10.244.0.0/16","Backend":{"GBP":"on"}}', "Backend.GBP 'on' must be true or false"),
    ('[1]', "must be a JSON object"),
    ('{', "not valid JSON"),
])
def test_bad_config_is_refused_naming_field_value_and_rule(text, needle):
    with pytest.raises(ConfigError) as err:
        parse_net_config(text)
    assert needle in str(err.value)
