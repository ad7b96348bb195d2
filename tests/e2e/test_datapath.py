"""Issue 4 end to end: the kernel converges to what the leases say, whatever happened meanwhile.

Each test brings up its own namespaced cluster (real etcd, real overlayd processes, real pods).
Convergence bounds here are generous for a loaded 2-core machine; `make bench` prints the
measured figures against the issue's targets.
"""
import base64
import ipaddress
import json
import re
import signal
import subprocess
import time

import pytest

from overlayd.lab.cluster import SWITCH_IP
from overlayd.lab.netns import ip, run

from .conftest import wait_until

pytestmark = pytest.mark.e2e
PREFIX = "/coreos.com/network/subnets"


def leases(lab):
    out = lab.etcd.etcdctl("get", "--prefix", PREFIX, "-w", "json").stdout
    return {base64.b64decode(kv["key"]).decode().rsplit("/", 1)[1]:
            (json.loads(base64.b64decode(kv["value"])), kv.get("lease")) for kv in json.loads(out).get("kvs", [])}


def key_of(lab, node):
    return lab.subnets()[node.name].replace(".1/", ".0-")


def device_mac(lab, node, dev="flannel.1"):
    return re.search(r"link/ether (\S+)", ip("link", "show", dev, netns=node.netns).stdout).group(1)


def entries(lab, node, dev="flannel.1"):
    return (ip("route", netns=node.netns).stdout, ip("neigh", "show", "dev", dev, netns=node.netns).stdout,
            run(["bridge", "fdb", "show", "dev", dev], netns=node.netns).stdout)


def unused_subnet(lab) -> str:
    """A /24 of the pod network that no lab node leased (nodes pick theirs at random): "10.244.N.0"."""
    held = {str(ipaddress.ip_interface(v).network.network_address) for v in lab.subnets().values()}
    assert len(held) == len(lab.nodes), lab.subnets()
    return next(f"10.244.{n}.0" for n in range(250, 1, -1) if f"10.244.{n}.0" not in held)


def pod_on(lab, node_name):
    return next(p for p in lab.pods if p.node == node_name)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "crash"])
def test_restart_under_ping_loses_no_packet_and_keeps_subnet_and_mac(make_lab, sig):
    lab = make_lab(2, 1)
    assert lab.wait_converged(30)
    n1 = lab.node("n1")
    a, b = pod_on(lab, "n1"), pod_on(lab, "n2")
    before = (lab.subnets(), device_mac(lab, n1), leases(lab))
    ping = subprocess.Popen(["ip", "netns", "exec", a.netns, "ping", "-c", "150", "-i", "0.02", "-W", "1", "-q", b.ip],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.5)
        for node in lab.nodes:            # restart both ends while packets flow
            lab.stop_daemon(node, sig)
            lab.start_daemon(node)
        out, _ = ping.communicate(timeout=60)
    finally:
        if ping.poll() is None:
            ping.kill()
    sent, got = map(int, re.search(r"(\d+) packets transmitted, (\d+) received", out).groups())
    assert sent == 150 and got == sent, out
    assert wait_until(lambda: all(lab.daemon_alive(n) for n in lab.nodes) and lab.routes_converged(), 20)
    assert all(lab.wait_for_subnet_file(n, 5) for n in lab.nodes)   # the restarted daemons run
    time.sleep(1)
    assert all(lab.daemon_alive(n) for n in lab.nodes), [open(n.log_file).read()[-1500:] for n in lab.nodes]
    after = (lab.subnets(), device_mac(lab, n1), leases(lab))
    assert after[0] == before[0] and after[1] == before[1]
    assert {k: v[0] for k, v in after[2].items()} == {k: v[0] for k, v in before[2].items()}
    assert lab.ping(a, b.ip)


