"""Packet-filter rules the daemon keeps: masquerade (--ip-masq) and FORWARD accepts.

Re-asserted on every full reconcile; the masquerade table is replaced when the Network or the
lease changes, and removed when --ip-masq is off (a previous run may have left it).
"""
from __future__ import annotations

import logging
import shutil
from .errors import DatapathError
from .masquerade import CommandRunner, Masquerade, MasqSpec
from .forward_rules import ForwardRules

log = logging.getLogger(__name__)


class RulesKeeper:
    def __init__(self, *, ip_masq: bool, forward_rules: bool, runner: CommandRunner = CommandRunner()):
        self.ip_masq = ip_masq
        self.forward_rules = forward_rules
        self.masq = Masquerade(runner)
        self.forward = ForwardRules(runner)

    @property
    def enabled(self) -> bool:
        return self.ip_masq or self.forward_rules

    def ensure(self, network, subnet, ipv6_network=None, ipv6_subnet=None) -> bool:
        """Put the rules in place; True if anything was (re)written."""
        changed = False
        if self.ip_masq:
            spec = MasqSpec(network=network, subnet=subnet, ipv6_network=ipv6_network, ipv6_subnet=ipv6_subnet)
            if self.masq.ensure(spec):
                log.info("masquerade rules written for %s", ", ".join(str(n) for n in (network, ipv6_network) if n))
                changed = True
        elif shutil.which("nft") and self.masq.listing() is not None:   # no nft: no table of ours
            self.masq.remove()
            log.info("--ip-masq is off: removed the masquerade table a previous run left")
            changed = True
        if self.forward_rules:
            if self.forward.ensure([n for n in (network, ipv6_network) if n is not None]):
                log.info("FORWARD accepts written for the pod network")
                changed = True
        return changed

    def ensure_in_pass(self, readiness, network, subnet, ipv6_network=None, ipv6_subnet=None) -> None:
        """ensure(), as one step of a reconcile pass: readiness says whether the rules are in
        place; a failure is a DatapathError (the pass is retried)."""
        try:
            self.ensure(network, subnet, ipv6_network, ipv6_subnet)
            if readiness is not None:
                readiness.set("rules in place")
        except Exception as err:
            if readiness is not None:
                readiness.set("rules in place", False, str(err))
            raise DatapathError("packet filter rules", 0, str(err)) from None
