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


KEY = "/coreos.com/network/subnets/10.244.3.0-24"


@pytest.mark.parametrize("value,needles", [
    # BackendData "oops" used to reach the daemon and crash it with AttributeError on every node.
    ('{"PublicIP":"192.0.2.1","BackendData":"oops"}', ["10.244.3.0-24", "BackendData", "'oops'", "JSON object"]),
    ('{"PublicIP":"192.0.2.1","BackendData":[1,2]}', ["BackendData", "[1, 2]", "JSON object"]),
    ('{"PublicIPv6":"2001:db8::1","BackendV6Data":7}', ["BackendV6Data", "7", "JSON object"]),
    ('{"PublicIP":"192.0.2.1","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc"}}', ["VtepMAC", "'aa:bb:cc'", "MAC"]),
    ('{"PublicIP":"192.0.2.1","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:fg"}}', ["VtepMAC", "aa:bb:cc:dd:ee:fg"]),
    ('{"PublicIP":"192.0.2.1","BackendData":{"VNI":1,"VtepMAC":17}}', ["VtepMAC", "17"]),
    ('{"PublicIP":"192.0.2.1","BackendData":{"VNI":"1","VtepMAC":"aa:bb:cc:dd:ee:ff"}}', ["VNI", "'1'", "integer"]),
    ('{"PublicIP":"192.0.2.1","BackendData":{"VNI":true}}', ["VNI", "True"]),
    ('{"PublicIPv6":"2001:db8::1","BackendV6Data":{"VNI":1,"VtepMAC":"zz:bb:cc:dd:ee:ff"}}', ["BackendV6Data", "VtepMAC"]),
    ('{"PublicIP":7}', ["PublicIP", "7"]),
])
def test_backend_data_the_daemon_cannot_use_is_refused_naming_key_field_and_value(value, needles):
    with pytest.raises(LeaseFormatError) as info:
        lease_from_json(KEY, value)
    for needle in needles:
        assert needle in str(info.value)


def test_valid_backend_data_any_mac_case_and_reservations_still_parse():
    lease = lease_from_json(KEY, '{"PublicIP":"192.0.2.1","BackendData":{"VNI":4096,"VtepMAC":"AA:BB:cc:dd:EE:0f"}}')
    assert lease.vtep_mac == "aa:bb:cc:dd:ee:0f" and lease.vni == 4096
    reservation = lease_from_json(KEY, '{"PublicIP":"192.0.2.1","BackendType":"vxlan"}')
    assert reservation.backend_data == {} and reservation.vtep_mac is None
    assert lease_from_json(KEY, '{"PublicIP":"192.0.2.1","BackendData":null}').backend_data == {}
