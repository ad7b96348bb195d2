"""--iptables-forward-rules on a node whose FORWARD policy is DROP (as Docker sets it)."""
from __future__ import annotations

import pytest

from overlayd.forward_rules import ForwardRules, ForwardRulesError
from overlayd.masquerade import CommandRunner

from .opslab import NETWORK, NETWORK6, POD, POD2, POD2_6, POD6

pytestmark = pytest.mark.kernel

# An accept in a table of its own, like flannel's nftables "forward" chain.
NFT_ONLY_ACCEPT = """
table inet nft_only_accept {
    chain forward {
        type filter hook forward priority filter - 5; policy accept;
        ip saddr 10.244.0.0/16 accept
        ip daddr 10.244.0.0/16 accept
    }
}
"""
FOREIGN_RULE = ["FORWARD", "-s", "198.51.100.7/32", "-j", "DROP"]


def test_forward_accepts_get_pod_traffic_past_a_drop_policy(ops_lab):
    lab = ops_lab
    for v6 in (False, True):
        lab.iptables("-P", "FORWARD", "DROP", v6=v6)
    lab.iptables("-A", *FOREIGN_RULE)
    assert lab.source_seen(lab.pod, lab.pod2, POD2, timeout=1.0) is None

    # Why the rules go into iptables' FORWARD chain: an accept in another table does not help.
    lab.nft("-f", "-", input=NFT_ONLY_ACCEPT)
    assert lab.source_seen(lab.pod, lab.pod2, POD2, timeout=1.0) is None
    lab.nft("delete", "table", "inet", "nft_only_accept")

    fwd = ForwardRules(lab.runner)
    assert fwd.ensure([NETWORK, NETWORK6]) is True
    assert lab.source_seen(lab.pod, lab.pod2, POD2).source == POD
    assert lab.source_seen(lab.pod2, lab.pod, POD6).source == POD2_6

    # Resync: nothing written, one jump, same rules.
    before = (fwd.listing(4), fwd.listing(6))
    assert fwd.ensure([NETWORK, NETWORK6]) is False
    assert (fwd.listing(4), fwd.listing(6)) == before
    assert fwd.jumps(4) == fwd.jumps(6) == 1
    assert fwd.in_place([NETWORK, NETWORK6])

    # The jump deleted by hand (e.g. a firewall reload): the next resync restores it.
    lab.iptables("-D", "FORWARD", "-m", "comment", "--comment", "overlayd forward", "-j", fwd.chain)
    assert not fwd.in_place([NETWORK, NETWORK6])
    assert lab.source_seen(lab.pod, lab.pod2, POD2, timeout=1.0) is None
    assert fwd.ensure([NETWORK, NETWORK6]) is True
    assert fwd.jumps(4) == 1
    assert lab.source_seen(lab.pod, lab.pod2, POD2).source == POD

    # The Network changes (and IPv6 is turned off): only the new Network is accepted.
    assert fwd.ensure(["10.250.0.0/16"]) is True
    assert "10.244.0.0/16" not in fwd.listing(4) and "10.250.0.0/16" in fwd.listing(4)
    assert fwd.listing(6) is None and fwd.jumps(6) == 0

    # Removal takes our chain and jump away and leaves the host's policy and rules alone.
    assert fwd.remove() is True
    assert fwd.listing(4) is None and fwd.jumps(4) == 0
    rules = lab.iptables("-S", "FORWARD")
    assert "-P FORWARD DROP" in rules and "-A FORWARD -s 198.51.100.7/32 -j DROP" in rules
    assert fwd.remove() is False


def test_bad_network_is_refused_before_anything_is_written(make_netns):
    fwd = ForwardRules(CommandRunner(("ip", "netns", "exec", make_netns("node"))))
    with pytest.raises(ForwardRulesError, match="10.244.0.1/16.*Network"):
        fwd.ensure([NETWORK, "10.244.0.1/16"])
    assert fwd.listing(4) is None and fwd.jumps(4) == 0