def test_a_peer_deleted_while_the_daemon_was_down_is_gone_after_start_up(make_lab):
    lab = make_lab(3, 1)
    assert lab.wait_converged(30)
    n1, n3 = lab.node("n1"), lab.node("n3")
    gone = key_of(lab, n3)
    lab.stop_daemon(n1)
    lab.stop_daemon(n3)
    lab.etcd.etcdctl("del", f"{PREFIX}/{gone}")
    assert gone.split("-")[0] in entries(lab, n1)[1]      # n1's kernel still has the stale peer
    lab.start_daemon(n1)
    subnet = gone.replace("-", "/")
    assert wait_until(lambda: not any(gone.split("-")[0] in e or "192.0.2.3 " in e or subnet in e
                                      for e in entries(lab, n1)), 20), entries(lab, n1)
    assert lab.ping(pod_on(lab, "n1"), pod_on(lab, "n2").ip)


def test_the_device_deleted_by_hand_comes_back_with_every_peer(make_lab):
    lab = make_lab(3, 1)
    assert lab.wait_converged(30)
    n1 = lab.node("n1")
    mac = device_mac(lab, n1)
    ip("link", "del", "flannel.1", netns=n1.netns)
    started = time.monotonic()
    a = pod_on(lab, "n1")
    assert wait_until(lambda: lab.routes_converged() and lab.ping(a, pod_on(lab, "n3").ip, timeout=1), 10)
    print(f"device back with all peers after {time.monotonic() - started:.2f}s")
    assert device_mac(lab, n1) == mac          # peers' FDB/ARP entries for us stay right
    assert lab.ping(a, pod_on(lab, "n2").ip)


def test_a_peers_new_vtep_mac_replaces_its_arp_and_fdb_everywhere(make_lab):
    lab = make_lab(3, 1)
    assert lab.wait_converged(30)
    n3 = lab.node("n3")
    key = key_of(lab, n3)
    value, lease_id = leases(lab)[key]
    old_mac, new_mac = value["BackendData"]["VtepMAC"], "02:11:22:33:44:55"
    lab.stop_daemon(n3)        # as if n3 rebooted and came back with another MAC (flannel #533, #1795)
    value["BackendData"]["VtepMAC"] = new_mac
    lab.etcd.etcdctl("put", f"--lease={int(lease_id):x}", f"{PREFIX}/{key}", json.dumps(value))
    started = time.monotonic()
    for node in lab.nodes[:2]:
        assert wait_until(lambda: (lambda r, n, f: f"lladdr {new_mac}" in n and f"{new_mac} dst 192.0.2.3" in f
                                   and old_mac not in n + f)(*entries(lab, node)), 10), entries(lab, node)
    print(f"new VTEP MAC programmed on both peers after {time.monotonic() - started:.2f}s")
    lab.start_daemon(n3)      # n3 takes the MAC its lease advertises
    assert wait_until(lambda: device_mac(lab, n3) == new_mac, 20)
    assert wait_until(lambda: lab.ping(pod_on(lab, "n1"), pod_on(lab, "n3").ip, timeout=1), 10)


def test_direct_routing_uses_the_underlay_route_without_encapsulation(make_lab):
    conf = {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "DirectRouting": True}}
    lab = make_lab(2, 1, net_conf=conf)
    assert lab.wait_converged(30)
    a, b = pod_on(lab, "n1"), pod_on(lab, "n2")
    route = ip("route", "get", b.ip, netns=lab.node("n1").netns).stdout
    assert "via 192.0.2.2 dev eth0" in route, route
    assert "flannel.1" not in route
    assert wait_until(lambda: lab.ping(a, b.ip), 10)
    assert lab.check()["ok"]


