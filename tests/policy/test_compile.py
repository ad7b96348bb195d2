"""The nftables model's shape: what is rendered, what pods share, what churn changes."""
from overlayd.policy import render
from overlayd.policy.compile import NodeInfo, compile_model

from .objects import cluster, pod, policy

NODE = NodeInfo("n1", ("10.244.1.0/24", "fd00:1::/64"), ("192.0.2.1",))


def web_pods(n=3, node="n1", start=2):
    return [pod("x", f"web{i}", f"10.244.{1 if node == 'n1' else 2}.{start + i}", node=node, labels={"app": "web"})
            for i in range(n)]


ALLOW = policy("x", "allow", {"matchLabels": {"app": "web"}},
               ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "fe"}}}], "ports": [{"port": 80}]}])


def test_pods_with_the_same_rules_share_one_chain_and_each_address_has_a_map_element():
    m = compile_model(cluster(web_pods(), [], [ALLOW]), NODE)
    chains = [c for c in m.chains if c.startswith("in-")]
    assert len(chains) == 1
    assert [k for k, _ in m.maps["in4"].elements] == ["10.244.1.2", "10.244.1.3", "10.244.1.4"]
    assert m.maps["eg4"].elements == ()
    assert m.stats.policies == 1 and m.stats.pods_selected == 3


def test_only_policies_selecting_a_local_pod_are_rendered():
    remote_only = policy("x", "remote", {"matchLabels": {"app": "db"}}, ingress=[])
    pods = web_pods() + [pod("x", "db", "10.244.2.9", node="n2", labels={"app": "db"})]
    m = compile_model(cluster(pods, [], [ALLOW, remote_only]), NODE)
    assert m.stats.policies == 1
    assert not any("remote" in c for c in m.counters)


def test_known_addresses_are_the_compiled_local_pods_only():
    pods = web_pods(2) + [pod("x", "host", "192.0.2.1", labels={"app": "web"}, host_network=True),
                          pod("x", "done", "10.244.1.50", labels={"app": "web"}, phase="Succeeded"),
                          pod("x", "far", "10.244.2.7", node="n2")]
    m = compile_model(cluster(pods, [], [ALLOW]), NODE)
    assert m.sets["known4"].elements == {"10.244.1.2", "10.244.1.3"}
    assert "192.0.2.1" not in dict(m.maps["in4"].elements)      # hostNetwork: never a target
    assert m.sets["podnet4"].elements == {"10.244.1.0/24"} and m.sets["podnet6"].elements == {"fd00:1::/64"}


def test_pod_churn_elsewhere_changes_set_elements_only():
    fe = [pod("y", "fe1", "10.244.2.20", node="n2", labels={"role": "fe"})]
    allow_y = policy("x", "allow", {"matchLabels": {"app": "web"}},
                     ingress=[{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "fe"}}}]}])
    before = compile_model(cluster(web_pods() + fe, [], [allow_y]), NODE)
    more = fe + [pod("y", "fe2", "10.244.2.21", node="n2", labels={"role": "fe"})]
    after = compile_model(cluster(web_pods() + more, [], [allow_y]), NODE)
    script = render.incremental(before, after)
    assert script.splitlines() == [line for line in script.splitlines() if line.startswith("add element")]
    assert "10.244.2.21" in script


def test_a_new_local_pod_with_known_rules_is_two_map_elements_and_known():
    before = compile_model(cluster(web_pods(2), [], [ALLOW]), NODE)
    after = compile_model(cluster(web_pods(3), [], [ALLOW]), NODE)
    lines = render.incremental(before, after).splitlines()
    assert all(line.startswith("add element") for line in lines)
    assert any(" known4 " in line for line in lines) and any(" in4 " in line for line in lines)


def test_ip_blocks_merge_with_pod_addresses_into_disjoint_intervals():
    p = policy("x", "p", {"matchLabels": {"app": "web"}}, ingress=[{"from": [
        {"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.2.0/24"]}},
        {"namespaceSelector": {}}]}])
    pods = web_pods() + [pod("y", "in-except", "10.244.2.30", node="n2"), pod("y", "outside", "10.9.0.1", node="n2")]
    m = compile_model(cluster(pods, [], [p]), NODE)
    (peers,) = [s for n, s in m.sets.items() if n.startswith("pr-") and n.endswith("-4")]
    assert "10.9.0.1" in peers.elements and "10.244.2.30" in peers.elements      # selected pods
    assert "10.244.1.2" not in peers.elements                                      # inside the block
    assert "10.244.0.0/23" in peers.elements and "10.244.2.0/24" not in peers.elements


def test_egress_named_ports_are_elements_per_destination():
    pods = web_pods(1) + [pod("y", "api", "10.244.2.40", node="n2", labels={"app": "api"}, ports=[("http", 8080, "TCP")]),
                          pod("y", "other", "10.244.2.41", node="n2", labels={"app": "api"}, ports=[("http", 9090, "TCP")])]
    p = policy("x", "p", {"matchLabels": {"app": "web"}}, egress=[{"ports": [{"port": "http"}]}], types=["Egress"])
    m = compile_model(cluster(pods, [], [p]), NODE)
    (named,) = [s for n, s in m.sets.items() if n.startswith("pn-") and n.endswith("-4")]
    assert named.elements == {"10.244.2.40 . tcp . 8080", "10.244.2.41 . tcp . 9090"}


def test_full_script_replaces_the_table_in_one_transaction():
    text = render.full(compile_model(cluster(web_pods(), [], [ALLOW]), NODE))
    assert text.startswith("table inet overlayd-policy\ndelete table inet overlayd-policy\n")
    assert "type filter hook forward priority filter - 5; policy accept;" in text


def test_overlapping_port_ranges_are_merged_for_the_kernel():
    """`port: 80, endPort: 81` next to `port: 81` (a generated case found it): an nft interval set
    refuses overlapping elements, which failed the whole transaction."""
    p = policy("x", "p", {"matchLabels": {"app": "web"}}, ingress=[{"ports": [
        {"port": 80, "endPort": 81}, {"port": 81, "protocol": "TCP"}, {"port": 82}, {"port": 90, "protocol": "UDP"},
        {"port": 85, "endPort": 88}]}])
    m = compile_model(cluster(web_pods(1), [], [p]), NODE)
    (chain,) = [c for n, c in m.chains.items() if n.startswith("in-")]
    assert chain[0] == "meta l4proto . th dport { tcp . 80-82, tcp . 85-88, udp . 90 } return"
