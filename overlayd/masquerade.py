"""Masquerade for pod traffic leaving the cluster (`--ip-masq`), as one nftables table we own.

This module alone runs `nft`. Everything we add lives in `table inet <name>` (default
"overlayd"); other tables (kube-proxy's, Docker's, iptables-nft's) are never read or written.

The rules keep flannel's semantics (flannel's MasqRules, iptables and nftables managers):

  1. packets carrying kube-proxy's masquerade mark (0x4000/0x4000) are left alone, so
     kube-proxy's own rule NATs them once (double NAT breaks some kernels);
  2. pod -> pod inside the Network keeps the pod source (both directions through this subnet);
  3. traffic from outside the Network to this node's pods keeps its source;
  4. Network -> anything but multicast is masqueraded, fully random;
  5. host (not from the Network) -> Network is masqueraded, fully random.

Unlike flannel's nftables manager, which matches `meta mark 0x4000` (equality, so a packet
with any other mark bit set would be masqueraded twice), rule 1 tests the bit the way
flannel's iptables manager does (`--mark 0x4000/0x4000`).

`ensure()` writes the whole table in ONE `nft -f` transaction ("add table; delete table;
table { ... }"), so a rule set is never half there, stale rules of a previous Network are gone
in the same step, and nothing outside our table is touched. It is idempotent: when the kernel
still holds exactly what we last wrote it does nothing (counters keep counting); when the
table was flushed or edited behind our back it writes it again.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import subprocess
from typing import Optional, Sequence, Union

log = logging.getLogger(__name__)

KUBE_PROXY_MARK = 0x4000
DEFAULT_TABLE = "overlayd"
CHAIN = "postrtg"

IPv4Net = ipaddress.IPv4Network
IPv6Net = ipaddress.IPv6Network


class RulesError(RuntimeError):
    """A firewall command failed; the message names the command and what the kernel said."""


class MasqSpecError(ValueError):
    """The masquerade settings break a rule; the message names the field and the fix."""


@dataclasses.dataclass(frozen=True)
class CommandRunner:
    """Runs nft/iptables, optionally behind a prefix such as ["ip", "netns", "exec", NS].

    The daemon runs inside the node's namespace and passes no prefix; tests pass one.
    """
    prefix: tuple[str, ...] = ()
    timeout: float = 30.0

    def run(self, args: Sequence[str], *, input: Optional[str] = None,
            check: bool = True) -> subprocess.CompletedProcess:
        cmd = [*self.prefix, *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, input=input,
                                  timeout=self.timeout)
        except FileNotFoundError:
            raise RulesError(f"{cmd[0]} is not installed: install the package that provides it "
                             f"(nftables for nft, iptables for iptables)") from None
        except subprocess.TimeoutExpired:
            raise RulesError(f"{' '.join(cmd)} did not finish within {self.timeout:.0f}s") from None
        if check and proc.returncode != 0:
            raise RulesError(f"{' '.join(cmd)} failed ({proc.returncode}): "
                             f"{(proc.stderr or proc.stdout).strip()}")
        return proc


def _net(value, field: str, version: int):
    if value is None or isinstance(value, (IPv4Net, IPv6Net)) and value.version == version:
        return value
    try:
        net = ipaddress.ip_network(value, strict=True)
    except (TypeError, ValueError) as err:
        raise MasqSpecError(f"MasqSpec.{field} {value!r} is not a CIDR network ({err}); "
                            f"write it like {'10.244.0.0/16' if version == 4 else 'fd10:244::/56'}"
                            ) from None
    if net.version != version:
        raise MasqSpecError(f"MasqSpec.{field} {value!r} must be an IPv{version} network")
    return net


@dataclasses.dataclass(frozen=True)
class MasqSpec:
    """What to masquerade: the Network (net-conf.json) and this node's leased subnet, per family.

    Strings are accepted and parsed. A family is enabled when both its network and subnet are set.
    """
    network: Optional[IPv4Net] = None
    subnet: Optional[IPv4Net] = None
    ipv6_network: Optional[IPv6Net] = None
    ipv6_subnet: Optional[IPv6Net] = None
    random_fully: bool = True
    kube_proxy_mark: int = KUBE_PROXY_MARK

    def __post_init__(self) -> None:
        for field, version in (("network", 4), ("subnet", 4), ("ipv6_network", 6), ("ipv6_subnet", 6)):
            object.__setattr__(self, field, _net(getattr(self, field), field, version))
        for net_field, sub_field in (("network", "subnet"), ("ipv6_network", "ipv6_subnet")):
            net, sub = getattr(self, net_field), getattr(self, sub_field)
            if (net is None) != (sub is None):
                missing = sub_field if sub is None else net_field
                raise MasqSpecError(f"MasqSpec.{missing} is missing: set both {net_field} (the Network) "
                                    f"and {sub_field} (this node's lease) or neither")
            if net is not None and not sub.subnet_of(net):
                raise MasqSpecError(f"MasqSpec.{sub_field} {sub} is not inside {net_field} {net}: "
                                    f"the node's lease must come from the Network in net-conf.json")
        if self.network is None and self.ipv6_network is None:
            raise MasqSpecError("MasqSpec has no network: set network/subnet (IPv4), "
                                "ipv6_network/ipv6_subnet (IPv6) or both")
        mark = self.kube_proxy_mark
        if not isinstance(mark, int) or isinstance(mark, bool) or not 0 < mark < 2 ** 32:
            raise MasqSpecError(f"MasqSpec.kube_proxy_mark {mark!r} must be a non-zero 32-bit "
                                f"integer such as 0x4000 (kube-proxy's --iptables-masquerade-bit 14)")

    def families(self) -> list[tuple[str, Union[IPv4Net, IPv6Net], Union[IPv4Net, IPv6Net], str]]:
        """(nft payload protocol, network, subnet, multicast range) per enabled family."""
        out = []
        if self.network is not None:
            out.append(("ip", self.network, self.subnet, "224.0.0.0/4"))
        if self.ipv6_network is not None:
            out.append(("ip6", self.ipv6_network, self.ipv6_subnet, "ff00::/8"))
        return out


def render_table(spec: MasqSpec, table: str = DEFAULT_TABLE) -> str:
    """The nft script that replaces our table with the rules for `spec` (pure)."""
    masq = "masquerade fully-random" if spec.random_fully else "masquerade"
    mark = f"0x{spec.kube_proxy_mark:08x}"
    rules = [f"meta mark & {mark} == {mark} return comment \"kube-proxy masquerades these itself\""]
    for proto, net, sub, mcast in spec.families():
        rules += [
            f"{proto} saddr {sub} {proto} daddr {net} return comment \"pod to pod: keep the source\"",
            f"{proto} saddr {net} {proto} daddr {sub} return comment \"pod to pod: keep the source\"",
            f"{proto} saddr != {net} {proto} daddr {sub} return comment \"outside to this node's pods\"",
            f"{proto} saddr {net} {proto} daddr != {mcast} counter {masq} comment \"pods to outside\"",
            f"{proto} saddr != {net} {proto} daddr {net} counter {masq} comment \"host to pods\"",
        ]
    body = "\n".join(f"\t\t{r}" for r in rules)
    networks = ", ".join(str(n) for _, n, _, _ in spec.families())
    return (f"table inet {table}\n"
            f"delete table inet {table}\n"
            f"table inet {table} {{\n"
            f"\tcomment \"overlayd --ip-masq for {networks}\"\n"
            f"\tchain {CHAIN} {{\n"
            f"\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
            f"{body}\n"
            f"\t}}\n"
            f"}}\n")


def _normalise(doc) -> object:
    """Drop what changes without anyone editing the table: handles and counter values."""
    if isinstance(doc, dict):
        return {k: ("counter" if k == "counter" else _normalise(v))
                for k, v in doc.items() if k != "handle"}
    if isinstance(doc, list):
        return [_normalise(v) for v in doc if not (isinstance(v, dict) and "metainfo" in v)]
    return doc


class Masquerade:
    """Owns `table inet <table>`: ensure() writes it for a MasqSpec, remove() deletes it."""

    def __init__(self, runner: CommandRunner = CommandRunner(), table: str = DEFAULT_TABLE) -> None:
        if not table.replace("-", "").replace("_", "").isalnum():
            raise MasqSpecError(f"nftables table name {table!r} must be letters, digits, - or _")
        self._runner = runner
        self._table = table
        self._applied: Optional[tuple[MasqSpec, str]] = None   # what we wrote and what the kernel showed

    @property
    def table(self) -> str:
        return self._table

    def ensure(self, spec: MasqSpec) -> bool:
        """Make the kernel hold exactly `spec`'s rules. Returns True when it had to write them."""
        if self._applied is not None and self._applied[0] == spec and self._applied[1] == self._snapshot():
            return False
        script = render_table(spec, self._table)
        self._runner.run(["nft", "-f", "-"], input=script)
        self._applied = (spec, self._snapshot())
        log.info("masquerade rules for %s written to nft table inet %s",
                 ", ".join(str(n) for _, n, _, _ in spec.families()), self._table)
        return True

    def in_place(self, spec: MasqSpec) -> bool:
        """True when the kernel holds what ensure(spec) last wrote (for /readyz)."""
        return self._applied is not None and self._applied[0] == spec and self._applied[1] == self._snapshot()

    def remove(self) -> bool:
        """Delete our table (all families at once). Returns False when there was nothing to delete."""
        self._applied = None
        if self._snapshot() is None:
            return False
        # "add; delete" in one transaction never fails on a missing table (nft 1.0.6 has no "destroy").
        self._runner.run(["nft", "-f", "-"], input=f"table inet {self._table}\ndelete table inet {self._table}\n")
        log.info("masquerade rules removed (nft table inet %s)", self._table)
        return True

    def listing(self) -> Optional[str]:
        """`nft list table` text of our table, or None when it does not exist."""
        proc = self._runner.run(["nft", "list", "table", "inet", self._table], check=False)
        if proc.returncode != 0:
            if "No such file or directory" in proc.stderr:
                return None
            raise RulesError(f"nft list table inet {self._table} failed: {proc.stderr.strip()}")
        return proc.stdout

    def _snapshot(self) -> Optional[str]:
        proc = self._runner.run(["nft", "-j", "list", "table", "inet", self._table], check=False)
        if proc.returncode != 0:
            if "No such file or directory" in proc.stderr:
                return None
            raise RulesError(f"nft -j list table inet {self._table} failed: {proc.stderr.strip()}")
        return json.dumps(_normalise(json.loads(proc.stdout)), sort_keys=True)
