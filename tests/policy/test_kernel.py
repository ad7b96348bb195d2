"""The compiled table in a real kernel, probed with real packets (namespaces this test creates).

One "node" namespace with a bridge (the CNI's cni0) and two local pods, a "remote" namespace
routed behind it with one pod of another node's subnet. The applier writes the model into the
node's namespace exactly as the daemon does; pods probe each other over TCP and UDP, IPv4 and
IPv6. Checked: enforcement both ways, pod churn through incremental updates, the closed table
for pods not compiled yet, and the conntrack cut of connections no longer allowed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from overlayd.lab.netns import add_veth, ip, sysctl
from overlayd.masquerade import CommandRunner
from overlayd.policy.apply import Applier, remove_left_over
from overlayd.policy.compile import NodeInfo, compile_model
from overlayd.netlink_conntrack import cut
from overlayd.policy.evaluate import pods_by_ip, still_allowed

from .objects import cluster, pod, policy

pytestmark = pytest.mark.kernel
AGENT = os.path.join(os.path.dirname(__file__), "pod_agent.py")
PODS = {"a": ("10.244.1.2", "fd00:1::2"), "b": ("10.244.1.3", "fd00:1::3"), "r": ("10.244.2.2", "fd00:2::2")}


class Pod:
    def __init__(self, netns, cleanup):
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, AGENT, "80", "81"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        cleanup.push(f"agent in {netns}", self._stop)
        assert self.proc.stdout.readline().strip() == "READY"

    def _stop(self):
        self.proc.kill()
        self.proc.wait(5)

    def ask(self, line: str) -> bool:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip() == "ok"


@pytest.fixture
def lab(make_netns, cleanup):
    node, remote = make_netns("node"), make_netns("remote")
    sysctl(node, "net.ipv4.ip_forward", "1")
    sysctl(node, "net.ipv6.conf.all.forwarding", "1")
    ip("link", "add", "cni0", "type", "bridge", netns=node)
    ip("addr", "add", "10.244.1.1/24", "dev", "cni0", netns=node)
    ip("addr", "add", "fd00:1::1/64", "dev", "cni0", "nodad", netns=node)
    ip("link", "set", "cni0", "up", netns=node)
    add_veth("uplink", node, "uplink", remote, cleanup)
    ip("addr", "add", "192.0.2.1/24", "dev", "uplink", netns=node)
    ip("addr", "add", "fd00:ff::1/64", "dev", "uplink", "nodad", netns=node)
    ip("link", "set", "uplink", "up", netns=node)
    ip("route", "add", "10.244.2.0/24", "via", "192.0.2.2", netns=node)
    ip("route", "add", "fd00:2::/64", "via", "fd00:ff::2", netns=node)
    pods = {}
    for name in ("a", "b"):
        ns = make_netns(f"p{name}")
        add_veth("eth0", ns, f"veth{name}", node, cleanup)
        ip("link", "set", f"veth{name}", "master", "cni0", "up", netns=node)
        v4, v6 = PODS[name]
        ip("addr", "add", f"{v4}/24", "dev", "eth0", netns=ns)
        ip("addr", "add", f"{v6}/64", "dev", "eth0", "nodad", netns=ns)
        ip("link", "set", "eth0", "up", netns=ns)
        ip("route", "add", "default", "via", "10.244.1.1", netns=ns)
        ip("-6", "route", "add", "default", "via", "fd00:1::1", netns=ns)
        pods[name] = Pod(ns, cleanup)
    # the remote "pod" lives in the remote node's namespace itself (its own subnet's address)
    ip("addr", "add", "192.0.2.2/24", "dev", "uplink", netns=remote)
    ip("addr", "add", "fd00:ff::2/64", "dev", "uplink", "nodad", netns=remote)
    ip("addr", "add", "10.244.2.2/32", "dev", "lo", netns=remote)
    ip("addr", "add", "fd00:2::2/128", "dev", "lo", netns=remote)
    ip("link", "set", "uplink", "up", netns=remote)
    ip("route", "add", "10.244.1.0/24", "via", "192.0.2.1", "src", "10.244.2.2", netns=remote)
    ip("route", "add", "fd00:1::/64", "via", "fd00:ff::1", "src", "fd00:2::2", netns=remote)
    pods["r"] = Pod(remote, cleanup)
    applier = Applier(CommandRunner(prefix=("ip", "netns", "exec", node)))
    return node, pods, applier


NODE = NodeInfo("n1", ("10.244.1.0/24", "fd00:1::/64"), ("192.0.2.1", "10.244.1.1"))
API_PODS = [pod("x", "a", list(PODS["a"]), labels={"app": "web"}, ports=[("http", 80, "TCP")]),
            pod("x", "b", list(PODS["b"]), labels={"role": "frontend"}),
            pod("y", "r", list(PODS["r"]), node="n2", labels={"role": "frontend"})]


def reach(pods, src, dst, port=80, proto="tcp", family=0, expect=True) -> bool:
    """One probe; an expected success gets a few tries (a loaded machine), a refusal one short one."""
    tries, timeout = (5, 1.0) if expect else (1, 0.4)
    for _ in range(tries):
        if pods[src].ask(f"probe {proto} {PODS[dst][family]} {port} {timeout}"):
            return True
    return False


def check(pods, src, dst, allowed, **kw):
    got = reach(pods, src, dst, expect=allowed, **kw)
    if got != allowed and os.environ.get("NPE_DEBUG"):
        print(subprocess.run(["bash", "-c", "for n in $(ip netns list | grep -o 'ovt-[a-z0-9]*-node'); do ip netns exec $n nft list ruleset; done"], capture_output=True, text=True).stdout)
    assert got == allowed, f"{src} -> {dst} {kw}: {'reached' if got else 'refused'}, expected the opposite"


def test_policies_enforced_on_real_packets(lab):
    node, pods, applier = lab
    allow_http = policy("x", "allow-http", {"matchLabels": {"app": "web"}},
                        ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}],
                                  "ports": [{"port": "http"}]}])
    applier.update(compile_model(cluster(API_PODS, [], []), NODE))
    check(pods, "r", "a", True)                                 # no policy: open
    applier.update(compile_model(cluster(API_PODS, [], [allow_http]), NODE))
    check(pods, "b", "a", True)                                 # same node, named port
    check(pods, "b", "a", True, family=1)                       # IPv6
    check(pods, "b", "a", False, port=81)
    check(pods, "b", "a", False, proto="udp")
    check(pods, "r", "a", False)                                # other namespace, cross-node
    check(pods, "a", "b", True)                                 # b is not selected
    assert pods["a"].ask("probe tcp 10.244.1.1 80 0.4") is False   # (nothing listens on the node: sanity)
    # the remote pod's namespace gains the label through a namespaceSelector peer
    cross = policy("x", "from-y", {"matchLabels": {"app": "web"}},
                   ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}]}])
    how = applier.update(compile_model(cluster(API_PODS, [], [allow_http, cross]), NODE))
    assert how == "incremental"
    check(pods, "r", "a", True)
    check(pods, "r", "a", True, port=81, proto="udp", family=1)
    # egress on the source node: a may only talk to the remote pod on UDP 81
    egress = policy("x", "a-out", {"matchLabels": {"app": "web"}},
                    egress=[{"to": [{"ipBlock": {"cidr": "10.244.2.0/24"}}], "ports": [{"port": 81, "protocol": "UDP"}]}],
                    types=["Egress"])
    applier.update(compile_model(cluster(API_PODS, [], [allow_http, cross, egress]), NODE))
    check(pods, "a", "r", True, port=81, proto="udp")
    check(pods, "a", "r", False, port=80)
    check(pods, "a", "b", False)
    check(pods, "b", "a", True)                                 # replies of allowed connections pass
    counters = applier.counters()
    assert counters["drop_in_x_allow-http"] > 0 and counters["drop_eg_x_a-out"] > 0


def test_pods_not_compiled_yet_are_closed_and_churn_is_incremental(lab):
    node, pods, applier = lab
    only_a = [API_PODS[0], API_PODS[2]]
    applier.replace(compile_model(cluster(only_a, [], []), NODE))
    check(pods, "r", "b", False)                               # b's address: no pod known -> closed
    check(pods, "b", "r", False)
    check(pods, "r", "a", True)
    deny = policy("x", "deny", {"matchLabels": {"role": "frontend"}}, ingress=[])
    assert applier.update(compile_model(cluster(API_PODS, [], [deny]), NODE)) == "incremental"
    check(pods, "b", "r", True)
    check(pods, "r", "b", False)                               # now known, and isolated
    assert applier.update(compile_model(cluster(API_PODS, [], []), NODE)) == "incremental"
    check(pods, "r", "b", True)


def test_turning_policy_off_removes_the_table_a_previous_run_left(lab):
    """What the daemon does at start without --network-policy: a table left by a run with it
    (pods known then, a deny policy) stops enforcing, and a pod wired after it is reachable."""
    node, pods, applier = lab
    deny = policy("x", "deny", {"matchLabels": {"app": "web"}}, ingress=[])
    applier.replace(compile_model(cluster([API_PODS[0], API_PODS[2]], [], [deny]), NODE))   # b: wired later
    check(pods, "r", "a", False)
    check(pods, "r", "b", False)
    runner = CommandRunner(prefix=("ip", "netns", "exec", node))
    assert remove_left_over(runner) is True
    assert not applier.present()
    check(pods, "r", "a", True)
    check(pods, "r", "b", True)
    assert remove_left_over(runner) is False                    # nothing left: nothing done


def test_connections_no_longer_allowed_are_cut(lab):
    node, pods, applier = lab
    applier.update(compile_model(cluster(API_PODS, [], []), NODE))
    assert pods["r"].ask(f"open {PODS['a'][0]} 80")
    assert pods["r"].ask("ping 1")
    deny = policy("x", "deny", {"matchLabels": {"app": "web"}}, ingress=[])
    c = cluster(API_PODS, [], [deny])
    applier.update(compile_model(c, NODE))
    assert pods["r"].ask("ping 1"), "established connections pass until their conntrack entry goes"
    by_ip = pods_by_ip(c)
    n = cut(lambda s, d, proto, port: still_allowed(c, by_ip, "n1", s, d, proto, port),
            {ip for name in "ab" for ip in PODS[name]}, netns=node)
    assert n >= 1
    assert not pods["r"].ask("ping 0.5")
    check(pods, "b", "r", True)                                # b's own connections were not cut


def test_denied_packets_reach_overlayd_policy_log(lab):
    node, pods, applier = lab
    deny = policy("x", "deny", {"matchLabels": {"app": "web"}}, ingress=[])
    logged = NodeInfo(NODE.name, NODE.pod_cidrs, NODE.addresses, log_group=4242)
    applier.update(compile_model(cluster(API_PODS, [], [deny]), logged))
    overlayd = os.path.join(os.path.dirname(sys.executable), "overlayd")
    reader = subprocess.Popen(["ip", "netns", "exec", node, overlayd, "policy", "log", "--group", "4242",
                               "--count", "1", "--timeout", "20", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "denied packets" in reader.stderr.readline()      # bound to the group: safe to send
        check(pods, "b", "a", False, port=81)
        out, _ = reader.communicate(timeout=30)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    record = json.loads(out.splitlines()[0])
    assert record["direction"] == "in" and record["src"] == PODS["b"][0] and record["dst"] == PODS["a"][0]
    assert record["protocol"] == "tcp" and record["dport"] == 81


def test_many_policies_on_one_pod_share_rules_and_fit_the_kernel(lab):
    """150 policies select pod a, each allowing another label on port 80: the chain stays two
    rules long (one merged peer set) and the drop counters are split (a rule holds 128 expressions)."""
    node, pods, applier = lab
    many = [policy("x", f"p{i}", {"matchLabels": {"app": "web"}},
                   ingress=[{"from": [{"podSelector": {"matchLabels": {"role": f"r{i}"}}},
                                      {"namespaceSelector": {"matchLabels": {"team": f"t{i}"}}}],
                             "ports": [{"port": 80}]}]) for i in range(150)]
    b = json.loads(json.dumps(API_PODS[1]))
    b["metadata"]["labels"] = {"role": "r149"}
    model = compile_model(cluster([API_PODS[0], b, API_PODS[2]], [], many), NODE)
    (chain,) = [c for c in model.chains if c.startswith("in-")]
    assert len([r for r in model.chains[chain] if r.endswith("return")]) == 2
    applier.update(model)
    check(pods, "b", "a", True)
    check(pods, "r", "a", False)
