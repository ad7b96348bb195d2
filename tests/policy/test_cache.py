"""The watcher's cache: lists replace (mark and sweep), events apply, bad objects are named."""
from overlayd.policy.cache import PolicyCache

from .objects import namespace, pod, policy


def test_list_then_events_and_relist_sweeps_what_is_gone():
    c = PolicyCache()
    assert not c.synced
    c.replace("pods", [pod("x", "a", "10.244.1.2"), pod("x", "b", "10.244.1.3")])
    c.replace("namespaces", [namespace("x")])
    assert c.unsynced() == ["networkpolicies"]
    c.replace("networkpolicies", [])
    assert c.synced
    assert c.apply("pods", "ADDED", pod("x", "c", "10.244.1.4"))
    assert c.apply("pods", "DELETED", pod("x", "a", "10.244.1.2"))
    assert set(c.cluster().pods) == {"x/b", "x/c"}
    c.replace("pods", [pod("x", "b", "10.244.1.3")])             # after a 410: what the list lacks is gone
    assert set(c.cluster().pods) == {"x/b"}


def test_updates_policy_does_not_care_about_change_nothing():
    c = PolicyCache()
    p = pod("x", "a", "10.244.1.2", labels={"app": "web"})
    c.replace("pods", [p])
    v = c.version
    p["metadata"]["resourceVersion"] = "99"
    p["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert not c.apply("pods", "MODIFIED", p)
    assert c.version == v
    p["metadata"]["labels"]["app"] = "db"
    assert c.apply("pods", "MODIFIED", p) and c.version == v + 1


def test_bad_objects_are_left_out_and_named_never_raised():
    c = PolicyCache()
    bad = policy("x", "broken", {}, ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["192.168.0.0/16"]}}]}])
    good = policy("x", "fine", {}, ingress=[])
    c.replace("networkpolicies", [bad, good, {"metadata": {"namespace": "x", "name": "weird"}, "spec": "nonsense"}])
    assert set(c.cluster().policies) == {"x/fine"}
    problems = c.bad()
    assert "must lie inside cidr" in problems["networkpolicies x/broken"]
    assert "networkpolicies x/weird" in problems
    bad["spec"]["ingress"] = []                                   # fixed: it comes in, the complaint goes
    assert c.apply("networkpolicies", "MODIFIED", bad)
    assert "networkpolicies x/broken" not in c.bad() and "x/broken" in c.cluster().policies
