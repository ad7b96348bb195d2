"""A real Prometheus server (Debian's `prometheus`) in the lab, scraping every node's /metrics.

    <lab>-sw : prometheus --web.listen-address=127.0.0.1:9090 (the switch's own loopback)
               socat: <workdir>/prometheus.sock  ->  127.0.0.1:9090
    targets  : every node's 192.0.2.I:8471/metrics over the underlay, labelled node="nI"

Prometheus runs inside the switch namespace and listens on that namespace's loopback only; the
lab (and you) reach its HTTP API from the root namespace through a Unix socket that socat, also
in the switch namespace, relays to it. No address is added outside the lab's namespaces. The
alert rules of monitoring/ are loaded, so `ALERTS` shows what would fire.
"""
from __future__ import annotations

import dataclasses
import http.client
import json
import os
import socket
import subprocess
import time
import urllib.parse
from typing import Optional, Sequence

from .netns import LabError
from .procs import stop_popen, tail

LISTEN = "127.0.0.1:9090"
SCRAPE_INTERVAL = "1s"
JOB = "overlayd"
RULES_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "monitoring", "overlayd-rules.yml")


@dataclasses.dataclass
class PrometheusServer:
    socket: str
    pid: int
    relay_pid: int
    log_file: str
    config_file: str

    @property
    def client(self) -> "PrometheusClient":
        return PrometheusClient(self.socket)


def render_config(targets: Sequence[tuple[str, str]], rule_files: Sequence[str] = ()) -> str:
    """prometheus.yml (JSON is YAML): one job, one static target per node with a `node` label."""
    doc = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": list(rule_files),
        "scrape_configs": [{
            "job_name": JOB, "scrape_timeout": SCRAPE_INTERVAL,
            "static_configs": [{"targets": [addr], "labels": {"node": node}} for node, addr in targets],
        }],
    }
    return json.dumps(doc, indent=1)


def start(netns: str, workdir: str, targets: Sequence[tuple[str, str]], cleanup, *,
          rules: Optional[str] = RULES_FILE, wait: float = 30.0) -> PrometheusServer:
    """Prometheus and its relay in `netns`; both registered with `cleanup`."""
    base = os.path.join(workdir, "prometheus")
    os.makedirs(os.path.join(base, "data"), exist_ok=True)
    config = os.path.join(base, "prometheus.yml")
    with open(config, "w") as f:
        f.write(render_config(targets, [rules] if rules and os.path.exists(rules) else []))
    log_file = os.path.join(base, "prometheus.log")
    sock = os.path.join(workdir, "prometheus.sock")
    procs = []
    with open(log_file, "a") as log:
        procs.append(subprocess.Popen(
            ["ip", "netns", "exec", netns, "prometheus", f"--config.file={config}",
             f"--storage.tsdb.path={os.path.join(base, 'data')}", f"--web.listen-address={LISTEN}",
             "--storage.tsdb.retention.time=1d", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True))
        procs.append(subprocess.Popen(
            ["ip", "netns", "exec", netns, "socat", f"UNIX-LISTEN:{sock},fork,mode=600", f"TCP:{LISTEN}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True))
    for proc in procs:
        cleanup.push(f"{proc.args[3]} pid {proc.pid}", lambda p=proc: stop_popen(p))
    server = PrometheusServer(sock, procs[0].pid, procs[1].pid, log_file, config)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise LabError(f"{proc.args[3]} exited ({proc.returncode}); {log_file}:\n{tail(log_file, 20)}")
        try:
            if server.client.get("/-/ready")[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.1)
    raise LabError(f"Prometheus was not ready within {wait:.0f}s; {log_file}:\n{tail(log_file, 20)}")




class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("prometheus", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class PrometheusClient:
    """Prometheus' HTTP API over the lab's Unix socket."""

    def __init__(self, path: str, timeout: float = 10.0):
        self.path = path
        self.timeout = timeout

    def get(self, path: str, params: Optional[dict] = None) -> tuple[int, bytes]:
        conn = _UnixHTTPConnection(self.path, self.timeout)
        try:
            conn.request("GET", path + ("?" + urllib.parse.urlencode(params) if params else ""))
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def api(self, path: str, **params) -> dict:
        status, body = self.get(f"/api/v1/{path}", params)
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            raise LabError(f"Prometheus /api/v1/{path} {params}: HTTP {status} {doc.get('error', '')}")
        return doc["data"]

    def query(self, promql: str) -> list[dict]:
        """An instant vector: [{"metric": {labels}, "value": [ts, "v"]}, ...]."""
        return self.api("query", query=promql)["result"]

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[dict]:
        return self.api("query_range", query=promql, start=start, end=end, step=step)["result"]

    def targets(self) -> list[dict]:
        return self.api("targets")["activeTargets"]