def test_dual_stack_pods_ping6_across_nodes(make_lab):
    lab = make_lab(2, 1, dual_stack=True)
    assert lab.wait_converged(30)
    a, b = pod_on(lab, "n1"), pod_on(lab, "n2")
    assert a.ip6 and b.ip6 and a.ip6.startswith("fd10:244:")
    mtu = ip("link", "show", "flannel-v6.1", netns=lab.node("n1").netns).stdout
    assert "mtu 1430" in mtu             # underlay 1500 - 70
    vtep = ip("-6", "addr", "show", "dev", "flannel-v6.1", "scope", "global", netns=lab.node("n1").netns).stdout
    assert "/128" in vtep and "tentative" not in vtep     # no DAD on the VTEP address
    assert wait_until(lambda: lab.ping(a, b.ip6) and lab.ping(b, a.ip6), 15)
    assert lab.ping(a, b.ip)


def test_ip_masq_outside_sees_the_node_and_pods_see_pods(make_lab):
    lab = make_lab(2, 1, daemon_args=("--ip-masq",))
    assert lab.wait_converged(30)
    a, b = pod_on(lab, "n1"), pod_on(lab, "n2")
    # The switch namespace plays a host outside the cluster, on the underlay.
    seen_outside = _udp_source(lab, a.netns, lab.switch, SWITCH_IP)
    assert seen_outside == "192.0.2.1"
    seen_by_pod = _udp_source(lab, a.netns, b.netns, b.ip)
    assert seen_by_pod == a.ip


