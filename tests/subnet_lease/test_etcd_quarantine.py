"""A subnet whose lease expired while its owner lived goes to nobody else (etcd_quarantine).

The owner "cut off from etcd" is a backend whose keeper is stopped (nothing renews its lease)
and whose subnet lease is revoked, as etcd does when the TTL runs out. Real etcd throughout.
"""
from __future__ import annotations

import json

import pytest

from subnet_lease.allocator import PoolExhausted
from subnet_lease.backend import BackendUnavailable, SubnetsQuarantined
from test_etcd_robustness import SMALL, peer_value, template
from watching import wait_for


def cut_off(etcd_server, etcd_prefix, backend, lease):
    """The owner stops renewing (its keeper is gone) and etcd expires its subnet lease."""
    backend.close()
    etcd_server.etcdctl("lease", "revoke", f"{lease.lease_id:x}")
    assert not etcd_server.etcdctl("get", f"{etcd_prefix}/subnets/{lease.key}").stdout.strip()


def reserve(etcd_server, etcd_prefix, *subnets):
    for net in subnets:
        etcd_server.etcdctl("put", f"{etcd_prefix}/subnets/{net}", peer_value(99))


def hold(etcd_server, etcd_prefix, lease):
    out = etcd_server.etcdctl("get", f"{etcd_prefix}/quarantine/{lease.key}", "--print-value-only").stdout
    return json.loads(out) if out.strip() else None


def test_each_node_holds_its_subnet_in_quarantine(make, etcd_server, etcd_prefix):
    lease = make().acquire(SMALL, template(1))
    assert hold(etcd_server, etcd_prefix, lease) == {"PublicIP": "192.0.2.1"}


def test_an_expired_lease_of_a_live_owner_is_not_handed_to_a_newcomer(make, etcd_server, etcd_prefix):
    owner = make()
    lease = owner.acquire(SMALL, template(1))
    others = [f"10.244.{i}.0-24" for i in (1, 2, 3) if f"10.244.{i}.0-24" != lease.key]
    reserve(etcd_server, etcd_prefix, others[0])
    cut_off(etcd_server, etcd_prefix, owner, lease)
    # The newcomer gets the one free subnet, not the owner's, though both look free in subnets/.
    newcomer = make().acquire(SMALL, template(2))
    assert newcomer.subnet != lease.subnet
    # With the pool full but for the quarantined subnet: a retryable error naming the reason.
    with pytest.raises(SubnetsQuarantined, match="--subnet-quarantine") as err:
        make().acquire(SMALL, template(3))
    assert isinstance(err.value, BackendUnavailable)
    assert str(lease.subnet) in str(err.value)
    # The owner reaches etcd again (a new process: its subnet file names the subnet): same subnet.
    back = make().acquire(SMALL, template(1), previous_subnet=lease.subnet)
    assert back.subnet == lease.subnet
    assert hold(etcd_server, etcd_prefix, back) == {"PublicIP": "192.0.2.1"}


def test_without_quarantine_the_newcomer_is_handed_the_live_owners_subnet(make, etcd_server, etcd_prefix):
    """The control: what flannel does, and what --subnet-quarantine=0 gives back."""
    owner = make(quarantine=0)
    lease = owner.acquire(SMALL, template(1))
    assert hold(etcd_server, etcd_prefix, lease) is None
    reserve(etcd_server, etcd_prefix, *[f"10.244.{i}.0-24" for i in (1, 2, 3) if f"10.244.{i}.0-24" != lease.key])
    cut_off(etcd_server, etcd_prefix, owner, lease)
    assert make(quarantine=0).acquire(SMALL, template(2)).subnet == lease.subnet


def test_a_dead_nodes_subnet_is_free_again_after_ttl_plus_quarantine(make, etcd_server, etcd_prefix):
    owner = make(lease_ttl=5, quarantine=2)
    lease = owner.acquire(SMALL, template(1))
    reserve(etcd_server, etcd_prefix, *[f"10.244.{i}.0-24" for i in (1, 2, 3) if f"10.244.{i}.0-24" != lease.key])
    cut_off(etcd_server, etcd_prefix, owner, lease)
    with pytest.raises(SubnetsQuarantined):
        make(lease_ttl=5, quarantine=2).acquire(SMALL, template(2))
    wait_for(lambda: hold(etcd_server, etcd_prefix, lease) is None, timeout=20, what="the hold expiring")
    assert make(lease_ttl=5, quarantine=2).acquire(SMALL, template(2)).subnet == lease.subnet


def test_a_full_pool_without_quarantined_subnets_is_still_pool_exhausted(make, etcd_server, etcd_prefix):
    reserve(etcd_server, etcd_prefix, "10.244.1.0-24", "10.244.2.0-24", "10.244.3.0-24")
    with pytest.raises(PoolExhausted):
        make().acquire(SMALL, template(2))


def test_the_keeper_renews_the_hold_with_the_lease(make, etcd_server, etcd_prefix):
    """A hold of TTL 5 + 1 s is still there after 4 renewals (>= 10 s): it is renewed too."""
    b = make(lease_ttl=5, quarantine=1, check_interval=0.5)
    lease = b.acquire(SMALL, template(1))
    wait_for(lambda: b.health().renewals >= 4, timeout=30, what="four renewals")
    assert hold(etcd_server, etcd_prefix, lease) == {"PublicIP": "192.0.2.1"}
