"""--ip-masq in a real node namespace: what a host outside the cluster and another pod see."""
from __future__ import annotations

import pytest

from overlayd.lab.netns import ip
from overlayd.masquerade import CommandRunner, Masquerade, MasqSpec, MasqSpecError, RulesError

from .opslab import (NETWORK, NETWORK6, NODE_UNDERLAY, NODE_UNDERLAY6, OUTSIDE, OUTSIDE6, POD, POD2,
                       POD2_6, POD6, SUBNET, SUBNET6)

pytestmark = pytest.mark.kernel

SPORT = 40000          # the pod's source port; fully-random masquerade must not keep it
MARKED_SPORT = 40001   # packets from this port get kube-proxy's mark (with another bit set too)

FOREIGN_TABLE = """
table ip someone_else {
    chain pre {
        type filter hook prerouting priority mangle; policy accept;
        udp sport %d meta mark set 0x00004001
    }
}
""" % MARKED_SPORT


def test_pods_reach_outside_from_the_node_ip_while_pod_to_pod_keeps_pod_ips(ops_lab):
    lab = ops_lab
    # Without rules the outside host sees the pod address (and could not answer it).
    assert lab.source_seen(lab.pod, lab.outside, OUTSIDE).source == POD

    lab.nft("-f", "-", input=FOREIGN_TABLE)      # stands in for kube-proxy marking a service packet
    masq = Masquerade(lab.runner)
    assert masq.ensure(MasqSpec(network=NETWORK, subnet=SUBNET)) is True

    seen = lab.source_seen(lab.pod, lab.outside, OUTSIDE, sport=SPORT)
    assert seen.source == NODE_UNDERLAY
    assert seen.port != SPORT, "masquerade should pick a fully random source port"
    assert lab.source_seen(lab.pod, lab.pod2, POD2).source == POD
    assert lab.source_seen(lab.pod2, lab.pod, POD).source == POD2
    # kube-proxy's mark (0x4000/0x4000, other bits set as well): left for kube-proxy to NAT, not us.
    assert lab.source_seen(lab.pod, lab.outside, OUTSIDE, sport=MARKED_SPORT).source == POD
    assert "someone_else" in lab.nft("list", "tables")


def test_dual_stack_masquerades_both_families(ops_lab):
    lab = ops_lab
    masq = Masquerade(lab.runner)
    masq.ensure(MasqSpec(network=NETWORK, subnet=SUBNET, ipv6_network=NETWORK6, ipv6_subnet=SUBNET6))

    assert lab.source_seen(lab.pod, lab.outside, OUTSIDE6).source == NODE_UNDERLAY6
    assert lab.source_seen(lab.pod, lab.pod2, POD2_6).source == POD6
    assert lab.source_seen(lab.pod, lab.outside, OUTSIDE).source == NODE_UNDERLAY
    assert lab.source_seen(lab.pod, lab.pod2, POD2).source == POD


def test_outside_traffic_keeps_its_source_to_this_nodes_pods_and_is_masqueraded_to_other_pods(ops_lab):
    lab = ops_lab
    ip("route", "add", NETWORK, "via", NODE_UNDERLAY, netns=lab.outside)   # the outside host routes pods via this node
    Masquerade(lab.runner).ensure(MasqSpec(network=NETWORK, subnet=SUBNET))
    assert lab.source_seen(lab.outside, lab.pod, POD).source == OUTSIDE
    # pod2 stands for another node's subnet: the node masquerades so the answer comes back through it.
    assert lab.source_seen(lab.outside, lab.pod2, POD2).source == "10.244.2.1"


def test_resync_is_idempotent_repairs_edits_follows_network_changes_and_removes_only_ours(ops_lab):
    lab = ops_lab
    lab.nft("-f", "-", input=FOREIGN_TABLE)
    masq = Masquerade(lab.runner)
    spec = MasqSpec(network=NETWORK, subnet=SUBNET)
    assert masq.ensure(spec) is True
    lab.source_seen(lab.pod, lab.outside, OUTSIDE)       # counts one masqueraded flow
    first = masq.listing()

    # Resync with nothing changed: no write, same rules, counters keep counting.
    assert masq.ensure(spec) is False
    assert masq.listing() == first and "packets 1 " in first
    assert masq.in_place(spec)

    # Someone flushes our chain by hand: the next resync puts the same rules back.
    lab.nft("flush", "chain", "inet", masq.table, "postrtg")
    assert not masq.in_place(spec)
    assert masq.ensure(spec) is True
    assert _rules(masq.listing()) == _rules(first)
    assert lab.source_seen(lab.pod, lab.outside, OUTSIDE).source == NODE_UNDERLAY

    # The Network changes: the old Network's rules are gone in the same transaction.
    moved = MasqSpec(network="10.250.0.0/16", subnet="10.250.7.0/24")
    assert masq.ensure(moved) is True
    listing = masq.listing()
    assert "10.244." not in listing and "10.250.7.0/24" in listing
    assert lab.source_seen(lab.pod, lab.outside, OUTSIDE).source == POD

    # Removal leaves nothing of ours and everything of others.
    assert masq.remove() is True
    assert masq.listing() is None
    assert masq.table not in lab.nft("list", "tables")
    assert "someone_else" in lab.nft("list", "tables")
    assert masq.remove() is False
    assert lab.source_seen(lab.pod, lab.outside, OUTSIDE).source == POD


def _rules(listing: str) -> list[str]:
    return [line.strip().split(" counter ")[0] for line in listing.splitlines()]


@pytest.mark.parametrize("kwargs,needle", [
    (dict(network=NETWORK), "subnet is missing"),
    (dict(network=NETWORK, subnet="10.99.1.0/24"), "not inside network"),
    (dict(network="10.244.0.0/33", subnet=SUBNET), "MasqSpec.network"),
    (dict(network=NETWORK6, subnet=SUBNET6), "must be an IPv4 network"),
    (dict(), "no network"),
    (dict(network=NETWORK, subnet=SUBNET, kube_proxy_mark=0), "kube_proxy_mark"),
])
def test_bad_settings_are_refused_naming_the_field(kwargs, needle):
    with pytest.raises(MasqSpecError, match=needle):
        MasqSpec(**kwargs)


def test_a_failing_nft_is_reported_with_the_command_and_the_kernels_words():
    masq = Masquerade(CommandRunner(("ip", "netns", "exec", "ovt-no-such-netns")))
    with pytest.raises(RulesError, match="nft .*failed.*ovt-no-such-netns"):
        masq.ensure(MasqSpec(network=NETWORK, subnet=SUBNET))
    with pytest.raises(RulesError, match="not installed"):
        CommandRunner(("/nonexistent/nft-wrapper",)).run(["nft", "list", "tables"])
