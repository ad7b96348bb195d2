"""Issue 11 in kube mode: overlayd and the real flanneld in one cluster on the lab's real
kube-apiserver (--kube-subnet-mgr with a ServiceAccount kubeconfig each), sharing the Node
annotations both write under flannel.alpha.coreos.com/."""
import pytest

from tests.e2e.conftest import wait_until

from .kernel_view import expected_from_nodes, kernel_entries

pytest.importorskip("overlayd.lab.control_plane",
                    reason="needs the lab's real kube-apiserver (overlayd.lab.control_plane, the lead's kube work)")
pytestmark = pytest.mark.e2e


def test_kube_mode_every_pod_reaches_every_pod_and_each_side_programs_the_other(mixed_lab):
    lab = mixed_lab(2, 1, kube=True, flanneld_nodes=("n2",))     # the control plane's start-up dominates: 2 nodes
    assert [n.daemon for n in lab.nodes] == ["overlayd", "flanneld"]
    for node in lab.nodes:
        assert wait_until(lambda: expected_from_nodes(lab, node) <= kernel_entries(node), 30), \
            (node.name, node.daemon, expected_from_nodes(lab, node) - kernel_entries(node), open(node.log_file).read()[-2000:])
    result = lab.check()
    assert result["ok"], [p for p in result["pairs"] if not p["ok"]]
