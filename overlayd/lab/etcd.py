"""A real etcd server (Debian's etcd-server) with its data in a temporary directory."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Optional

from .cleanup import Cleanup
from .netns import LabError

ETCD_BIN = shutil.which("etcd") or "/usr/bin/etcd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class EtcdServer:
    host: str
    port: int
    peer_port: int
    data_dir: str
    proc: object                      # subprocess.Popen (or a stand-in for another process's server)
    netns: Optional[str] = None
    scheme: str = "http"
    cmd: list = field(default_factory=list)          # how it was started: start() runs it again
    client_tls: tuple[str, ...] = ()                 # etcdctl's --cacert/--cert/--key, for https

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def log_path(self) -> str:
        return os.path.join(self.data_dir, "etcd.log")

    def etcdctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = ["etcdctl", f"--endpoints={self.endpoint}", *self.client_tls, *args]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        env = dict(os.environ, ETCDCTL_API="3")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30)
        if check and proc.returncode != 0:
            raise LabError(f"etcdctl {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    def start(self, wait: float = 20.0) -> "EtcdServer":
        """Run the server (again: same address, same data) and wait until it answers."""
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                with open(self.log_path) as f:
                    raise LabError(f"etcd exited with {self.proc.returncode}: {f.read()[-2000:]}")
            if self.etcdctl("endpoint", "health", check=False).returncode == 0:
                return self
            time.sleep(0.1)
        raise LabError(f"etcd on {self.endpoint} did not become healthy within {wait:.0f}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_etcd(cleanup: Cleanup, *, host: str = "127.0.0.1", netns: Optional[str] = None,
               port: Optional[int] = None, tls=None, wait: float = 20.0, binary: str = ETCD_BIN) -> EtcdServer:
    """Start etcd listening on host (inside netns if given). Registers its stop and data removal.

    tls: an object with ca, server_cert, server_key, client_cert, client_key (file paths):
    the server then speaks https and requires client certificates; etcdctl uses the client's.
    """
    data_dir = tempfile.mkdtemp(prefix="overlayd-etcd-")
    cleanup.push(f"etcd data {data_dir}", lambda: shutil.rmtree(data_dir, ignore_errors=True))
    port = port or free_port()
    peer_port = free_port()
    scheme = "https" if tls is not None else "http"
    client_url = f"{scheme}://{host}:{port}"
    cmd = [binary, "--name", "lab", "--data-dir", data_dir,
           "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
           "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
           "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
           "--initial-cluster", f"lab=http://127.0.0.1:{peer_port}", "--log-level", "error"]
    client_tls: tuple[str, ...] = ()
    if tls is not None:
        cmd += ["--cert-file", tls.server_cert, "--key-file", tls.server_key,
                "--trusted-ca-file", tls.ca, "--client-cert-auth"]
        client_tls = (f"--cacert={tls.ca}", f"--cert={tls.client_cert}", f"--key={tls.client_key}")
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    server = EtcdServer(host, port, peer_port, data_dir, None, netns, scheme, cmd, client_tls)
    cleanup.push(f"etcd {client_url}", server.stop)
    return server.start(wait)
