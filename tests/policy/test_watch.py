"""The watcher over real HTTP with the official client: list, watch, re-list after 410, 403 named."""
from __future__ import annotations

import threading
import time

import pytest

from overlayd.policy.cache import PolicyCache
from overlayd.policy.watch import Watcher, make_api_client

from .fake_api import FakeApi
from .objects import namespace, pod, policy


def wait_for(cond, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def api():
    a = FakeApi().start()
    yield a
    a.close()


def start_watcher(api, cache, changes):
    stop = threading.Event()
    w = Watcher(make_api_client(api.url, None), cache, changes.append, stop, backoff_initial=0.05, backoff_max=0.2)
    return w.start()


def test_list_then_watch_then_relist_after_410(api):
    api.put("namespaces", namespace("x"))
    api.put("pods", pod("x", "a", "10.244.1.2"))
    cache, changes = PolicyCache(), []
    w = start_watcher(api, cache, changes)
    try:
        wait_for(lambda: cache.synced, what="the first lists")
        assert set(cache.cluster().pods) == {"x/a"}
        api.put("networkpolicies", policy("x", "deny", {}, ingress=[]))
        api.put("pods", pod("x", "b", "10.244.1.3"))
        wait_for(lambda: "x/deny" in cache.cluster().policies and "x/b" in cache.cluster().pods, what="watch events")
        assert changes and all(isinstance(t, float) for t in changes)
        # Changes made while nobody watches, then the history is compacted: only a re-list sees them.
        api.delete("pods", pod("x", "a", "10.244.1.2"), record=False)
        api.put("pods", pod("x", "c", "10.244.1.4"), record=False)
        api.compact()
        wait_for(lambda: set(cache.cluster().pods) == {"x/b", "x/c"}, what="the re-list after 410")
        assert w.restarts >= 1
        assert not w.errors()
    finally:
        w.close()


def test_forbidden_is_named_with_the_rbac_fix_and_retried(api):
    api.forbidden.add("networkpolicies")
    cache, changes = PolicyCache(), []
    w = start_watcher(api, cache, changes)
    try:
        wait_for(lambda: "networkpolicies" in w.errors(), what="the 403")
        assert "403" in w.errors()["networkpolicies"] and "networkpolicies.networking.k8s.io" in w.errors()["networkpolicies"]
        wait_for(lambda: cache.unsynced() == ["networkpolicies"], what="the other kinds to list")
        api.forbidden.clear()                       # the ClusterRole is fixed: the retry lists
        wait_for(lambda: cache.synced and not w.errors(), what="recovery")
    finally:
        w.close()
