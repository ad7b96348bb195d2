"""The kube backend against faults a real kube-apiserver cannot be made to produce on demand,
served by the HTTP API emulator (kube_emulator.py):

- a watch request answered with an HTTP 410 status line (a real server sends 410 as an ERROR
  event inside a 200 stream; a proxy or an older server may answer the request itself with 410);
- a 503 from a list, with a Status body, at one exact request (a real server only gives 503 when
  its etcd is down, slowly, and for every request at once).

Everything else is tested against the real server in test_kube_backend.py.
"""
from __future__ import annotations

import pytest

from kube_emulator import KubeEmulator
from test_kube_backend import CONFIG, Collector, peer_annotations, template
import watching
from watching import wait_for


@pytest.fixture
def emu():
    e = KubeEmulator().start()
    yield e
    e.stop()


@pytest.fixture
def make(emu, tmp_path):
    with watching.kube_backends(tmp_path, api_url=emu.url) as make:
        yield make


def test_scripted_http_410_on_watch_and_api_outage_recover(emu, make):
    emu.add_node("node-1", "10.244.1.0/24")
    b = make()
    b.acquire(CONFIG, template(1))
    _, rv = b.snapshot()
    gone = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410,
            "message": "too old resource version"}
    emu.script("GET", "/api/v1/nodes", 410, gone)                        # the watch request itself
    emu.script("GET", "/api/v1/nodes", 503, {"kind": "Status", "code": 503, "message": "etcd down"})  # re-list
    emu.add_node("node-6", "10.244.6.0/24", annotations=peer_annotations(6))
    col = Collector(b, rv)
    try:
        wait_for(lambda: ("added", "node-6") in {e[:2] for e in col.events}, what="recovered")
        assert emu._scripts == []                  # both scripted failures were really served
        # One restart (the 410; its re-list failed and the next watch worked): the daemon exports it.
        assert b.health().watch_restarts == 1
    finally:
        col.close()


def test_last_error_clears_once_the_api_answers_again(emu, make):
    emu.add_node("node-1", "10.244.1.0/24")
    b = make()
    b.acquire(CONFIG, template(1))
    emu.script("GET", "/api/v1/nodes", 503, {"kind": "Status", "code": 503, "message": "etcd down"})
    with pytest.raises(Exception, match="503"):
        b.snapshot()
    assert "503" in b.health().last_error
    b.snapshot()
    assert b.health().last_error is None
