"""Shared fixtures: a cleanup registry, unique network namespaces, a real etcd server.

Everything a test makes is registered with `cleanup` and removed when the test ends,
whether it passed, failed or was interrupted.
"""
from __future__ import annotations

import pytest

from overlayd.lab.cleanup import Cleanup
from overlayd.lab.etcd import start_etcd
from overlayd.lab.netns import add_netns, unique_token


@pytest.fixture
def cleanup():
    c = Cleanup()
    try:
        yield c
    finally:
        failed = c.run()
        assert not failed, f"cleanup failed for: {failed}"


@pytest.fixture
def make_netns(cleanup):
    """make_netns('node') -> a fresh, uniquely named namespace with lo up."""
    token = unique_token()

    def make(role: str = "ns") -> str:
        return add_netns(f"ovt-{token}-{role}", cleanup)

    return make


@pytest.fixture(scope="module")
def etcd_server():
    """One real etcd per test module on a free loopback port (root namespace, loopback only)."""
    c = Cleanup()
    try:
        yield start_etcd(c)
    finally:
        c.run()


@pytest.fixture
def etcd_prefix(etcd_server):
    """A key prefix unique to the test, so tests sharing one etcd never see each other."""
    prefix = f"/ovt-{unique_token()}/network"
    yield prefix
    etcd_server.etcdctl("del", "--prefix", prefix, check=False)
