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


def wait_until(predicate, timeout=15.0, interval=0.1):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()
