"""The subnet allocator: a pure function of config and leases (no store, no mocks)."""
import ipaddress
import random

import pytest

from subnet_lease.allocator import PoolExhausted, choose_subnet
from subnet_lease.config import parse_net_config
from subnet_lease.lease import Lease

net = ipaddress.ip_network
ip = ipaddress.ip_address
CONFIG = parse_net_config('{"Network":"10.244.0.0/16"}')


def lease(subnet, public_ip, lease_id=1, v6=None):
    return Lease(subnet=net(subnet) if subnet else None, public_ip=ip(public_ip) if public_ip else None,
                 ipv6_subnet=net(v6) if v6 else None, lease_id=lease_id)


def test_own_existing_lease_wins_over_previous_subnet():
    leases = [lease("10.244.7.0/24", "192.0.2.1"), lease("10.244.8.0/24", "192.0.2.2")]
    c = choose_subnet(CONFIG, leases, ip("192.0.2.1"), previous_subnet=net("10.244.9.0/24"))
    assert (c.subnet, c.reason) == (net("10.244.7.0/24"), "own-lease") and c.existing == leases[0]


def test_own_reservation_is_used_but_others_reservations_never():
    reserved = [lease("10.244.7.0/24", "192.0.2.1", lease_id=None)]
    assert choose_subnet(CONFIG, reserved, ip("192.0.2.1")).subnet == net("10.244.7.0/24")
    # Another node asking for the reserved subnet as its "previous" one does not get it.
    c = choose_subnet(CONFIG, reserved, ip("192.0.2.9"), previous_subnet=net("10.244.7.0/24"))
    assert c.subnet != net("10.244.7.0/24") and c.reason == "random"


def test_previous_subnet_is_preferred_when_free_and_inside_the_range():
    c = choose_subnet(CONFIG, [], ip("192.0.2.1"), previous_subnet=net("10.244.42.0/24"))
    assert (c.subnet, c.reason) == (net("10.244.42.0/24"), "previous")
    # Outside the network, or the skipped first subnet: not reused.
    for bad in ("10.245.42.0/24", "10.244.0.0/24", "10.244.42.0/25"):
        assert choose_subnet(CONFIG, [], ip("192.0.2.1"), previous_subnet=net(bad)).reason == "random"


def test_own_lease_outside_a_changed_config_is_not_reused():
    c = choose_subnet(CONFIG, [lease("10.99.7.0/24", "192.0.2.1")], ip("192.0.2.1"))
    assert c.reason == "random" and c.subnet.subnet_of(CONFIG.network)


def test_random_choice_avoids_every_overlapping_key():
    config = parse_net_config('{"Network":"10.244.0.0/22","SubnetLen":24}')   # .1 .2 .3 usable
    leases = [lease("10.244.1.0/24", "192.0.2.1"), lease("10.244.2.0/25", "192.0.2.2")]
    for seed in range(20):
        c = choose_subnet(config, leases, ip("192.0.2.9"), rng=random.Random(seed))
        assert c.subnet == net("10.244.3.0/24")


def test_random_choice_spreads_over_the_pool():
    picks = {choose_subnet(CONFIG, [], ip("192.0.2.1"), rng=random.Random(s)).subnet for s in range(50)}
    assert len(picks) > 30


def test_exhausted_pool_names_network_and_subnet_len():
    config = parse_net_config('{"Network":"10.244.0.0/22","SubnetLen":24}')
    leases = [lease(f"10.244.{i}.0/24", f"192.0.2.{i}") for i in (1, 2, 3)]
    with pytest.raises(PoolExhausted, match=r"Network 10.244.0.0/22 with SubnetLen 24 offers 3 subnets"):
        choose_subnet(config, leases, ip("192.0.2.9"))


def test_dual_stack_picks_both_families_and_ipv6_pool_is_probed_not_listed():
    config = parse_net_config('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/16",'
                              '"IPv6SubnetLen":64}')
    taken = lease("10.244.5.0/24", "192.0.2.1", v6="fc00:0:0:5::/64")
    c = choose_subnet(config, [taken], ip("192.0.2.2"), public_ipv6=ip("2001:db8::2"))
    assert c.subnet.subnet_of(config.network) and c.ipv6_subnet.subnet_of(config.ipv6_network)
    assert c.ipv6_subnet.prefixlen == 64 and c.ipv6_subnet != taken.ipv6_subnet
    again = choose_subnet(config, [taken], ip("192.0.2.1"))
    assert again.reason == "own-lease" and again.ipv6_subnet == net("fc00:0:0:5::/64")


def test_a_wider_existing_key_blocks_every_subnet_inside_it():
    config = parse_net_config('{"Network":"10.244.0.0/21","SubnetLen":24}')   # .1 - .7 usable
    leases = [lease("10.244.0.0/22", "192.0.2.1"), lease("10.244.4.0/23", "192.0.2.2"),
              lease("10.244.6.0/24", "192.0.2.3")]
    picks = {choose_subnet(config, leases, ip("192.0.2.9"), rng=random.Random(s)).subnet for s in range(20)}
    assert picks == {net("10.244.7.0/24")}


def test_the_key_our_etcd_lease_holds_stays_ours_under_a_new_public_ip():
    held = lease("10.244.7.0/24", "192.0.2.1", lease_id=42)
    other = lease("10.244.8.0/24", "192.0.2.2", lease_id=43)
    choice = choose_subnet(CONFIG, [held, other], ipaddress.ip_address("192.0.2.101"), own_lease_id=42)
    assert choice.existing == held and str(choice.subnet) == "10.244.7.0/24" and choice.reason == "own-lease"
    # without our lease ID the old key is somebody else's: a new subnet is chosen
    fresh = choose_subnet(CONFIG, [held, other], ipaddress.ip_address("192.0.2.101"), rng=random.Random(1))
    assert fresh.existing is None and str(fresh.subnet) not in ("10.244.7.0/24", "10.244.8.0/24")