def _udp_source(lab, src_ns, dst_ns, dst_ip, port=7777):
    """Send one UDP datagram from src_ns to dst_ip and return the source address dst_ns saw."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", dst_ns, "/usr/bin/python3", "-c",
         "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
         f"s.bind(('0.0.0.0',{port}))\nprint('READY',flush=True)\ns.settimeout(10)\n"
         "d,a=s.recvfrom(100)\nprint(a[0],flush=True)"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "READY"
        for _ in range(5):
            run(["/usr/bin/python3", "-c", "import socket;socket.socket(socket.AF_INET,socket.SOCK_DGRAM)"
                 f".sendto(b'x',('{dst_ip}',{port}))"], netns=src_ns)
            try:
                out, _ = server.communicate(timeout=2)
                return out.strip()
            except subprocess.TimeoutExpired:
                continue
        return None
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_readyz_and_metrics_answer(make_lab):
    lab = make_lab(3, 0, daemon_args=("--healthz-port=8471", "--healthz-ip=127.0.0.1"))
    assert lab.wait_converged(30)
    n1 = lab.node("n1")

    def get(path):
        proc = run(["/usr/bin/python3", "-c", "import urllib.request,urllib.error,sys\n"
                    f"try: r=urllib.request.urlopen('http://127.0.0.1:8471{path}',timeout=5); print(r.status); print(r.read().decode())\n"
                    "except urllib.error.HTTPError as e: print(e.code); print(e.read().decode())"], netns=n1.netns)
        status, _, body = proc.stdout.partition("\n")
        return int(status), body

    assert get("/healthz")[0] == 200
    status, body = get("/readyz")
    assert status == 200 and "ready" in body
    # a new peer lease arrives: it is counted and its latency observed
    fake = unused_subnet(lab)
    lab.etcd.etcdctl("put", f"/coreos.com/network/subnets/{fake}-24",
                     '{"PublicIP":"198.18.0.9","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:09"}}')
    assert wait_until(lambda: f"{fake}/24" in ip("route", netns=n1.netns).stdout, 10)

    from prometheus_client.parser import text_string_to_metric_families
    samples = {}
    for fam in text_string_to_metric_families(get("/metrics")[1]):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert samples[("overlayd_peers", ())] == 3
    assert samples[("overlayd_entries_added_total", (("kind", "route"),))] >= 3
    assert samples[("overlayd_reconcile_runs_total", (("result", "ok"),))] >= 2
    assert samples[("overlayd_event_to_kernel_seconds_count", ())] >= 1
    assert samples[("overlayd_lease_ttl_seconds", ())] > 3600
    lab.etcd.etcdctl("del", f"/coreos.com/network/subnets/{fake}-24")


def test_tx_checksum_off_also_on_an_adopted_device(make_lab):
    lab = make_lab(2, 1)
    assert lab.wait_converged(30)
    n1 = lab.node("n1")
    from overlayd.netlink import Netlink
    with Netlink(n1.netns) as nl:
        index = nl.link("flannel.1").index
        assert nl.tx_checksum(index)                 # the default: offload on
    lab.stop_daemon(n1)
    n1.extra_args.append("--vxlan-tx-checksum-off")
    lab.start_daemon(n1)                           # adopts the existing device
    with Netlink(n1.netns) as nl:
        assert wait_until(lambda: not nl.tx_checksum(index), 15)
        assert nl.link("flannel.1").index == index   # adopted, not recreated
    assert lab.ping(pod_on(lab, "n1"), pod_on(lab, "n2").ip)


def test_a_new_underlay_address_keeps_the_subnet_and_peers_follow(make_lab):
    lab = make_lab(2, 1)
    assert lab.wait_converged(30)
    n1, n2 = lab.node("n1"), lab.node("n2")
    key, subnet, mac = key_of(lab, n1), lab.subnets()["n1"], device_mac(lab, n1)
    # the node's address changes (DHCP, re-IP): old address and default route go, new ones come
    ip("addr", "del", "192.0.2.1/24", "dev", "eth0", netns=n1.netns)
    time.sleep(0.5)
    ip("addr", "add", "192.0.2.101/24", "dev", "eth0", netns=n1.netns)
    ip("route", "replace", "default", "via", "192.0.2.254", netns=n1.netns)
    assert wait_until(lambda: leases(lab).get(key, ({},))[0].get("PublicIP") == "192.0.2.101", 15), leases(lab)
    assert wait_until(lambda: f"{mac} dst 192.0.2.101" in entries(lab, n2)[2], 15), entries(lab, n2)
    # n1 recreates flannel.1 on the new local address in its next full reconcile, which may come
    # a moment after the lease: the device is briefly absent between the delete and the create
    assert wait_until(lambda: "local 192.0.2.101" in ip("-d", "link", "show", "flannel.1", netns=n1.netns,
                                                         check=False).stdout, 15)
    assert lab.subnets()["n1"] == subnet and device_mac(lab, n1) == mac
    assert len(leases(lab)) == 2                     # the same key, rewritten; nothing left behind
    assert wait_until(lambda: lab.ping(pod_on(lab, "n1"), pod_on(lab, "n2").ip, timeout=1), 15)
    assert lab.ping(pod_on(lab, "n2"), pod_on(lab, "n1").ip)


@pytest.mark.parametrize("value", [
    '{"PublicIP":"198.18.0.7","BackendType":"vxlan","BackendData":"oops"}',
    '{"PublicIP":"198.18.0.7","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"zz:zz"}}',
    '{"PublicIP":"198.18.0.7","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:07"}}',
    'not json at all',
], ids=["backend-data-not-an-object", "mac-not-hex", "mac-five-bytes", "not-json"])
def test_a_malformed_lease_in_etcd_leaves_every_node_running_and_ready(make_lab, value):
    lab = make_lab(2, 1, daemon_args=("--healthz-port=8471", "--healthz-ip=127.0.0.1"))
    assert lab.wait_converged(30)
    fake = unused_subnet(lab)
    lab.etcd.etcdctl("put", f"{PREFIX}/{fake}-24", value)             # a hand-edited or buggy key
    n2 = lab.node("n2")
    lab.stop_daemon(n2)                                              # and a restart reads it at start-up
    lab.start_daemon(n2)
    assert wait_until(lambda: f"{fake}-24" in log_since_start(n2), 30), log_since_start(n2)[-2000:]
    assert_every_node_running_and_ready(lab)
    for node in lab.nodes:
        assert f"{fake}/24" not in ip("route", netns=node.netns).stdout
    assert lab.ping(pod_on(lab, "n1"), pod_on(lab, "n2").ip)


def test_a_key_that_is_not_utf8_is_skipped_with_a_warning_and_every_node_stays_ready(make_lab):
    """Issue 13.4: such a key once made the watch reconnect and replay forever (losing the events
    of its batch), and stopped every node's start-up."""
    lab = make_lab(2, 1, daemon_args=("--healthz-port=8471", "--healthz-ip=127.0.0.1"))
    assert lab.wait_converged(30)
    bad = f"{PREFIX}/bad-" + b"\xff".decode("utf-8", "surrogateescape")   # etcdctl gets the raw byte
    lab.etcd.etcdctl("put", bad, "{}")                               # seen by the running nodes' watches
    fake = unused_subnet(lab)
    lab.etcd.etcdctl("put", f"{PREFIX}/{fake}-24", json.dumps(           # a real peer right after it
        {"PublicIP": "198.18.0.9", "BackendType": "vxlan", "BackendData": {"VNI": 1, "VtepMAC": "02:00:00:00:00:09"}}))
    n1, n2 = lab.node("n1"), lab.node("n2")
    assert wait_until(lambda: f"{fake}/24" in ip("route", netns=n1.netns).stdout, 30)
    assert "bad-\\xff" in open(n1.log_file).read()                   # the warning names the key
    lab.stop_daemon(n2)                                              # a start-up reads it too
    lab.start_daemon(n2)
    assert wait_until(lambda: "bad-\\xff" in log_since_start(n2), 30), log_since_start(n2)[-2000:]
    assert_every_node_running_and_ready(lab)
    assert wait_until(lambda: f"{fake}/24" in ip("route", netns=n2.netns).stdout, 30)
    assert lab.ping(pod_on(lab, "n1"), pod_on(lab, "n2").ip)
    for node in lab.nodes:
        assert "reconnecting" not in open(node.log_file).read(), node.name


