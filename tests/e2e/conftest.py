import pytest

from overlayd.lab.cluster import Lab


@pytest.fixture
def make_lab():
    """make_lab(nodes, pods_per_node, **Lab kwargs) -> a running Lab, removed after the test."""
    labs = []

    def make(nodes=3, pods_per_node=2, **kwargs):
        lab = Lab(**kwargs)
        labs.append(lab)
        return lab.up(nodes, pods_per_node)

    yield make
    for lab in labs:
        lab.down()


def assert_lab_gone(name, namespaces, pids):
    """After `overlayd lab down`: no state file, namespace or process of the lab is left."""
    import os

    from overlayd.lab.cluster import list_labs
    from overlayd.lab.netns import netns_exists

    assert name not in list_labs()
    for ns in namespaces:
        assert not netns_exists(ns), f"namespace {ns} left"
    assert wait_until(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in pids), 5), "processes left"


def wait_until(predicate, timeout=15.0, interval=0.1):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()
