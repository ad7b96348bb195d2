"""A full reconcile planned and applied chunk by chunk (apply_pipeline.py, FamilyPath.full): the
kernel must end up with exactly what one big plan would have given it, in the same order, and a
failure must stop it the way one big apply stops."""
import ipaddress
import threading

import pytest

from subnet_lease.lease import Lease
from overlayd.apply_pipeline import ApplyPipeline
from overlayd.datapath import FULL_CHUNK, FamilyConfig, FamilyPath
from overlayd.desired import desired_entries
from overlayd.diff import plan_changes
from overlayd.entries import Entries, FdbEntry, NeighEntry, PeerEntries, Plan, RouteEntry
from overlayd.errors import DeviceMissing
from overlayd.netlink import ApplyResult


def lease(n: int) -> Lease:
    a, b = divmod(n, 250)
    return Lease(subnet=ipaddress.ip_network(f"10.{a + 1}.{b}.0/24"),
                 public_ip=ipaddress.ip_address(f"198.18.{a}.{b + 1}"),
                 backend_data={"VNI": 1, "VtepMAC": f"0a:58:00:00:{a:02x}:{b:02x}"})


OWN = Lease(subnet=ipaddress.ip_network("10.200.0.0/24"), public_ip=ipaddress.ip_address("192.0.2.1"),
            backend_data={"VNI": 1, "VtepMAC": "0a:58:ff:ff:ff:ff"})


def route_plan(*dsts: str) -> Plan:
    return Plan(add=[PeerEntries(route=RouteEntry(dst=d, gateway=d.split("/")[0])) for d in dsts])


class Recorder:
    def __init__(self, fail_on=None):
        self.plans, self.threads, self.fail_on = [], set(), fail_on

    def __call__(self, plan):
        self.threads.add(threading.current_thread().name)
        self.plans.append(plan)
        if self.fail_on is not None and len(self.plans) == self.fail_on:
            raise DeviceMissing("add route", 19, "flannel.1 went away")
        result = ApplyResult()
        for _ in plan.add:
            result.count("add_route")
        return result


def test_chunks_reach_the_kernel_in_order_from_one_thread_and_their_counts_add_up():
    rec = Recorder()
    pipe = ApplyPipeline(rec)
    for i in range(5):
        pipe.submit(route_plan(f"10.{i}.0.0/24", f"10.{i}.1.0/24"))
    pipe.submit(Plan())                          # nothing to do: never sent
    result = pipe.finish()
    assert [p.add[0].route.dst for p in rec.plans] == [f"10.{i}.0.0/24" for i in range(5)]
    assert rec.threads == {"apply"}
    assert result.counts == {"add_route": 10}


def test_a_device_gone_mid_way_stops_the_rest_and_is_raised_to_the_caller():
    rec = Recorder(fail_on=2)
    pipe = ApplyPipeline(rec)
    for i in range(4):
        pipe.submit(route_plan(f"10.{i}.0.0/24"))
    with pytest.raises(DeviceMissing, match="went away"):
        pipe.finish()
    assert len(rec.plans) == 2                   # chunks 3 and 4 were never sent


def test_finish_quietly_waits_without_raising():
    rec = Recorder(fail_on=1)
    pipe = ApplyPipeline(rec)
    pipe.submit(route_plan("10.0.0.0/24"))
    assert pipe.finish(quiet=True).counts == {}


class FakeNetlink:
    """dump_entries() returns what the test says the kernel holds; apply() records each plan."""

    def __init__(self, actual: Entries):
        self.actual, self.plans = actual, []

    def dump_entries(self, index, family, direct_within=None):
        return self.actual

    def apply(self, plan, device_index, underlay_index):
        self.plans.append(plan)
        return ApplyResult()


def family_path(nl) -> FamilyPath:
    cfg = FamilyConfig(family=4, device_name="flannel.1", vni=1, port=8472, local_ip="192.0.2.1",
                       underlay_index=2, underlay_mtu=1500, underlay_net=ipaddress.ip_network("192.0.2.0/24"),
                       network=ipaddress.ip_network("10.0.0.0/8"))
    path = FamilyPath(nl, cfg)

    class Dev:
        index = 5
    path.device = Dev()
    return path


def test_a_chunked_full_reconcile_asks_the_kernel_for_exactly_what_one_plan_would():
    peers = [lease(i) for i in range(2 * FULL_CHUNK + 37)] + [OWN]
    desired = desired_entries(OWN, peers)
    actual = Entries()
    for i in range(0, 40, 2):                    # some peers already programmed, right
        pe = PeerEntries(route=RouteEntry(f"10.1.{i}.0/24", f"10.1.{i}.0"),
                         neigh=NeighEntry(f"10.1.{i}.0", f"0a:58:00:00:00:{i:02x}"),
                         fdb=FdbEntry(f"0a:58:00:00:00:{i:02x}", f"198.18.0.{i + 1}"))
        actual.add_peer(pe)
    actual.routes["10.1.1.0/24"] = RouteEntry("10.1.1.0/24", "10.9.9.0")        # wrong gateway
    actual.neighs["10.250.0.0"] = NeighEntry("10.250.0.0", "0a:58:de:ad:00:01")  # a peer gone
    actual.fdbs.add(FdbEntry("0a:58:de:ad:00:01", "198.18.99.1"))
    actual.routes["10.250.0.0/24"] = RouteEntry("10.250.0.0/24", "10.250.0.0")
    want = plan_changes(desired, actual)

    nl = FakeNetlink(actual)
    path = family_path(nl)
    started = []
    path.before_full_apply = lambda: started.append(len(nl.plans))
    plan, _ = path.full(OWN, peers)

    assert started == [0]                        # told once, before anything reached the kernel
    assert len(nl.plans) > 3                     # it really went in chunks
    sent_adds = [p for part in nl.plans for p in part.add]
    assert sent_adds == want.add                 # the same additions, in the same order
    assert nl.plans[-1].del_routes == want.del_routes and nl.plans[-1].add == []   # removals last
    assert sorted(map(repr, nl.plans[-1].del_fdbs)) == sorted(map(repr, want.del_fdbs))
    assert nl.plans[-1].del_neighs == want.del_neighs
    assert plan.add == want.add and plan.del_routes == want.del_routes
    assert set(path.programmed) == {p.key for p in peers if p is not OWN}
