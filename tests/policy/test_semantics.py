"""NetworkPolicy semantics, case by case, through the verdicts `overlayd policy explain` gives.

The compile step is built on the same functions (overlayd.policy.semantics); test_compile and the
kernel tests check that the nftables model says the same thing.
"""
from overlayd.policy.evaluate import connection, explain

from .objects import cluster, namespace, pod, policy

PODS = [pod(ns, name, f"10.244.{n}.{10 + i * 3 + n}", node=f"n{n}", labels={"pod": name},
            ports=[("serve-80-tcp", 80, "TCP"), ("serve-81-udp", 81, "UDP")])
        for i, ns in enumerate("xyz") for n, name in ((1, "a"), (2, "b"), (3, "c"))]
NAMESPACES = [namespace(ns, {"ns": ns}) for ns in "xyz"]
IP = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p["status"]["podIPs"][0]["ip"] for p in PODS}


def allowed(policies, src, dst, port=80, proto="TCP", pods=PODS, namespaces=NAMESPACES):
    c = cluster(pods, namespaces, policies)
    src_ip = IP.get(src, src)
    dst_ip = IP.get(dst, dst)
    egress, ingress = connection(c, src_ip, dst_ip, proto, port)
    return egress.allowed and ingress.allowed


def test_no_policy_allows_everything():
    assert allowed([], "x/a", "y/b")


def test_brief_allow_http_frontend_to_web_on_80_only():
    pods = [pod("default", "web", "10.244.1.5", labels={"app": "web"}),
            pod("default", "frontend", "10.244.2.5", labels={"role": "frontend"}),
            pod("default", "other", "10.244.3.5", labels={"role": "other"})]
    allow_http = policy("default", "allow-http", {"matchLabels": {"app": "web"}},
                        ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}],
                                  "ports": [{"protocol": "TCP", "port": 80}]}])
    c = cluster(pods, [], [allow_http])
    assert explain(c, c.pods["default/frontend"], c.pods["default/web"], "TCP", 80)["allowed"]
    assert not explain(c, c.pods["default/frontend"], c.pods["default/web"], "TCP", 81)["allowed"]
    assert not explain(c, c.pods["default/frontend"], c.pods["default/web"], "UDP", 80)["allowed"]
    denied = explain(c, c.pods["default/other"], c.pods["default/web"], "TCP", 80)
    assert not denied["allowed"] and denied["ingress"]["selecting"] == ("default/allow-http",)
    assert explain(c, c.pods["default/web"], c.pods["default/other"], "TCP", 80)["allowed"]   # egress open


def test_deny_all_ingress_and_allow_all():
    deny = policy("x", "deny", {}, ingress=[])
    assert not allowed([deny], "y/a", "x/b")
    assert not allowed([deny], "x/a", "x/b")
    assert allowed([deny], "x/a", "y/b")                       # ingress only: egress untouched
    allow_all = policy("x", "allow-all", {}, ingress=[{}])
    assert allowed([deny, allow_all], "y/a", "x/b")            # union


def test_policy_types_default_ingress_only_unless_egress_present():
    only_ingress_rules = policy("x", "p", {}, ingress=[{}])
    assert allowed([only_ingress_rules], "x/a", "z/c")         # egress not isolated
    egress_deny = policy("x", "p", {}, egress=[])
    assert not allowed([egress_deny], "x/a", "z/c")            # egress present -> Egress type
    assert not allowed([egress_deny], "z/c", "x/a")            # Ingress too, with no rules: deny
    explicit = policy("x", "p", {}, egress=[], types=["Egress"])
    assert allowed([explicit], "z/c", "x/a")


def test_egress_present_makes_ingress_isolated_too_by_default():
    # policyTypes absent + egress present -> ["Ingress", "Egress"]; no ingress rules -> deny ingress
    p = policy("x", "p", {"matchLabels": {"pod": "a"}}, egress=[{}])
    assert not allowed([p], "z/c", "x/a")
    assert allowed([p], "x/a", "z/c")


def test_empty_versus_absent_selectors():
    from_all_in_ns = policy("x", "p", {"matchLabels": {"pod": "a"}}, ingress=[{"from": [{"podSelector": {}}]}])
    assert allowed([from_all_in_ns], "x/b", "x/a") and not allowed([from_all_in_ns], "y/b", "x/a")
    from_all_ns = policy("x", "p", {"matchLabels": {"pod": "a"}}, ingress=[{"from": [{"namespaceSelector": {}}]}])
    assert allowed([from_all_ns], "y/b", "x/a") and not allowed([from_all_ns], "192.0.2.9", "x/a")
    from_absent = policy("x", "p", {"matchLabels": {"pod": "a"}}, ingress=[{"ports": [{"port": 80}]}])
    assert allowed([from_absent], "192.0.2.9", "x/a") and not allowed([from_absent], "y/b", "x/a", port=81)
    empty_from = policy("x", "p", {"matchLabels": {"pod": "a"}}, ingress=[{"from": []}])
    assert allowed([empty_from], "y/b", "x/a")                # empty list = no restriction on peers


