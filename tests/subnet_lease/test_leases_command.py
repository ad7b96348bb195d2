"""`overlayd leases` as an operator runs it: the installed executable, a table and --json."""
from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys

import pytest

from kube_emulator import KubeEmulator
from subnet_lease.config import parse_net_config
from subnet_lease.etcd_backend import EtcdLeaseBackend, EtcdSettings
from subnet_lease.lease import Lease

OVERLAYD = os.path.join(os.path.dirname(sys.executable), "overlayd")
CONFIG = parse_net_config('{"Network":"10.244.0.0/16"}')


def overlayd(*args, env=None):
    return subprocess.run([OVERLAYD, *args], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **(env or {})))


def test_etcd_leases_table_and_json(etcd_server, etcd_prefix):
    mine = EtcdLeaseBackend(EtcdSettings(endpoints=(etcd_server.endpoint,), prefix=etcd_prefix))
    try:
        own = mine.acquire(CONFIG, Lease(None, ipaddress.ip_address("192.0.2.10"),
                                         backend_data={"VNI": 1, "VtepMAC": "0a:58:00:00:00:10"}))
        reserved = "10.244.201.0-24" if own.key == "10.244.200.0-24" else "10.244.200.0-24"   # not ours
        etcd_server.etcdctl("put", f"{etcd_prefix}/subnets/{reserved}",
                            '{"PublicIP":"192.0.2.99","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:58:00:00:00:99"}}')
        flags = ["--etcd-endpoints", etcd_server.endpoint, "--etcd-prefix", etcd_prefix,
                 "--public-ip", "192.0.2.10"]
        proc = overlayd("leases", "--json", *flags)
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        rows = {r["key"]: r for r in doc["leases"]}
        r = rows[own.key]
        assert r["own"] and r["public_ip"] == "192.0.2.10" and r["vtep_mac"] == "0a:58:00:00:00:10"
        assert r["lease_id"] == format(own.lease_id, "016x") and 86000 < r["ttl"] <= 86400
        assert rows[reserved]["reserved"] and not rows[reserved]["own"]

        table = overlayd("leases", *flags)
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].split() == ["SUBNET", "PUBLIC-IP", "VTEP-MAC", "TYPE", "LEASE-ID", "TTL", "NODE", "OWN"]
        own_line = next(line for line in lines if str(own.subnet) in line)
        assert own_line.split()[-1] == "*" and format(own.lease_id, "016x") in own_line
        assert "reserved" in next(line for line in lines if reserved.replace("-", "/") in line)
        assert "2 lease(s) in etcd" in lines[-1]
    finally:
        mine.close()


def test_unreachable_etcd_is_a_clear_error_not_a_traceback():
    proc = overlayd("leases", "--etcd-endpoints", "http://127.0.0.1:9", "--json")
    assert proc.returncode == 1
    assert "etcd" in proc.stderr and "127.0.0.1:9" in proc.stderr and "Traceback" not in proc.stderr


def test_kube_leases_mark_this_node(tmp_path):
    emu = KubeEmulator().start()
    try:
        ann = {"flannel.alpha.coreos.com/backend-type": "vxlan",
               "flannel.alpha.coreos.com/public-ip": "192.0.2.2",
               "flannel.alpha.coreos.com/backend-data": '{"VNI":1,"VtepMAC":"0a:58:00:00:00:02"}'}
        emu.add_node("node-1", "10.244.1.0/24", annotations=ann)
        emu.add_node("node-2", "10.244.2.0/24", annotations={**ann, "flannel.alpha.coreos.com/public-ip": "192.0.2.3"})
        proc = overlayd("leases", "--json", "--kube-subnet-mgr", "--kube-api-url", emu.url,
                        env={"NODE_NAME": "node-2"})
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["backend"] == "kube"
        assert [(r["node"], r["subnets"], r["own"]) for r in doc["leases"]] == [
            ("node-1", ["10.244.1.0/24"], False), ("node-2", ["10.244.2.0/24"], True)]
    finally:
        emu.stop()


@pytest.mark.parametrize("argv,needle", [
    (["--public-ip", "nope"], "nope"),
    (["--etcd-endpoints", "ftp://x"], "not an etcd URL"),
])
def test_bad_flags_are_named(argv, needle):
    proc = overlayd("leases", *argv)
    assert proc.returncode == 2 and needle in proc.stderr
