"""Writes fake peer leases into the bench's etcd, from inside the namespace etcd listens in.

Run by bench/sidebyside.py as `ip netns exec <switch> python -m bench.etcd_writer URL PREFIX`; one
command per stdin line, one answer per stdout line:

    fill A B   peers A..B-1 (100 per transaction, on one 24 h etcd lease)   -> "ok"
    put I      peer I                                                       -> "ok <monotonic time before the put>"
    del I      peer I                                                       -> "ok <monotonic time before the delete>"

Peer I: subnet 10.a.b.0/24 with a.b = I + 1 (never 10.0.0.0/24), PublicIP 198.18.0.0 + I + 1 (fake,
never routed), VtepMAC 0a:58:xx:xx:xx:01: the lease JSON flannel writes.
"""
from __future__ import annotations

import ipaddress
import json
import sys
import time

import pyetcd

from subnet_lease.etcd_client import parse_endpoint

NET_CONF = {"Network": "10.0.0.0/8", "SubnetLen": 24, "Backend": {"Type": "vxlan"}}


def subnet(i: int) -> str:
    return f"10.{(i + 1) >> 8 & 255}.{(i + 1) & 255}.0/24"


def mac(i: int) -> str:
    return f"0a:58:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}:01"


def value(i: int) -> str:
    return json.dumps({"PublicIP": str(ipaddress.ip_address("198.18.0.0") + i + 1), "BackendType": "vxlan",
                       "BackendData": {"VNI": 1, "VtepMAC": mac(i)}}, separators=(",", ":"))


def entries(i: int) -> list[tuple]:
    """The kernel_watch keys of peer i's three entries on a node."""
    return [("route", subnet(i)), ("neigh", subnet(i).split("/")[0]), ("fdb", mac(i))]


def main(url: str, prefix: str) -> None:
    # pyetcd (gRPC) on purpose: a client other than the daemon's writes what the daemons read.
    _, host, port = parse_endpoint(url)
    client = pyetcd.client(host, port)
    client.put(f"{prefix}/config", json.dumps(NET_CONF))
    grant = client.lease(86400).id

    def key(i: int) -> str:
        return f"{prefix}/subnets/{subnet(i).replace('/', '-')}"

    print("ok", flush=True)
    for line in sys.stdin:
        verb, *args = line.split()
        if verb == "fill":
            a, b = map(int, args)
            for start in range(a, b, 100):
                client.transaction(compare=[], failure=[], success=[
                    client.transactions.put(key(i), value(i), lease=grant) for i in range(start, min(b, start + 100))])
            print("ok", flush=True)
        elif verb == "put":
            i = int(args[0])
            at = time.monotonic()
            client.put(key(i), value(i), lease=grant)
            print(f"ok {at}", flush=True)
        elif verb == "del":
            i = int(args[0])
            at = time.monotonic()
            client.delete(key(i))
            print(f"ok {at}", flush=True)
        else:
            print(f"error: unknown command {verb!r}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
