"""A throw-away CA, server and client certificate made with the openssl CLI (for TLS tests).

Pass the Certs to overlayd.lab.etcd.start_etcd(tls=...) for an https etcd that requires them.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass


@dataclass
class Certs:
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def _openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(directory: str) -> Certs:
    d = directory
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=overlayd-test-ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    # The server certificate is also a client one (as kubeadm's etcd certificates are): etcd's JSON
    # gateway, which overlayd speaks, dials etcd's own gRPC port with it, and with
    # --client-cert-auth etcd refuses it otherwise (every /v3 call: UNAVAILABLE).
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                 "extendedKeyUsage=serverAuth,clientAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=overlayd-test-{name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)
    p = lambda n: os.path.join(d, n)  # noqa: E731
    return Certs(p("ca.crt"), p("server.crt"), p("server.key"), p("client.crt"), p("client.key"))
