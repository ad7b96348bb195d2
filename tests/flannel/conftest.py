"""Mixed clusters with the real flanneld (issue 11). flanneld comes from `make flannel-bins`
(tools/flannel/); without it these tests skip and say why in pytest's summary (-ra)."""
import warnings

import pytest

from overlayd.lab import flanneld
from overlayd.lab.cluster import Lab


@pytest.fixture(scope="session")
def flanneld_bin():
    path = flanneld.binary()
    if path is None:
        reason = "REAL FLANNELD MISSING, mixed-cluster tests not run: " + flanneld.missing_reason()
        warnings.warn(reason)
        pytest.skip(reason)
    return path


@pytest.fixture
def mixed_lab(flanneld_bin):
    """mixed_lab(nodes, pods_per_node, flanneld_nodes=("n2",)) -> a running Lab, removed after the test."""
    labs = []

    def make(nodes, pods_per_node, **kwargs):
        lab = Lab(**kwargs)
        labs.append(lab)
        return lab.up(nodes, pods_per_node)

    yield make
    for lab in labs:
        lab.down()
