"""TLS (certificates made by the test) and etcd user auth, through flanneld's flag names."""
from __future__ import annotations

import argparse
import ipaddress
import shutil
import tempfile

import pytest

from lease_certs import make_certs
from overlayd.backend_flags import add_backend_arguments, make_backend
from overlayd.lab.etcd import start_etcd
from subnet_lease.backend import BackendUnavailable
from subnet_lease.lease import Lease
from watching import Collector, wait_for

NETCONF = '{"Network":"10.244.0.0/16"}'
TEMPLATE = Lease(subnet=None, public_ip=ipaddress.ip_address("192.0.2.1"),
                 backend_data={"VNI": 1, "VtepMAC": "0a:58:00:00:00:01"})


def backend_from_flags(*argv):
    parser = argparse.ArgumentParser()
    add_backend_arguments(parser)
    return make_backend(parser.parse_args(list(argv)))


def test_tls_with_client_certificates(cleanup):
    tmp = tempfile.mkdtemp(prefix="overlayd-tls-")
    cleanup.push(f"tmp {tmp}", lambda: shutil.rmtree(tmp, ignore_errors=True))
    certs = make_certs(tmp)
    server = start_etcd(cleanup, tls=certs)
    url = server.endpoint
    server.etcdctl("put", "/coreos.com/network/config", NETCONF)

    b = backend_from_flags("--etcd-endpoints", url, "--etcd-cafile", certs.ca,
                           "--etcd-certfile", certs.client_cert, "--etcd-keyfile", certs.client_key)
    try:
        lease = b.acquire(b.get_network_config(), TEMPLATE)
        out = server.etcdctl("get", f"/coreos.com/network/subnets/{lease.key}", "--print-value-only").stdout
        assert '"PublicIP":"192.0.2.1"' in out
        # The watch streams over TLS too.
        _, revision = b.snapshot()
        col = Collector(b, revision, shape=lambda e: (e.kind, e.lease.key))
        try:
            server.etcdctl("put", "/coreos.com/network/subnets/10.244.99.0-24",
                           '{"PublicIP":"192.0.2.99","BackendType":"vxlan"}')
            wait_for(lambda: col.seen() == [("added", "10.244.99.0-24")], what="a peer seen over TLS")
        finally:
            col.close()
    finally:
        b.close()

    # Without a client certificate the server refuses us, and we say so (not a hang, not a crash).
    anon = backend_from_flags("--etcd-endpoints", url, "--etcd-cafile", certs.ca)
    try:
        with pytest.raises(BackendUnavailable, match="etcd get config at https://127.0.0.1"):
            anon.get_network_config()
    finally:
        anon.close()


def test_username_and_password(cleanup, monkeypatch):
    server = start_etcd(cleanup)
    server.etcdctl("user", "add", "root:rootpw", "--interactive=false")
    server.etcdctl("user", "add", "flannel:s3cret", "--interactive=false")
    server.etcdctl("role", "add", "flannel")
    server.etcdctl("role", "grant-permission", "flannel", "--prefix=true", "readwrite", "/coreos.com/network/")
    server.etcdctl("user", "grant-role", "flannel", "flannel")
    server.etcdctl("auth", "enable")
    monkeypatch.setenv("ETCDCTL_USER", "root:rootpw")
    server.etcdctl("put", "/coreos.com/network/config", NETCONF)

    b = backend_from_flags("--etcd-endpoints", server.endpoint, "--etcd-username", "flannel",
                           "--etcd-password", "s3cret")
    try:
        lease = b.acquire(b.get_network_config(), TEMPLATE)
        assert lease.lease_id
        leases, _ = b.snapshot()
        assert leases == [lease]
    finally:
        b.close()

    wrong = backend_from_flags("--etcd-endpoints", server.endpoint, "--etcd-username", "flannel",
                               "--etcd-password", "nope")
    try:
        with pytest.raises(BackendUnavailable, match="authentication"):
            wrong.get_network_config()
    finally:
        wrong.close()
