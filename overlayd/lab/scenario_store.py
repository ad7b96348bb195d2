"""Scenarios 1 and 2 (issue 14): the lease store blackholed, for all nodes or for the owner alone."""
from __future__ import annotations

import time
from typing import Optional

from . import probes
from .chaos import Blackhole
from .cluster import KUBE_API_PORT, Lab
from .scenario_base import Row, cross_node_pairs, leaks_between, public_ips, snapshot, teardown, wait_for

# -- 1 and 2: the lease store blackholed ------------------------------------------------------
def store_blackhole(*, seconds: float = 60.0, lease_ttl: Optional[int] = None, kube: bool = False,
                    nodes: int = 3, grace: float = 0.0, log=lambda m: None) -> dict:
    """Drop the lease store's packets for `seconds` while pods talk across nodes.

    Returned details: ping/TCP results, the subnets before/after, whether the store dropped the
    leases meanwhile (TTL shorter than the partition), whether any node touched its kernel
    entries during the partition, convergence after it, a new node's convergence (the watches
    work again), leaks.
    """
    name = "Kubernetes API" if kube else "etcd"
    args = ((f"--subnet-lease-ttl={lease_ttl}",) if lease_ttl else ()) + \
        ((f"--peer-removal-grace={grace:g}",) if grace else ())
    lab = Lab(kube=kube, daemon_args=args, log=log)
    out = {"scenario": f"{name} blackholed {seconds:.0f} s" + (f" (lease TTL {lease_ttl} s)" if lease_ttl else "")
           + (f", grace {grace:g} s" if grace else "")}
    pings, iperf = [], None
    try:
        lab.up(nodes, 1)
        if not lab.wait_converged(30):
            raise AssertionError(f"lab never converged: {probes.kernel_vs_leases(lab)}")
        subnets0, ips0 = lab.subnets(), public_ips(lab)
        kernel0 = {n.name: probes.kernel_entries(n.netns) for n in lab.nodes}
        before = snapshot(lab)
        pings = [probes.PingStream(a.netns, b.ip, 0.1) for a, b in cross_node_pairs(lab)]
        iperf = probes.Iperf(lab.pods[1].netns, lab.pods[1].ip, lab.pods[0].netns,
                             seconds=int(seconds + 25), interval=1, bitrate="2M").start()
        time.sleep(2)                              # the streams are established before the fault
        hole = Blackhole(lab.switch, KUBE_API_PORT if kube else 2379).start()
        store_lost_leases, kernel_changed = False, []
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            time.sleep(min(2.0, max(0.0, t_end - time.monotonic())))
            if not kube and not probes.store_leases(lab):
                store_lost_leases = True           # etcd expired them (the harness still reaches it)
            for n in lab.nodes:
                if probes.kernel_entries(n.netns) != kernel0[n.name]:
                    kernel_changed.append(n.name)
        out["dropped_packets"] = hole.dropped()
        hole.stop()
        t_lift = time.monotonic()

        def healed():
            return (lab.subnets() == subnets0 and public_ips(lab) == ips0
                    and not probes.kernel_vs_leases(lab))
        ok = wait_for(healed, 60)
        out["converge_s"] = time.monotonic() - t_lift if ok else None
        out["after_problems"] = [] if ok else probes.kernel_vs_leases(lab)
        # The watches work again: a node joining after the outage is seen by everyone.
        newcomer = lab.add_node(nodes + 1)
        lab.start_daemon(newcomer)
        lab.wait_for_subnet_file(newcomer, 60)
        out["newcomer_converged"] = bool(wait_for(lambda: lab.routes_converged()
                                                  and not probes.kernel_vs_leases(lab), 60))
        out["pings"] = [p.stop() for p in pings]
        out["tcp"] = iperf.result(timeout=seconds + 60)
        after = snapshot(lab)
        out["leaks"], out["rss_growth_kb"] = leaks_between(before, after)
        out.update(subnets_before=subnets0, subnets_after=lab.subnets(), store_lost_leases=store_lost_leases,
                   kernel_changed_during=sorted(set(kernel_changed)))
    finally:
        for p in pings:
            p.stop()
        if iperf is not None:
            iperf.kill()
        out.setdefault("leaks", [])
        out["leaks"] = out["leaks"] + teardown(lab)
    out["lost"] = sum(p["lost"] for p in out.get("pings", []))
    out["row"] = Row(out["scenario"], out["lost"], out.get("converge_s"), out["leaks"], out.get("rss_growth_kb"))
    return out


