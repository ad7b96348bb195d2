import pytest

from overlayd.lab.netns import ip
from overlayd.netlink import Netlink, VxlanSpec


@pytest.fixture
def node(make_netns):
    """A namespace with an underlay veth (192.0.2.1/24) and flannel.1 up: (netns, Netlink, device, underlay)."""
    ns = make_netns("nl")
    ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0p", netns=ns)
    ip("addr", "add", "192.0.2.1/24", "dev", "eth0", netns=ns)
    ip("link", "set", "eth0", "up", netns=ns)
    ip("link", "set", "eth0p", "up", netns=ns)
    with Netlink(ns) as nl:
        under = nl.link("eth0")
        dev = nl.create_vxlan(VxlanSpec("flannel.1", 1, 8472, "192.0.2.1", under.index, 1450,
                                        mac="02:00:00:00:00:01"))
        nl.set_link(dev.index, up=True)
        yield ns, nl, dev, under
