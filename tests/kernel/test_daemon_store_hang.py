"""A lease store that hangs must not stop the daemon from repairing its datapath.

The daemon runs in-process in a namespace with a fake lease store. When the underlay's address
changes, the lease must be taken again under the new PublicIP: that call hangs here. Meanwhile
someone deletes flannel.1 by hand. The device must come back at once (the reconcile loop never
waits on the store), and once the store answers, the device follows the new address.
"""
import ipaddress
import threading
import time

import pytest

from overlayd.daemon import Daemon
from overlayd.lab.netns import ip
from overlayd.netlink import Netlink
from overlayd.settings import DaemonSettings
from subnet_lease.backend import LeaseHealth
from subnet_lease.config import parse_net_config

pytestmark = pytest.mark.kernel

OWN_SUBNET = ipaddress.ip_network("10.244.1.0/24")


class HangingStore:
    """A LeaseBackend whose every acquire() after the first blocks until `release` is set."""

    def __init__(self):
        self.acquired = []
        self.hanging = threading.Event()
        self.release = threading.Event()

    def get_network_config(self):
        return parse_net_config('{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}')

    def find_own_lease(self, public_ip):
        return None

    def acquire(self, config, template, previous_subnet=None, **_kwargs):
        if self.acquired:
            self.hanging.set()
            self.release.wait()
        import dataclasses
        lease = dataclasses.replace(template, subnet=OWN_SUBNET)
        self.acquired.append(lease)
        return lease

    def snapshot(self, *, reuse_start_read=False):
        return list(self.acquired[-1:]), 1

    def watch(self, from_revision, stop):
        stop.wait()
        return
        yield

    def reconnect(self):
        pass

    def health(self):
        return LeaseHealth(acquired=True, subnet=OWN_SUBNET)

    def close(self):
        self.release.set()


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_a_hanging_store_during_an_underlay_change_does_not_stop_device_repair(make_netns, tmp_path):
    ns = make_netns("hang")
    ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0p", netns=ns)
    ip("addr", "add", "192.0.2.1/24", "dev", "eth0", netns=ns)
    ip("link", "set", "eth0", "up", netns=ns)
    ip("link", "set", "eth0p", "up", netns=ns)
    store = HangingStore()
    daemon = Daemon(DaemonSettings(subnet_file=str(tmp_path / "subnet.env"), ifaces=("eth0",), netns=ns,
                                   cni_socket=""), store)
    daemon.start()
    loop = threading.Thread(target=daemon.run, name="daemon-loop", daemon=True)
    loop.start()
    try:
        with Netlink(ns) as nl:
            first = nl.link("flannel.1")
            assert first is not None
            # The underlay moves: the lease must be taken again, and the store hangs.
            ip("addr", "add", "198.51.100.7/24", "dev", "eth0", netns=ns)
            ip("addr", "del", "192.0.2.1/24", "dev", "eth0", netns=ns)
            assert store.hanging.wait(15), "the daemon never asked the store for the new lease"
            ip("link", "del", "flannel.1", netns=ns)
            assert wait_for(lambda: (nl.link("flannel.1") or first).index != first.index), \
                "flannel.1 did not come back while the lease store hung"
            assert nl.link("flannel.1").mac == first.mac
            # The store answers: the lease and the device move to the new address.
            store.release.set()
            assert wait_for(lambda: str(daemon.own.public_ip) == "198.51.100.7")
            # (the device is recreated on the new address: it may be missing for a moment)
            assert wait_for(lambda: "local 198.51.100.7" in ip("-d", "link", "show", "flannel.1", netns=ns,
                                                               check=False).stdout)
    finally:
        store.release.set()
        daemon.request_stop()
        loop.join(10)
        daemon.shutdown()
    assert not loop.is_alive()
