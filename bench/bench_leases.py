"""Lease layer figures on a real etcd: acquiring with 250 leases present, applying a 5,000-lease snapshot.

`python -m bench leases`. Figures only; no pass/fail thresholds (the machine is shared).
"""
from __future__ import annotations

import ipaddress
import json
import random
import statistics
import time

from overlayd.lab.cleanup import Cleanup
from overlayd.lab.etcd import start_etcd
from subnet_lease.allocator import choose_subnet
from subnet_lease.backend import diff_leases
from subnet_lease.config import parse_net_config
from subnet_lease.etcd_api import put_op
from subnet_lease.etcd_backend import EtcdLeaseBackend, EtcdSettings
from subnet_lease.kube_backend import Annotations, lease_from_node
from subnet_lease.lease import Lease, lease_from_json

PREFIX = "/bench/network"


def _value(i: int) -> str:
    return json.dumps({"PublicIP": str(ipaddress.ip_address("198.18.0.0") + i), "BackendType": "vxlan",
                       "BackendData": {"VNI": 1, "VtepMAC": "0a:58:%02x:%02x:%02x:01" % (
                           i >> 16 & 255, i >> 8 & 255, i & 255)}}, separators=(",", ":"))


def _fill(backend: EtcdLeaseBackend, config, count: int) -> None:
    """`count` peer leases on one shared etcd lease, written 100 per transaction."""
    client = backend.conn.client()
    grant = client.grant(86400)
    subnets = list(config.network.subnets(new_prefix=config.subnet_len))[1:count + 1]
    for start in range(0, count, 100):
        ops = [put_op(f"{PREFIX}/subnets/{s.network_address}-{s.prefixlen}", _value(start + i), lease=grant.id)
               for i, s in enumerate(subnets[start:start + 100])]
        client.txn([], ops)


def _ms(samples: list[float]) -> str:
    return (f"median {statistics.median(samples) * 1000:.1f} ms, "
            f"p90 {sorted(samples)[int(len(samples) * 0.9) - 1] * 1000:.1f} ms")


def main() -> None:
    with Cleanup() as cleanup:
        server = start_etcd(cleanup)
        settings = EtcdSettings(endpoints=(server.endpoint,), prefix=PREFIX)
        config = parse_net_config('{"Network":"10.0.0.0/12"}')          # 4,095 /24s
        admin = EtcdLeaseBackend(settings)
        try:
            _fill(admin, config, 250)
            acquire_times = []
            for n in range(30):
                b = EtcdLeaseBackend(settings)
                template = Lease(None, ipaddress.ip_address("203.0.113.1") + n,
                                 backend_data={"VNI": 1, "VtepMAC": f"0a:58:00:00:01:{n:02x}"})
                t0 = time.perf_counter()
                lease = b.acquire(config, template)
                acquire_times.append(time.perf_counter() - t0)
                b.close()
                admin.conn.client().revoke(lease.lease_id)                  # back to 250 leases
            print(f"acquire with 250 leases present (new etcd lease, txn, overlap check): "
                  f"{_ms(acquire_times)} over {len(acquire_times)} runs")

            leases, _ = admin.snapshot()
            rng = random.Random(1)
            t0 = time.perf_counter()
            for _ in range(200):
                choose_subnet(config, leases, ipaddress.ip_address("203.0.113.200"), rng=rng)
            pure = (time.perf_counter() - t0) / 200
            print(f"  of which the pure allocator (250 leases, 4,095 candidates): {pure * 1000:.2f} ms "
                  f"= {pure / statistics.median(acquire_times):.0%} of an acquire")

            big = parse_net_config('{"Network":"10.0.0.0/8"}')
            admin.conn.client().delete_prefix(f"{PREFIX}/subnets/")
            _fill(admin, big, 5000)
            snap_times = []
            for _ in range(5):
                t0 = time.perf_counter()
                leases, revision = admin.snapshot()
                snap_times.append(time.perf_counter() - t0)
            assert len(leases) == 5000
            per = statistics.median(snap_times) / 5000
            print(f"snapshot of 5,000 leases (etcd range + parse): {_ms(snap_times)} "
                  f"= {per * 1e6:.1f} us per lease")

            # A daemon's start-up against 5,000 leases: find its lease, acquire, snapshot.
            restarted = Lease(None, ipaddress.ip_address("203.0.113.250"),
                              backend_data={"VNI": 1, "VtepMAC": "0a:58:00:00:02:fa"})
            admin.acquire(big, restarted)
            starts = {True: [], False: []}
            for _ in range(5):
                for reuse in (False, True):
                    b = EtcdLeaseBackend(settings)
                    t0 = time.perf_counter()
                    b.find_own_lease(restarted.public_ip)
                    b.acquire(big, restarted)
                    b.snapshot(reuse_start_read=reuse)
                    starts[reuse].append(time.perf_counter() - t0)
                    b.close()
            print(f"start-up store work with 5,000 leases (find own, acquire, snapshot): "
                  f"reading 3 times {_ms(starts[False])}; reading once (the daemon) {_ms(starts[True])}")

            known = {x.key: x for x in leases}
            changed = dict(known)
            for key in list(changed)[:100]:
                del changed[key]                     # 100 peers gone
            for i in range(100):                     # 100 new ones
                changed[f"10.250.{i}.0-24"] = lease_from_json(f"10.250.{i}.0-24", _value(9000 + i))
            t0 = time.perf_counter()
            events = diff_leases(known, changed)
            diff_t = time.perf_counter() - t0
            print(f"compaction resync diff, 5,000 known vs 5,000 fresh ({len(events)} events): "
                  f"{diff_t * 1000:.1f} ms")

            ann = Annotations("flannel.alpha.coreos.com")
            nodes = [{"metadata": {"name": f"n{i}", "annotations": {
                ann.backend_type: "vxlan", ann.public_ip: str(x.public_ip),
                ann.backend_data: json.dumps(x.backend_data)}}, "spec": {"podCIDR": str(x.subnet)}}
                for i, x in enumerate(leases)]
            t0 = time.perf_counter()
            parsed = [lease_from_node(n, ann) for n in nodes]
            kube_t = time.perf_counter() - t0
            assert all(parsed)
            print(f"kube: 5,000 Node objects to leases: {kube_t * 1000:.1f} ms "
                  f"= {kube_t / 5000 * 1e6:.1f} us per node; ratio to etcd snapshot parse+range: "
                  f"{kube_t / statistics.median(snap_times):.2f}")
        finally:
            admin.close()


if __name__ == "__main__":
    main()
