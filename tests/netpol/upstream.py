"""Every case of the upstream Kubernetes NetworkPolicy e2e suite
(kubernetes/kubernetes test/e2e/network/netpol/network_policy.go), as data.

Each case keeps upstream's title (`upstream`) and gets a name that says what it proves. The policies
and the expected truth tables are written as upstream writes them (ExpectPeer / ExpectAllIngress /
...), over the full 9-pod model (x, y, z × a, b, c); loopback is ignored, as upstream does.
`tests/netpol/test_model.py` checks every table against the reference evaluator, so the tables and
the evaluator vouch for each other before the lab runs them.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from .model import NS_LABEL, Peer, Reachability, host_cidr, wide_cidr


@dataclasses.dataclass
class Check:
    port: int
    proto: str
    expect: Callable[[], Reachability]


@dataclasses.dataclass
class Step:
    apply: list = dataclasses.field(default_factory=list)        # policies (created or replaced)
    delete: list = dataclasses.field(default_factory=list)       # [(namespace, name)]
    delete_all: bool = False
    pod_labels: dict = dataclasses.field(default_factory=dict)   # "x/b" -> full label map
    ns_labels: dict = dataclasses.field(default_factory=dict)    # "y" -> full label map
    checks: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Case:
    name: str
    upstream: str
    steps: list
    uses_ips: bool = False          # ipBlock cases: the policy needs the pods' addresses

    @property
    def protocols(self) -> set:
        return {c.proto for s in self.steps for c in s.checks}


# -- policy builders (API JSON) -------------------------------------------------------------------
def labels(**kv) -> dict:
    return {"matchLabels": dict(kv)}


def expr(key: str, op: str, *values: str) -> dict:
    req = {"key": key, "operator": op}
    if values:
        req["values"] = list(values)
    return {"matchExpressions": [req]}


def policy(ns: str, name: str, pod_selector: Optional[dict] = None, *, ingress: Optional[list] = None,
           egress: Optional[list] = None, types: Optional[list] = None) -> dict:
    """A NetworkPolicy; `types` None derives policyTypes as upstream's SetSpec*Rules helpers do
    (each helper called appends its type), so ingress=[] means "Ingress, no rules" (deny)."""
    spec = {"podSelector": pod_selector if pod_selector is not None else {}}
    derived = []
    if ingress is not None:
        spec["ingress"] = ingress
        derived.append("Ingress")
    if egress is not None:
        spec["egress"] = egress
        derived.append("Egress")
    spec["policyTypes"] = types if types is not None else derived
    if not spec["policyTypes"]:
        del spec["policyTypes"]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def port(p, proto: Optional[str] = None) -> dict:
    d = {}
    if p is not None:
        d["port"] = p
    if proto:
        d["protocol"] = proto
    return d


def ns_is(ns: str) -> dict:
    return labels(**{NS_LABEL: ns})


def R(default: bool = True) -> Reachability:
    return Reachability(default)


X, Y, Z = "x", "y", "z"


# -- expectations used more than once ------------------------------------------------------------
def deny_into_x():
    return R().expect_peer(Peer(), Peer(X), False)


def deny_out_of_x():
    return R().expect_peer(Peer(X), Peer(), False)


def only_y_into_xa():
    return R().expect_peer(Peer(X), Peer(X, "a"), False).expect_peer(Peer(Z), Peer(X, "a"), False)


def only_ya_into_xa():
    return R().expect_all_ingress("x/a", False).expect("y/a", "x/a", True)


def only_xb_into_xa():
    return R().expect_all_ingress("x/a", False).expect("x/b", "x/a", True)


def allow_all():
    return R()


def isolate_xa():
    return R().expect_all_ingress("x/a", False)


def _deny_all_plus_allow_a():
    return R().expect_all_ingress("x/a", True).expect_all_ingress("x/b", False).expect_all_ingress("x/c", False)


def _stacked_port81():
    return R().expect_peer(Peer(X), Peer(X, "a"), False).expect_peer(Peer(Y), Peer(X, "a"), True) \
        .expect_peer(Peer(Z), Peer(X, "a"), False)


def _client_side_egress_denial():
    return (R().expect_peer(Peer(X, "a"), Peer(), False).expect_peer(Peer(), Peer(Y, "a"), False)
            .expect_peer(Peer(X, "a"), Peer(Y, "a"), True).expect_peer(Peer(), Peer(Y, "b"), False))


def _ingress_egress_together_81():
    return (R().expect_all_ingress("x/a", False).expect_all_egress("x/a", False).expect("x/b", "x/a", True))


# -- the cases -----------------------------------------------------------------------------------
_TCP = "TCP"
_UDP = "UDP"
_SCTP = "SCTP"
_ns_y_port81 = policy(X, "allow-client-a-via-ns-selector", labels(pod="a"),
                      ingress=[{"from": [{"namespaceSelector": ns_is(Y)}], "ports": [port(81, _TCP)]}])
_ns_y_pod_a = policy(X, "allow-ns-y-pod-a-via-namespace-pod-selector", labels(pod="a"),
                     ingress=[{"from": [{"namespaceSelector": ns_is(Y), "podSelector": labels(pod="a")}]}])

CASES = [
    Case("default_deny_ingress_isolates_the_namespace", "should support a 'default-deny-ingress' policy",
         [Step(apply=[policy(X, "deny-ingress", {}, ingress=[])], checks=[Check(80, _TCP, deny_into_x)])]),
    Case("default_deny_all_blocks_both_directions", "should support a 'default-deny-all' policy",
         [Step(apply=[policy(X, "deny-all", {}, ingress=[], egress=[])],
               checks=[Check(80, _TCP, lambda: deny_into_x().expect_peer(Peer(X), Peer(), False))])]),
    Case("pod_selector_peer_allows_same_namespace_pod",
         "should enforce policy to allow traffic from pods within server namespace based on PodSelector",
         [Step(apply=[policy(X, "x-a-allows-x-b", labels(pod="a"), ingress=[{"from": [{"podSelector": labels(pod="b")}]}])],
               checks=[Check(80, _TCP, only_xb_into_xa)])]),
    Case("allow_policy_for_one_target_beats_namespace_deny", "should enforce policy to allow ingress traffic for a target",
         [Step(apply=[policy(X, "deny-all", {}, ingress=[]),
                      policy(X, "allow-all-to-a", labels(pod="a"),
                             ingress=[{"from": [{"podSelector": {}, "namespaceSelector": {}}]}])],
               checks=[Check(80, _TCP, _deny_all_plus_allow_a)])]),
    Case("empty_namespace_selector_matches_every_namespace",
         "should enforce policy to allow ingress traffic from pods in all namespaces",
         [Step(apply=[policy(X, "allow-from-another-ns", labels(pod="a"),
                             ingress=[{"from": [{"namespaceSelector": {"matchLabels": {}}}]}])],
               checks=[Check(80, _TCP, allow_all)])]),
    Case("namespace_selector_alone_excludes_own_namespace",
         "should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector",
         [Step(apply=[policy(X, "allow-client-a-via-ns-selector", labels(pod="a"),
                             ingress=[{"from": [{"namespaceSelector": ns_is(Y)}]}])],
               checks=[Check(80, _TCP, only_y_into_xa)])]),
    Case("pod_selector_match_expressions_in", "should enforce policy based on PodSelector with MatchExpressions",
         [Step(apply=[policy(X, "x-a-allows-x-b", labels(pod="a"), ingress=[{"from": [{"podSelector": expr("pod", "In", "b")}]}])],
               checks=[Check(80, _TCP, only_xb_into_xa)])]),
    Case("namespace_selector_match_expressions_in", "should enforce policy based on NamespaceSelector with MatchExpressions",
         [Step(apply=[policy(X, "allow-ns-y-match-selector", labels(pod="a"),
                             ingress=[{"from": [{"namespaceSelector": expr(NS_LABEL, "In", Y)}]}])],
               checks=[Check(80, _TCP, only_y_into_xa)])]),
    Case("two_peers_are_ored_pod_or_namespace", "should enforce policy based on PodSelector or NamespaceSelector",
         [Step(apply=[policy(X, "allow-ns-y-match-selector", labels(pod="a"),
                             ingress=[{"from": [{"namespaceSelector": expr(NS_LABEL, "NotIn", X)},
                                                {"podSelector": labels(pod="b")}]}])],
               checks=[Check(80, _TCP, lambda: R().expect("x/a", "x/a", False).expect("x/c", "x/a", False))])]),
    Case("pod_and_namespace_selector_in_one_peer_are_anded", "should enforce policy based on PodSelector and NamespaceSelector",
         [Step(apply=[policy(X, "allow-ns-y-podselector-and-nsselector", labels(pod="a"),
                             ingress=[{"from": [{"namespaceSelector": expr(NS_LABEL, "NotIn", X),
                                                 "podSelector": labels(pod="b")}]}])],
               checks=[Check(80, _TCP, lambda: isolate_xa().expect("y/b", "x/a", True).expect("z/b", "x/a", True))])]),
    Case("match_expressions_in_both_selectors_of_one_peer",
         "should enforce policy based on Multiple PodSelectors and NamespaceSelectors",
         [Step(apply=[policy(X, "allow-ns-y-z-pod-b-c", labels(pod="a"),
                             ingress=[{"from": [{"namespaceSelector": expr(NS_LABEL, "NotIn", X),
                                                 "podSelector": expr("pod", "In", "b", "c")}]}])],
               checks=[Check(80, _TCP, lambda: R().expect_peer(Peer(X), Peer(X, "a"), False)
                             .expect("y/a", "x/a", False).expect("z/a", "x/a", False))])]),
    Case("several_pod_selector_peers_are_ored", "should enforce policy based on any PodSelectors",
         [Step(apply=[policy(X, "allow-ns-x-pod-b-c", labels(pod="a"),
                             ingress=[{"from": [{"podSelector": labels(pod="b")}, {"podSelector": labels(pod="c")}]}])],
               checks=[Check(80, _TCP, lambda: only_xb_into_xa().expect("x/c", "x/a", True))])]),
    Case("one_pod_in_another_namespace_by_pod_and_namespace_selector",
         "should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
         [Step(apply=[_ns_y_pod_a], checks=[Check(80, _TCP, only_ya_into_xa)])]),
    Case("numeric_port_limits_ingress_to_that_port", "should enforce policy based on Ports",
         [Step(apply=[_ns_y_port81], checks=[Check(81, _TCP, _stacked_port81)])]),
    Case("stacked_policies_union_per_port", "should enforce multiple, stacked policies with overlapping podSelectors",
         [Step(apply=[_ns_y_port81], checks=[Check(81, _TCP, _stacked_port81), Check(80, _TCP, isolate_xa)]),
          Step(apply=[policy(X, "allow-client-a-via-ns-selector-80", labels(pod="a"),
                             ingress=[{"from": [{"namespaceSelector": ns_is(Y)}], "ports": [port(80, _TCP)]}])],
               checks=[Check(80, _TCP, _stacked_port81)])]),
    Case("allow_all_ingress_rule_restricts_nothing", "should support allow-all policy",
         [Step(apply=[policy(X, "allow-all", {"matchLabels": {}}, ingress=[{}])],
               checks=[Check(80, _TCP, allow_all), Check(81, _TCP, allow_all)])]),
    Case("named_port_ingress_resolves_on_the_target", "should allow ingress access on one named port",
         [Step(apply=[policy(X, "allow-all", {"matchLabels": {}}, ingress=[{"ports": [port("serve-81-tcp")]}])],
               checks=[Check(81, _TCP, allow_all), Check(80, _TCP, deny_into_x)])]),
    Case("named_port_with_namespace_peer", "should allow ingress access from namespace on one named port",
         [Step(apply=[policy(X, "allow-client-a-via-ns-selector-80", labels(pod="a"),
                             ingress=[{"from": [{"namespaceSelector": ns_is(Y)}], "ports": [port("serve-80-tcp", _TCP)]}])],
               checks=[Check(80, _TCP, only_y_into_xa), Check(81, _TCP, isolate_xa)])]),
    Case("named_port_egress_resolves_on_the_destination", "should allow egress access on one named port",
         [Step(apply=[policy(X, "allow-egress", {"matchLabels": {}}, egress=[{"ports": [port("serve-80-tcp")]}])],
               checks=[Check(80, _TCP, allow_all), Check(81, _TCP, deny_out_of_x)])]),
    Case("policy_update_from_allow_all_to_deny_all", "should enforce updated policy",
         [Step(apply=[policy(X, "allow-all-mutate-to-deny-all", {"matchLabels": {}}, ingress=[{}])],
               checks=[Check(81, _TCP, allow_all)]),
          Step(apply=[policy(X, "allow-all-mutate-to-deny-all", {"matchLabels": {}}, ingress=[])],
               checks=[Check(81, _TCP, deny_into_x)])]),
    Case("namespace_label_change_grants_ingress", "should allow ingress access from updated namespace",
         [Step(apply=[policy(X, "allow-client-a-via-ns-selector", labels(pod="a"),
                             ingress=[{"from": [{"namespaceSelector": labels(ns2="updated")}]}])],
               checks=[Check(80, _TCP, isolate_xa)]),
          Step(ns_labels={Y: {NS_LABEL: Y, "ns2": "updated"}},
               checks=[Check(80, _TCP, lambda: isolate_xa().expect_peer(Peer(Y), Peer(), True))])]),
    Case("pod_label_change_grants_ingress", "should allow ingress access from updated pod",
         [Step(apply=[policy(X, "allow-client-a-via-pod-selector", labels(pod="a"),
                             ingress=[{"from": [{"podSelector": labels(pod="b", pod2="updated")}]}])],
               checks=[Check(80, _TCP, isolate_xa)]),
          Step(pod_labels={"x/b": {"pod": "b", "pod2": "updated"}}, checks=[Check(80, _TCP, only_xb_into_xa)])]),
    Case("empty_pod_selector_peer_means_own_namespace_only", "should deny ingress from pods on other namespaces",
         [Step(apply=[policy(X, "deny-empty-policy", {}, ingress=[{"from": [{"podSelector": {"matchLabels": {}}}]}])],
               checks=[Check(80, _TCP, lambda: R().expect_peer(Peer(Y), Peer(X), False).expect_peer(Peer(Z), Peer(X), False))])]),
    Case("pod_label_change_isolates_the_pod", "should deny ingress access to updated pod",
         [Step(apply=[policy(X, "deny-ingress-via-label-selector", labels(target="isolated"), ingress=[])],
               checks=[Check(80, _TCP, allow_all)]),
          Step(pod_labels={"x/a": {"pod": "a", "target": "isolated"}}, checks=[Check(80, _TCP, isolate_xa)])]),
    Case("egress_deny_for_one_pod", "should deny egress from pods based on PodSelector",
         [Step(apply=[policy(X, "deny-egress-pod-a", labels(pod="a"), egress=[])],
               checks=[Check(80, _TCP, lambda: R().expect_all_egress("x/a", False))])]),
    Case("egress_deny_for_a_namespace", "should deny egress from all pods in a namespace",
         [Step(apply=[policy(X, "deny-egress-ns-x", {}, egress=[])], checks=[Check(80, _TCP, deny_out_of_x)])]),
    Case("ingress_and_egress_in_one_policy", "should work with Ingress, Egress specified together",
         [Step(apply=[policy(X, "allow-client-a-via-pod-selector", labels(pod="a"),
                             ingress=[{"from": [{"podSelector": labels(pod="b")}]}],
                             egress=[{"ports": [port(80)]}], types=["Egress", "Ingress"])],
               checks=[Check(80, _TCP, only_xb_into_xa), Check(81, _TCP, _ingress_egress_together_81)])]),
    Case("egress_denial_on_the_client_wins_over_server_allow",
         "should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)",
         [Step(apply=[policy(X, "allow-to-ns-y-pod-a", labels(pod="a"),
                             egress=[{"to": [{"namespaceSelector": ns_is(Y), "podSelector": labels(pod="a")}]}]),
                      policy(Y, "allow-from-xa-on-ya-match-selector", labels(pod="a"),
                             ingress=[{"from": [{"namespaceSelector": ns_is(X), "podSelector": labels(pod="a")}]}]),
                      policy(Y, "allow-from-xa-on-yb-match-selector", labels(pod="b"),
                             ingress=[{"from": [{"namespaceSelector": ns_is(X), "podSelector": labels(pod="a")}]}])],
               checks=[Check(80, _TCP, _client_side_egress_denial)])]),
    Case("egress_to_one_pod_by_pod_and_namespace_selector",
         "should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector",
         [Step(apply=[policy(X, "allow-to-ns-y-pod-a", labels(pod="a"),
                             egress=[{"to": [{"namespaceSelector": ns_is(Y), "podSelector": labels(pod="a")}]}])],
               checks=[Check(80, _TCP, lambda: R().expect_all_egress("x/a", False).expect("x/a", "y/a", True))])]),
    Case("protocol_without_port_allows_every_port_of_it",
         "should enforce ingress policy allowing any port traffic to a server on a specific protocol",
         [Step(apply=[policy(X, "allow-ingress-by-proto", labels(pod="a"), ingress=[{"ports": [port(None, _TCP)]}])],
               checks=[Check(80, _TCP, allow_all), Check(80, _UDP, isolate_xa)])]),
    Case("ingress_allow_all_policy_overrides_a_narrower_one",
         "should enforce multiple ingress policies with ingress allow-all policy taking precedence",
         [Step(apply=[policy(X, "allow-ingress-port-80", {"matchLabels": {}}, ingress=[{"ports": [port(80)]}])],
               checks=[Check(81, _TCP, deny_into_x)]),
          Step(apply=[policy(X, "allow-ingress", {"matchLabels": {}}, ingress=[{}])], checks=[Check(81, _TCP, allow_all)])]),
    Case("egress_allow_all_policy_overrides_a_narrower_one",
         "should enforce multiple egress policies with egress allow-all policy taking precedence",
         [Step(apply=[policy(X, "allow-egress-port-80", {"matchLabels": {}}, egress=[{"ports": [port(80)]}])],
               checks=[Check(81, _TCP, deny_out_of_x)]),
          Step(apply=[policy(X, "allow-egress", {"matchLabels": {}}, egress=[{}])], checks=[Check(81, _TCP, allow_all)])]),
    Case("deleting_policies_restores_traffic", "should stop enforcing policies after they are deleted",
         [Step(apply=[policy(X, "deny-all", {}, ingress=[], egress=[])],
               checks=[Check(80, _TCP, lambda: deny_into_x().expect_peer(Peer(X), Peer(), False))]),
          Step(delete_all=True, checks=[Check(80, _TCP, allow_all)])]),
    Case("ipblock_egress_to_one_pod_address", "should allow egress access to server in CIDR block",
         [Step(apply=[policy(X, "allow-client-a-via-cidr-egress-rule", labels(pod="a"),
                             egress=[{"to": [{"ipBlock": {"cidr": host_cidr("y/b")}}]}])],
               checks=[Check(80, _TCP, lambda: R().expect_all_egress("x/a", False).expect("x/a", "y/b", True))])],
         uses_ips=True),
    Case("ipblock_except_carves_out_a_pod", "should enforce except clause while egress access to server in CIDR block",
         [Step(apply=[policy(X, "allow-client-a-via-cidr-egress-rule", labels(pod="a"),
                             egress=[{"to": [{"ipBlock": {"cidr": wide_cidr("x/b"), "except": [host_cidr("x/b")]}}]}])],
               checks=[Check(80, _TCP, lambda: R().expect("x/a", "x/b", False))])], uses_ips=True),
    Case("address_in_one_policys_except_allowed_by_another_after_update",
         "should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed",
         [Step(apply=[policy(X, "allow-client-a-via-cidr-egress-rule", labels(pod="a"),
                             egress=[{"to": [{"ipBlock": {"cidr": wide_cidr("x/b"), "except": [host_cidr("x/b")]}}]}])],
               checks=[Check(80, _TCP, lambda: R().expect("x/a", "x/b", False))]),
          Step(apply=[policy(X, "allow-client-a-via-cidr-egress-rule", labels(pod="a"),
                             egress=[{"to": [{"ipBlock": {"cidr": host_cidr("x/b")}}]}])],
               checks=[Check(80, _TCP, lambda: R().expect_all_egress("x/a", False).expect("x/a", "x/b", True))])],
         uses_ips=True),
    Case("ingress_and_egress_isolation_are_independent",
         "should enforce policies to check ingress and egress policies can be controlled independently based on PodSelector",
         [Step(apply=[policy(X, "allow-egress-for-target", labels(pod="a"), egress=[{}])], checks=[Check(80, _TCP, allow_all)]),
          Step(apply=[policy(X, "deny-ingress-via-label-selector", labels(pod="a"), ingress=[])],
               checks=[Check(80, _TCP, isolate_xa)])]),
    Case("sctp_rule_does_not_open_tcp",
         "should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP",
         [Step(apply=[policy(X, "deny-ingress", {}, ingress=[]),
                      policy(X, "allow-only-sctp-ingress-on-port-81", labels(pod="a"), ingress=[{"ports": [port(81, _SCTP)]}])],
               checks=[Check(81, _TCP, deny_into_x)])]),
    Case("sctp_only_policy_still_isolates_for_tcp",
         "should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't support SCTP",
         [Step(apply=[policy(X, "allow-only-sctp-ingress-on-port-80", labels(pod="a"), ingress=[{"ports": [port(80, _SCTP)]}])],
               checks=[Check(81, _TCP, isolate_xa)])]),
    Case("udp_rule_does_not_open_tcp", "should not allow access by TCP when a policy specifies only UDP",
         [Step(apply=[policy(X, "allow-only-udp-ingress-on-port-81", labels(pod="a"), ingress=[{"ports": [port(81, _UDP)]}])],
               checks=[Check(81, _TCP, isolate_xa)])]),
    Case("automatic_namespace_name_label_in_match_labels",
         "should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label",
         [Step(apply=[policy(X, "allow-client-a-via-ns-selector-for-immutable-ns-label", labels(pod="a"),
                             ingress=[{"from": [{"namespaceSelector": ns_is(Y)}]}])],
               checks=[Check(80, _TCP, only_y_into_xa)])]),
    Case("automatic_namespace_name_label_not_in_for_egress",
         "should enforce policy based on NamespaceSelector with MatchExpressions using default ns label",
         [Step(apply=[policy(X, "allow-ns-y-match-selector-for-immutable-ns-label", labels(pod="a"),
                             egress=[{"to": [{"namespaceSelector": expr(NS_LABEL, "NotIn", Y)}]}])],
               checks=[Check(80, _TCP, lambda: R().expect_peer(Peer(X, "a"), Peer(Y), False))])]),
    # -- UDP ("NetworkPolicy between server and client using UDP")
    Case("udp_default_deny_ingress", "UDP: should support a 'default-deny-ingress' policy",
         [Step(apply=[policy(X, "deny-all", {}, ingress=[])], checks=[Check(80, _UDP, deny_into_x)])]),
    Case("udp_numeric_port_with_namespace_peer", "UDP: should enforce policy based on Ports",
         [Step(apply=[policy(X, "allow-ingress-on-port-81-ns-x", labels(pod="a"),
                             ingress=[{"from": [{"namespaceSelector": ns_is(Y)}], "ports": [port(81, _UDP)]}])],
               checks=[Check(81, _UDP, only_y_into_xa)])]),
    Case("udp_one_pod_by_pod_and_namespace_selector",
         "UDP: should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
         [Step(apply=[_ns_y_pod_a], checks=[Check(80, _UDP, only_ya_into_xa)])]),
    # -- SCTP ("NetworkPolicy between server and client using SCTP"): probed with crafted INITs
    Case("sctp_default_deny_ingress", "SCTP: should support a 'default-deny-ingress' policy",
         [Step(apply=[policy(X, "deny-all", {}, ingress=[])], checks=[Check(80, _SCTP, deny_into_x)])]),
    Case("sctp_numeric_port_with_namespace_peer", "SCTP: should enforce policy based on Ports",
         [Step(apply=[policy(X, "allow-ingress-on-port-81-ns-x", labels(pod="a"),
                             ingress=[{"from": [{"namespaceSelector": ns_is(Y)}], "ports": [port(81, _SCTP)]}])],
               checks=[Check(81, _SCTP, only_y_into_xa)])]),
    Case("sctp_one_pod_by_pod_and_namespace_selector",
         "SCTP: should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
         [Step(apply=[_ns_y_pod_a], checks=[Check(80, _SCTP, only_ya_into_xa)])]),
]
