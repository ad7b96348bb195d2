"""A real etcd server (Debian's etcd-server) with its data in a temporary directory."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
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
    proc: subprocess.Popen
    netns: Optional[str] = None
    scheme: str = "http"

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def etcdctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = ["etcdctl", f"--endpoints={self.endpoint}", *args]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        env = dict(os.environ, ETCDCTL_API="3")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30)
        if check and proc.returncode != 0:
            raise LabError(f"etcdctl {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_etcd(cleanup: Cleanup, *, host: str = "127.0.0.1", netns: Optional[str] = None,
               port: Optional[int] = None, extra_args: tuple[str, ...] = (),
               scheme: str = "http", wait: float = 20.0, data_dir: Optional[str] = None) -> EtcdServer:
    """Start etcd listening on host (inside netns if given). Registers its stop and data removal.

    With data_dir (an earlier server's), the store carries on where that server stopped.
    """
    if data_dir is None:
        data_dir = tempfile.mkdtemp(prefix="overlayd-etcd-")
        cleanup.push(f"etcd data {data_dir}", lambda: shutil.rmtree(data_dir, ignore_errors=True))
    port = port or free_port()
    peer_port = free_port()
    client_url = f"{scheme}://{host}:{port}"
    cmd = [ETCD_BIN, "--name", "lab", "--data-dir", data_dir,
           "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
           "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
           "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
           "--initial-cluster", f"lab=http://127.0.0.1:{peer_port}",
           "--log-level", "error", *extra_args]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    log = open(os.path.join(data_dir, "etcd.log"), "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    server = EtcdServer(host, port, peer_port, data_dir, proc, netns, scheme)
    cleanup.push(f"etcd pid {proc.pid}", server.stop)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(os.path.join(data_dir, "etcd.log")) as f:
                raise LabError(f"etcd exited with {proc.returncode}: {f.read()[-2000:]}")
        if server.etcdctl("endpoint", "health", check=False).returncode == 0:
            return server
        time.sleep(0.1)
    raise LabError(f"etcd on {client_url} did not become healthy within {wait:.0f}s")
