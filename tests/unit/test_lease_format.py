import ipaddress
import json

import pytest

from subnet_lease.lease import LeaseFormatError, lease_from_json, parse_subnet_key, subnet_key


def test_flannel_lease_json_round_trips_through_the_key_and_value():
    value = '{"PublicIP":"192.0.2.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"AA:bb:cc:dd:ee:01"}}'
    lease = lease_from_json("/coreos.com/network/subnets/10.244.3.0-24", value, lease_id=7)
    assert lease.subnet == ipaddress.ip_network("10.244.3.0/24")
    assert lease.public_ip == ipaddress.ip_address("192.0.2.1")
    assert lease.vtep_mac == "aa:bb:cc:dd:ee:01" and lease.vni == 1
    assert lease.key == "10.244.3.0-24"
    assert json.loads(lease.to_json()) == json.loads(value)


def test_dual_stack_key_is_flannels():
    v4, v6 = parse_subnet_key("10.5.52.0-24&fc00::-64")
    assert str(v4) == "10.5.52.0/24" and str(v6) == "fc00::/64"
    assert subnet_key(v4, v6) == "10.5.52.0-24&fc00::-64"


@pytest.mark.parametrize("key,value,needle", [
    ("10.244.3.0", "{}", "ADDRESS-PREFIXLEN"),
    ("10.244.3.0-24", "nope", "not JSON"),
    ("10.244.3.0-24", '{"PublicIP":"fc00::1"}', "PublicIP"),
])
def test_bad_leases_are_refused_with_the_reason(key, value, needle):
    with pytest.raises(LeaseFormatError, match=needle):
        lease_from_json(key, value)


def test_etcd_fixture_is_a_real_server(etcd_server, etcd_prefix):
    etcd_server.etcdctl("put", f"{etcd_prefix}/config", '{"Network":"10.244.0.0/16"}')
    out = etcd_server.etcdctl("get", f"{etcd_prefix}/config", "--print-value-only").stdout
    assert json.loads(out) == {"Network": "10.244.0.0/16"}
