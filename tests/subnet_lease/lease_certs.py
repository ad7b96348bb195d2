"""A throw-away CA, server and client certificate made with the openssl CLI (for TLS tests)."""
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
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=overlayd-test-{name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)
    p = lambda n: os.path.join(d, n)  # noqa: E731
    return Certs(p("ca.crt"), p("server.crt"), p("server.key"), p("client.crt"), p("client.key"))


@dataclass
class OwnEtcd:
    """An etcd this test module starts itself (TLS, or restartable on the same port and data)."""
    url: str
    certs: "Certs | None"
    cmd: list
    log_path: str
    proc: "subprocess.Popen | None" = None

    def etcdctl(self, *args: str) -> str:
        tls = [f"--cacert={self.certs.ca}", f"--cert={self.certs.client_cert}",
               f"--key={self.certs.client_key}"] if self.certs else []
        cmd = ["etcdctl", f"--endpoints={self.url}", *tls, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                              env=dict(os.environ, ETCDCTL_API="3"))
        if proc.returncode:
            raise RuntimeError(f"etcdctl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def start(self) -> "OwnEtcd":
        import time
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}")
            try:
                self.etcdctl("endpoint", "health")
                return self
            except RuntimeError:
                time.sleep(0.1)
        raise RuntimeError(f"etcd on {self.url} did not become healthy")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def start_own_etcd(cleanup, directory: str, *, tls: bool = False) -> OwnEtcd:
    """etcd on a free loopback port with its data in `directory`; https + client certs if tls.

    (overlayd.lab.etcd.start_etcd checks health over http:// and cannot restart in place.)
    """
    from overlayd.lab.etcd import ETCD_BIN, free_port

    certs = make_certs(directory) if tls else None
    port, peer = free_port(), free_port()
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    cmd = [ETCD_BIN, "--name", "own", "--data-dir", os.path.join(directory, "data"),
           "--listen-client-urls", url, "--advertise-client-urls", url,
           "--listen-peer-urls", f"http://127.0.0.1:{peer}",
           "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
           "--initial-cluster", f"own=http://127.0.0.1:{peer}", "--log-level", "error"]
    if tls:
        cmd += ["--cert-file", certs.server_cert, "--key-file", certs.server_key,
                "--trusted-ca-file", certs.ca, "--client-cert-auth"]
    server = OwnEtcd(url, certs, cmd, os.path.join(directory, "etcd.log"))
    cleanup.push(f"etcd {url}", server.stop)
    return server.start()
