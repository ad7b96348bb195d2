"""The chaos suite's waiting-bound scenarios run side by side (issue 14's budget in `make test`).

The lease-store partitions (60 s etcd, past-TTL etcd, the owner alone past its TTL, 60 s
Kubernetes API) and the short
soak mostly wait, so the first chaos test to run starts every one of them that the session
selected, each in its own lab (thread, or process for the soak); their tests then collect the
results. Under pytest-xdist each test starts only its own (workers do not share a session).
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile

import pytest

from overlayd.lab import scenarios

SOAK_MINUTES = float(os.environ.get("OVERLAYD_SOAK_MINUTES", "3"))

# test function name -> how to run its scenario (a callable returning the scenario's dict)
BACKGROUND = {
    "test_etcd_blackholed_60s": lambda: scenarios.store_blackhole(seconds=60),
    "test_etcd_blackholed_past_lease_ttl": lambda: scenarios.store_blackhole(seconds=25, lease_ttl=8),
    "test_etcd_blackholed_past_lease_ttl_with_grace":
        lambda: scenarios.store_blackhole(seconds=25, lease_ttl=8, grace=15),
    "test_owner_alone_cut_off_past_lease_ttl": lambda: scenarios.owner_cut_off_past_ttl(lease_ttl=8,
                                                                                         newcomer=True),
    "test_kube_api_unreachable_60s": lambda: scenarios.store_blackhole(seconds=60, kube=True),
    "test_churn_soak": lambda: run_soak(SOAK_MINUTES),
}


def run_soak(minutes: float) -> dict:
    """The soak in its own process (python -m overlayd.lab.soak), niced: its result as a dict."""
    fd, path = tempfile.mkstemp(prefix="overlayd-soak-", suffix=".json")
    os.close(fd)
    try:
        proc = subprocess.run(["nice", "-n", "5", sys.executable, "-m", "overlayd.lab.soak",
                               f"--minutes={minutes}", f"--json={path}"],
                              capture_output=True, text=True, timeout=minutes * 60 + 300)
        with open(path) as f:
            text = f.read()
        if not text:
            raise AssertionError(f"the soak wrote no result ({proc.returncode}): {proc.stderr[-3000:]}")
        result = json.loads(text)
        result["stdout"] = proc.stdout
        return result
    finally:
        os.unlink(path)


class Background:
    def __init__(self, selected: set[str]):
        self.selected = selected
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(BACKGROUND))
        self.futures: dict[str, concurrent.futures.Future] = {}

    def start_all(self) -> None:
        for name in BACKGROUND:
            if name in self.selected:
                self.start(name)

    def start(self, name: str) -> concurrent.futures.Future:
        if name not in self.futures:
            self.futures[name] = self.pool.submit(BACKGROUND[name])
        return self.futures[name]

    def result(self, name: str, timeout: float) -> dict:
        return self.start(name).result(timeout)


@pytest.fixture(scope="session")
def background(request):
    under_xdist = bool(os.environ.get("PYTEST_XDIST_WORKER"))
    selected = set() if under_xdist else {item.originalname for item in request.session.items
                                          if item.nodeid.startswith("tests/chaos/")}
    bg = Background(selected)
    yield bg
    bg.pool.shutdown(wait=True)


@pytest.fixture(autouse=True)
def _start_background(background):
    """The first chaos test starts the waiting-bound scenarios, so they overlap everything after it."""
    background.start_all()
