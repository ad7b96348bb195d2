"""FORWARD accepts for the pod Network (`--iptables-forward-rules`), in iptables' filter table.

Why iptables and not our own nftables table: an `accept` verdict only ends the base chain it is
in; the packet then meets every other base chain on the same hook, and a `drop` anywhere is
final. Docker (and many host firewalls) set `iptables -P FORWARD DROP`, which lives in the
`filter` table's FORWARD chain (table `ip filter` under iptables-nft). An accept in a table of
ours would not save a pod packet from that policy; only a rule inside that FORWARD chain can.
So, like flanneld, we add a jump from FORWARD to a chain we own and accept the Network there.
We use the host's `iptables`/`ip6tables` commands, i.e. whichever backend (nft or legacy) the
host's alternatives select, which is the backend Docker and kube-proxy use as well.

The jump is appended (after e.g. Docker's DOCKER-USER jump, so administrators' own DROP rules
there still win, as with flannel). Our chain's contents are replaced in one
`iptables-restore --noflush` transaction; nothing else in the filter table is touched.
This module alone runs iptables.
"""
from __future__ import annotations

import ipaddress
import logging
from typing import Iterable, Optional, Union

from .masquerade import CommandRunner

log = logging.getLogger(__name__)

DEFAULT_CHAIN = "OVERLAYD-FWD"
COMMENT = "overlayd forward"

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
_TOOLS = {4: ("iptables", "iptables-restore"), 6: ("ip6tables", "ip6tables-restore")}


class ForwardRulesError(ValueError):
    """Bad settings for the forward rules; the message names the field and the fix."""


def _networks(networks: Iterable) -> dict[int, list[Network]]:
    by_family: dict[int, list[Network]] = {4: [], 6: []}
    for raw in networks:
        try:
            net = raw if isinstance(raw, (ipaddress.IPv4Network, ipaddress.IPv6Network)) \
                else ipaddress.ip_network(raw, strict=True)
        except (TypeError, ValueError) as err:
            raise ForwardRulesError(f"forward rules network {raw!r} is not a CIDR network ({err}); "
                                    f"pass the Network from net-conf.json, e.g. 10.244.0.0/16") from None
        if net not in by_family[net.version]:
            by_family[net.version].append(net)
    return by_family


class ForwardRules:
    """Owns the filter chain `chain` (v4 and v6) and the one jump to it from FORWARD."""

    def __init__(self, runner: CommandRunner = CommandRunner(), chain: str = DEFAULT_CHAIN,
                 wait_seconds: int = 5) -> None:
        if not chain or len(chain) > 28 or not chain.replace("-", "").replace("_", "").isalnum():
            raise ForwardRulesError(f"iptables chain name {chain!r} must be 1-28 letters, digits, - or _")
        self._runner = runner
        self._chain = chain
        self._wait = str(wait_seconds)
        self._applied: dict[int, tuple[list[Network], Optional[str]]] = {}

    @property
    def chain(self) -> str:
        return self._chain

    def ensure(self, networks: Iterable) -> bool:
        """Accept forwarding from and to each network; a family without networks has its rules removed.

        Returns True when something had to be written.
        """
        changed = False
        for version, nets in _networks(networks).items():
            if nets:
                changed |= self._ensure_family(version, nets)
            else:
                changed |= self._remove_family(version)
        return changed

    def _jump_line(self) -> str:
        return f"-A FORWARD -m comment --comment \"{COMMENT}\" -j {self._chain}"

    def _state(self, version: int) -> tuple[Optional[str], int]:
        """(our chain's rules as iptables-save prints them or None when absent, number of jumps to it)."""
        save = _TOOLS[version][0] + "-save"
        out = self._runner.run([save, "-t", "filter"]).stdout.splitlines()
        exists = any(line.split(" ", 1)[0] == f":{self._chain}" for line in out)
        rules = [line for line in out if line.startswith(f"-A {self._chain} ")]
        jumps = sum(1 for line in out if line == self._jump_line())
        return ("\n".join(rules) if exists else None), jumps

    def _restore(self, version: int, lines: list[str]) -> None:
        script = "\n".join(["*filter", *lines, "COMMIT"]) + "\n"
        self._runner.run([_TOOLS[version][1], "-w", self._wait, "--noflush"], input=script)

    def _ensure_family(self, version: int, nets: list[Network]) -> bool:
        rules, jumps = self._state(version)
        applied = self._applied.get(version)
        if jumps and applied is not None and applied == (nets, rules):
            return False
        lines = [f":{self._chain} - [0:0]"]          # creates, or with --noflush empties, our chain
        if not jumps:
            lines.append(self._jump_line())
        for net in nets:
            for flag in ("-s", "-d"):
                lines.append(f"-A {self._chain} {flag} {net} -m comment --comment \"{COMMENT}\" -j ACCEPT")
        self._restore(version, lines)
        self._applied[version] = (nets, self._state(version)[0])
        log.info("%s: FORWARD accepts for %s in chain %s", _TOOLS[version][0],
                 ", ".join(map(str, nets)), self._chain)
        return True

    def in_place(self, networks: Iterable) -> bool:
        """True when the kernel holds what ensure(networks) last wrote, jump included (for /readyz)."""
        for version, nets in _networks(networks).items():
            rules, jumps = self._state(version)
            if nets and (not jumps or self._applied.get(version) != (nets, rules)):
                return False
            if not nets and (rules is not None or jumps):
                return False
        return True

    def listing(self, version: int) -> Optional[str]:
        """Our chain's rules as `iptables-save` prints them, or None when the chain does not exist."""
        return self._state(version)[0]

    def jumps(self, version: int) -> int:
        """How many FORWARD rules jump to our chain (1 while in place)."""
        return self._state(version)[1]

    def remove(self) -> bool:
        """Delete the jump(s) from FORWARD and our chain, both families. False when nothing was there."""
        return self._remove_family(4) | self._remove_family(6)

    def _remove_family(self, version: int) -> bool:
        self._applied.pop(version, None)
        rules, jumps = self._state(version)
        if rules is None and not jumps:
            return False
        lines = [self._jump_line().replace("-A FORWARD", "-D FORWARD", 1)] * jumps
        if rules is not None:
            lines += [f"-F {self._chain}", f"-X {self._chain}"]
        self._restore(version, lines)
        log.info("%s: FORWARD accepts removed (chain %s)", _TOOLS[version][0], self._chain)
        return True