def test_namespace_and_pod_selector_in_one_peer_is_and_two_peers_is_or():
    both = policy("x", "p", {"matchLabels": {"pod": "a"}}, ingress=[{"from": [
        {"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}]}])
    assert allowed([both], "y/b", "x/a")
    assert not allowed([both], "y/c", "x/a") and not allowed([both], "z/b", "x/a") and not allowed([both], "x/b", "x/a")
    either = policy("x", "p", {"matchLabels": {"pod": "a"}}, ingress=[{"from": [
        {"namespaceSelector": {"matchLabels": {"ns": "y"}}}, {"podSelector": {"matchLabels": {"pod": "b"}}}]}])
    assert allowed([either], "y/c", "x/a") and allowed([either], "x/b", "x/a")
    assert not allowed([either], "z/b", "x/a")                 # podSelector alone: the policy's namespace


def test_match_expressions():
    def sel(op, values=None):
        e = {"key": "pod", "operator": op}
        if values is not None:
            e["values"] = values
        return policy("x", "p", {"matchLabels": {"pod": "a"}},
                      ingress=[{"from": [{"podSelector": {"matchExpressions": [e]}}]}])
    assert allowed([sel("In", ["b"])], "x/b", "x/a") and not allowed([sel("In", ["b"])], "x/c", "x/a")
    assert not allowed([sel("NotIn", ["b"])], "x/b", "x/a") and allowed([sel("NotIn", ["b"])], "x/c", "x/a")
    assert allowed([sel("Exists")], "x/c", "x/a")
    assert not allowed([sel("DoesNotExist")], "x/c", "x/a")


def test_ip_block_with_except_and_pod_ips_inside_count():
    p = policy("x", "p", {"matchLabels": {"pod": "a"}}, ingress=[{"from": [
        {"ipBlock": {"cidr": "10.244.0.0/16", "except": [f"{IP['y/b']}/32"]}}]}])
    assert allowed([p], "y/c", "x/a")                          # a pod address inside the block
    assert not allowed([p], "y/b", "x/a")                      # excepted
    assert not allowed([p], "192.0.2.9", "x/a")


def test_named_ports_resolve_against_the_target_and_unknown_names_match_nothing():
    p = policy("x", "p", {"matchLabels": {"pod": "a"}}, ingress=[{"ports": [{"port": "serve-80-tcp"}]}])
    assert allowed([p], "y/b", "x/a", port=80) and not allowed([p], "y/b", "x/a", port=81)
    nobody = policy("x", "p", {"matchLabels": {"pod": "a"}}, ingress=[{"ports": [{"port": "no-such"}]}])
    assert not allowed([nobody], "y/b", "x/a", port=80)
    wrong_proto = policy("x", "p", {"matchLabels": {"pod": "a"}},
                         ingress=[{"ports": [{"port": "serve-80-tcp", "protocol": "UDP"}]}])
    assert not allowed([wrong_proto], "y/b", "x/a", port=80, proto="UDP")


def test_egress_named_port_resolves_against_each_destination():
    pods = PODS + [pod("y", "odd", "10.244.2.99", node="n2", labels={"pod": "odd"}, ports=[("serve-80-tcp", 8080, "TCP")])]
    IP["y/odd"] = "10.244.2.99"
    p = policy("x", "p", {"matchLabels": {"pod": "a"}}, egress=[{"ports": [{"port": "serve-80-tcp"}]}])
    assert allowed([p], "x/a", "y/b", port=80, pods=pods)
    assert allowed([p], "x/a", "y/odd", port=8080, pods=pods) and not allowed([p], "x/a", "y/odd", port=80, pods=pods)
    assert not allowed([p], "x/a", "192.0.2.9", port=80, pods=pods)    # not a pod: the name resolves to nothing


def test_end_port_and_protocols_default_tcp():
    p = policy("x", "p", {"matchLabels": {"pod": "a"}}, ingress=[{"ports": [{"port": 80, "endPort": 90}]}])
    assert allowed([p], "y/b", "x/a", port=85) and not allowed([p], "y/b", "x/a", port=91)
    assert not allowed([p], "y/b", "x/a", port=85, proto="UDP")
    sctp = policy("x", "p", {"matchLabels": {"pod": "a"}}, ingress=[{"ports": [{"port": 80, "protocol": "SCTP"}]}])
    assert allowed([sctp], "y/b", "x/a", proto="SCTP") and not allowed([sctp], "y/b", "x/a")


def test_host_network_pods_are_never_targets():
    pods = PODS + [pod("x", "host", "192.0.2.1", labels={"pod": "a"}, host_network=True)]
    deny = policy("x", "deny", {}, ingress=[])
    c = cluster(pods, NAMESPACES, [deny])
    out = explain(c, c.pods["y/a"], c.pods["x/host"], "TCP", 80)
    assert out["allowed"] and "host network" in out["note"]


def test_ipv6_peers():
    pods = [pod("x", "a", ["10.244.1.2", "fd00:1::2"], labels={"pod": "a"}),
            pod("y", "b", ["10.244.2.2", "fd00:2::2"], node="n2", labels={"pod": "b"})]
    p = policy("x", "p", {}, ingress=[{"from": [{"ipBlock": {"cidr": "fd00:2::/64"}}]}])
    c = cluster(pods, [], [p])
    assert connection(c, "fd00:2::2", "fd00:1::2", "TCP", 80)[1].allowed
    assert not connection(c, "10.244.2.2", "10.244.1.2", "TCP", 80)[1].allowed
