"""`overlayd leases`: every lease of the configured store, and which one is this node's."""
from __future__ import annotations

import argparse
import ipaddress
import json
import subprocess
import sys
from typing import Optional

from overlayd.backend_flags import add_backend_arguments, make_backend
from subnet_lease.backend import LeaseError
from subnet_lease.config import ConfigError
from subnet_lease.lease import Lease

HELP = "list the subnet leases (etcd or Node podCIDRs): subnet, PublicIP, VTEP MAC, lease ID, TTL"

COLUMNS = ("SUBNET", "PUBLIC-IP", "VTEP-MAC", "TYPE", "LEASE-ID", "TTL", "NODE", "OWN")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_backend_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument("--public-ip", default=None,
                        help="this node's PublicIP, to mark its lease (default: any address of this host)")


def local_addresses() -> set:
    """This host's addresses (in the current network namespace), via `ip -j addr`."""
    try:
        out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True,
                             timeout=10, check=True).stdout
        return {ipaddress.ip_address(a["local"]) for link in json.loads(out)
                for a in link.get("addr_info", []) if "local" in a}
    except (OSError, ValueError, subprocess.SubprocessError):
        return set()


def lease_row(lease: Lease, own: bool, kube: bool) -> dict:
    subnets = [str(s) for s in (lease.subnet, lease.ipv6_subnet) if s is not None]
    reserved = not kube and lease.lease_id is None
    return {
        "key": lease.key,
        "subnets": subnets,
        "public_ip": str(lease.public_ip) if lease.public_ip else None,
        "public_ipv6": str(lease.public_ipv6) if lease.public_ipv6 else None,
        "vtep_mac": lease.vtep_mac,
        "backend_type": lease.backend_type,
        "lease_id": format(lease.lease_id, "016x") if lease.lease_id else None,   # as etcdctl prints it
        "ttl": lease.ttl if lease.lease_id else None,
        "reserved": reserved,
        "node": lease.node_name,
        "own": own,
    }


def render_table(rows: list[dict]) -> str:
    cells = [COLUMNS]
    for r in rows:
        ips = ",".join(x for x in (r["public_ip"], r["public_ipv6"]) if x)
        cells.append((",".join(r["subnets"]), ips or "-", r["vtep_mac"] or "-", r["backend_type"],
                      r["lease_id"] or "-", "reserved" if r["reserved"] else
                      (f"{r['ttl']}s" if r["ttl"] is not None else "-"),
                      r["node"] or "-", "*" if r["own"] else ""))
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def collect(args: argparse.Namespace, environ=None) -> dict:
    backend = make_backend(args, environ)
    kube = bool(getattr(args, "kube_subnet_mgr", False))
    try:
        if hasattr(backend, "leases_with_ttl"):
            leases, revision = backend.leases_with_ttl()
        else:
            leases, revision = backend.snapshot()
        own_name: Optional[str] = None
        if kube:
            try:
                own_name = backend.node_name()
            except (ConfigError, LeaseError):
                own_name = None
        mine = {ipaddress.ip_address(args.public_ip)} if args.public_ip else local_addresses()
    finally:
        backend.close()

    def is_own(lease: Lease) -> bool:
        if kube:
            return own_name is not None and lease.node_name == own_name
        return lease.public_ip in mine or lease.public_ipv6 in mine

    leases = sorted(leases, key=lambda x: (x.subnet is None, x.subnet or 0, str(x.ipv6_subnet)))
    return {"backend": "kube" if kube else "etcd", "revision": revision,
            "leases": [lease_row(x, is_own(x), kube) for x in leases]}


def run(args: argparse.Namespace) -> int:
    try:
        if args.public_ip:
            ipaddress.ip_address(args.public_ip)
        doc = collect(args)
    except ValueError as err:   # ConfigError and a bad --public-ip
        print(f"overlayd leases: {err}", file=sys.stderr)
        return 2
    except LeaseError as err:
        print(f"overlayd leases: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(render_table(doc["leases"]))
        print(f"{len(doc['leases'])} lease(s) in {doc['backend']} at revision {doc['revision']}")
    return 0