# -- 1b: only the owner cut off, past its TTL ----------------------------------------------
def owner_cut_off_past_ttl(*, lease_ttl: int = 8, newcomer: bool = False, log=lambda m: None) -> dict:
    """Only n1 loses etcd (nftables drops its packets), longer than its lease TTL; etcd expires
    its lease while n1 lives. With `newcomer`, the pool (4 subnets) has its one spare reserved
    and a fourth node joins during the partition: the only subnet that looks free is n1's
    expired one, which its quarantine key (--subnet-quarantine) keeps from the newcomer; the
    newcomer waits, and once the spare is released (still during the partition) takes the spare."""
    net_conf = {"Network": "10.244.0.0/16", "SubnetMin": "10.244.1.0", "SubnetMax": "10.244.4.0",
                "Backend": {"Type": "vxlan"}}
    lab = Lab(log=log, net_conf=net_conf, daemon_args=(f"--subnet-lease-ttl={lease_ttl}",))
    out = {"scenario": f"owner alone cut off {'+ newcomer ' if newcomer else ''}past TTL ({lease_ttl} s)"}
    hole = None
    spare_keys = []
    try:
        lab.up(3, 1)
        if not lab.wait_converged(30):
            raise AssertionError(f"lab never converged: {probes.kernel_vs_leases(lab)}")
        owner, peers = lab.nodes[0], lab.nodes[1:]
        subnet0 = lab.subnets()[owner.name]
        own_net = [s for s, v in probes.store_leases(lab).items() if v["public_ip"] == owner.underlay_ip][0]
        kernel0 = probes.kernel_entries(owner.netns)
        hole = Blackhole(lab.switch, 2379, sources=[owner.underlay_ip]).start()
        t0 = time.monotonic()
        out["expired_s"] = (time.monotonic() - t0) if wait_for(
            lambda: own_net not in probes.store_leases(lab), lease_ttl * 4) else None
        out["peers_dropped_owner_s"] = (time.monotonic() - t0) if wait_for(
            lambda: all(own_net not in probes.kernel_entries(p.netns).routes for p in peers), 30) else None
        if newcomer:
            free = [f"10.244.{i}.0/24" for i in range(1, 5) if f"10.244.{i}.0/24" not in probes.store_leases(lab)
                    and f"10.244.{i}.0/24" != own_net]
            for net in free:                           # reserve the spare: only n1's is left
                spare_keys.append(f"/coreos.com/network/subnets/{net.replace('/', '-')}")
                lab.etcd.etcdctl("put", spare_keys[-1],
                                 '{"PublicIP":"198.18.0.99","BackendType":"vxlan","BackendData":'
                                 '{"VNI":1,"VtepMAC":"02:00:00:00:00:99"}}')
            n4 = lab.add_node(4)
            lab.start_daemon(n4)
            # It retries (SubnetsQuarantined); give it time to be handed n1's subnet if it could be.
            out["newcomer_waiting"] = bool(wait_for(
                lambda: "quarantine" in open(n4.log_file).read(), 30))
            out["newcomer_subnet"] = lab.subnets().get("n4")
            out["newcomer_took_owners_subnet"] = out["newcomer_subnet"] == subnet0
        out["owner_kernel_kept"] = probes.kernel_entries(owner.netns) == kernel0
        out["owner_subnet_file_kept"] = lab.subnets()[owner.name] == subnet0
        if newcomer:
            # The spare is released while n1 is still cut off: the newcomer takes it, not n1's
            # held subnet. (Released after the partition, it raced n1's return: a newcomer that
            # retried between n1 taking its subnet back and the release found the pool full and
            # exited, PoolExhausted.)
            for key in spare_keys:
                lab.etcd.etcdctl("del", key)
        out["partition_s"] = hole.stop()
        t_lift = time.monotonic()
        if newcomer:
            # n1 takes its subnet back; the newcomer has the spare.
            wait_for(lambda: own_net in probes.store_leases(lab), 30)
            lab.wait_for_subnet_file(n4, 60)
            out["newcomer_subnet_after"] = lab.subnets().get("n4")
        ok = wait_for(lambda: not probes.kernel_vs_leases(lab) and lab.routes_converged(), 60)
        out["converge_s"] = time.monotonic() - t_lift if ok else None
        out["owner_subnet_after"] = lab.subnets()[owner.name]
        out["owner_kept_subnet"] = out["owner_subnet_after"] == subnet0
        out["subnets_after"] = lab.subnets()
        out["problems_after"] = [] if ok else probes.kernel_vs_leases(lab)
        out["leaks"] = []
    finally:
        if hole is not None:
            hole.stop()
        out.setdefault("leaks", [])
        out["leaks"] = out["leaks"] + teardown(lab)
    collision = out.get("newcomer_took_owners_subnet") or (
        newcomer and out.get("newcomer_subnet_after") in (None, out.get("owner_subnet_after")))
    out["row"] = Row(out["scenario"], None, out.get("converge_s"),
                     out["leaks"] + (["newcomer handed the live owner's subnet"] if collision else []), None)
    return out