def log_since_start(node) -> str:
    """The node's daemon log since its latest start (the lab appends one log per node)."""
    text = open(node.log_file).read()
    return text[text.rfind("underlay "):] if "underlay " in text else text


def readyz(node) -> str:
    return run(["/usr/bin/python3", "-c", "import urllib.request,urllib.error\n"
                "try: print(urllib.request.urlopen('http://127.0.0.1:8471/readyz',timeout=3).status)\n"
                "except urllib.error.HTTPError as e: print(e.code, e.read().decode())\n"
                "except OSError as e: print(0, e)"], netns=node.netns).stdout.strip()


def assert_every_node_running_and_ready(lab):
    for node in lab.nodes:
        assert wait_until(lambda: readyz(node) == "200", 30), (node.name, readyz(node))
        assert lab.daemon_alive(node), open(node.log_file).read()[-2000:]


def test_the_overlay_rides_out_an_etcd_restart(make_lab):
    lab = make_lab(2, 1, daemon_args=("--healthz-port=8471", "--healthz-ip=127.0.0.1"))
    assert lab.wait_converged(30)
    a, b = pod_on(lab, "n1"), pod_on(lab, "n2")
    lab.restart_etcd(down_for=2)
    assert lab.ping(a, b.ip)                                 # the datapath never depended on etcd
    # a lease written after the restart reaches both nodes: their watches came back by themselves
    fake = unused_subnet(lab)
    lab.etcd.etcdctl("put", f"{PREFIX}/{fake}-24",
                     '{"PublicIP":"198.18.0.9","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:09"}}')
    for node in lab.nodes:
        assert wait_until(lambda: f"{fake}/24" in ip("route", netns=node.netns).stdout, 30), node.name
        assert lab.daemon_alive(node)
    metrics = run(["/usr/bin/python3", "-c", "import urllib.request;print(urllib.request.urlopen("
                   "'http://127.0.0.1:8471/metrics',timeout=3).read().decode())"], netns=lab.node("n1").netns).stdout
    restarts = [line for line in metrics.splitlines() if line.startswith("overlayd_watch_restarts_total")]
    assert restarts and float(restarts[0].split()[-1]) >= 1, restarts
