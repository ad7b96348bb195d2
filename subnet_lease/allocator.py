"""Choosing this node's subnet: a pure function of the config and the leases in the store.

Order of preference (issue 3):
1. this node's existing lease (same PublicIP, or PublicIPv6 on an IPv6-only network),
   as long as it still fits the config — a reservation with our PublicIP counts too;
2. the subnet from the previous subnet file, if it fits and nobody else holds it;
3. a random free subnet between SubnetMin and SubnetMax.
Every existing key blocks the subnets it overlaps, and keys with no etcd lease
(reservations) are never handed to another node.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import random
from typing import Iterable, Optional, Sequence

from .config import NetConfig
from .lease import Lease

# Up to this many candidates we list the free ones and pick among them; above it (IPv6 pools)
# we probe random candidates.
_ENUMERATE_LIMIT = 1 << 16
_PROBES = 4096


class PoolExhausted(RuntimeError):
    """No free subnet is left; the message names Network and SubnetLen."""


@dataclasses.dataclass(frozen=True)
class Choice:
    subnet: Optional[ipaddress.IPv4Network]
    ipv6_subnet: Optional[ipaddress.IPv6Network]
    existing: Optional[Lease] = None      # the own lease being reused, if any
    reason: str = "random"                # "own-lease" | "previous" | "random"


def fits(config: NetConfig, subnet, version: int) -> bool:
    """Is `subnet` one of the config's candidates (right length, inside [SubnetMin, SubnetMax])?"""
    if version == 4:
        if not config.enable_ipv4:
            return subnet is None
        net, plen, lo, hi = config.network, config.subnet_len, config.subnet_min, config.subnet_max
    else:
        if not config.enable_ipv6:
            return subnet is None
        net, plen, lo, hi = (config.ipv6_network, config.ipv6_subnet_len,
                             config.ipv6_subnet_min, config.ipv6_subnet_max)
    return (subnet is not None and subnet.version == version and subnet.prefixlen == plen
            and subnet.subnet_of(net) and lo <= subnet.network_address <= hi)


def lease_fits(config: NetConfig, lease: Lease) -> bool:
    return fits(config, lease.subnet, 4) and fits(config, lease.ipv6_subnet, 6)


def is_own(lease: Lease, public_ip, public_ipv6=None) -> bool:
    if public_ip is not None and lease.public_ip is not None:
        return lease.public_ip == public_ip
    return public_ipv6 is not None and lease.public_ipv6 == public_ipv6


def find_own(leases: Iterable[Lease], public_ip, public_ipv6=None) -> Optional[Lease]:
    own = [lease for lease in leases if is_own(lease, public_ip, public_ipv6)]
    # A live lease wins over a reservation only if both exist; then the oldest key order.
    own.sort(key=lambda lease: (lease.lease_id is None, lease.key))
    return own[0] if own else None


class _Taken:
    """The subnets blocked by existing keys, checked by overlap (mixed lengths are possible)."""

    def __init__(self, nets: Iterable):
        self._by_len: dict[int, set[int]] = {}          # prefix length -> network addresses (int)
        for net in nets:
            if net is not None:
                self._by_len.setdefault(net.prefixlen, set()).add(int(net.network_address))

    def blocks_int(self, addr: int, plen: int, bits: int) -> bool:
        """Is the /plen starting at `addr` overlapped by any existing key?"""
        for other_len, addrs in self._by_len.items():
            if other_len <= plen:           # a key as big or bigger: does it contain us?
                mask = ((1 << other_len) - 1) << (bits - other_len)
                if addr & mask in addrs:
                    return True
            else:                           # smaller keys: is one of them inside us?
                end = addr + (1 << (bits - plen))
                if any(addr <= a < end for a in addrs):
                    return True
        return False

    def blocks(self, subnet) -> bool:
        return self.blocks_int(int(subnet.network_address), subnet.prefixlen, subnet.max_prefixlen)


def _pick(rng: random.Random, net, plen: int, lo, hi, taken: _Taken, config_desc: str):
    size = 1 << (net.max_prefixlen - plen)
    first, last = int(lo) // size, int(hi) // size
    count = last - first + 1
    make = ipaddress.IPv4Network if net.version == 4 else ipaddress.IPv6Network

    def candidate(i):
        return make((i * size, plen))

    bits = net.max_prefixlen
    if count <= _ENUMERATE_LIMIT:
        free = [i for i in range(first, last + 1) if not taken.blocks_int(i * size, plen, bits)]
        if free:
            return candidate(rng.choice(free))
    else:
        for _ in range(_PROBES):
            i = rng.randint(first, last)
            if not taken.blocks_int(i * size, plen, bits):
                return candidate(i)
    raise PoolExhausted(f"no free subnet left: {config_desc} offers {count} subnets between "
                        f"{lo} and {hi} and all are leased or reserved; widen the Network, "
                        f"shorten SubnetLen, or delete stale leases")


def choose_subnet(config: NetConfig, leases: Sequence[Lease], public_ip, *,
                  public_ipv6=None, previous_subnet=None, previous_ipv6_subnet=None,
                  own_lease_id: Optional[int] = None,
                  rng: Optional[random.Random] = None) -> Choice:
    rng = rng or random.Random()
    # Own leases that no longer fit the config (Network changed) are skipped but still block
    # their subnets until the store drops them.
    # (Only our own candidates are checked against the config: at 5,000 leases checking them
    # all cost tens of milliseconds of every start-up.)
    own = find_own((lease for lease in leases if is_own(lease, public_ip, public_ipv6)
                    and lease_fits(config, lease)), public_ip, public_ipv6)
    if own is None and own_lease_id:
        # The key our own etcd lease holds is ours even under another PublicIP: the node's
        # address changed and it keeps its subnet (peers then see the new PublicIP).
        own = next((lease for lease in leases if lease.lease_id == own_lease_id and lease_fits(config, lease)),
                   None)
    if own is not None:
        return Choice(own.subnet, own.ipv6_subnet, existing=own, reason="own-lease")
    others = list(leases)
    taken4 = _Taken(lease.subnet for lease in others)
    taken6 = _Taken(lease.ipv6_subnet for lease in others)

    v4 = v6 = None
    reason = "random"
    if config.enable_ipv4:
        if fits(config, previous_subnet, 4) and not taken4.blocks(previous_subnet):
            v4, reason = previous_subnet, "previous"
        else:
            v4 = _pick(rng, config.network, config.subnet_len, config.subnet_min, config.subnet_max,
                       taken4, f"Network {config.network} with SubnetLen {config.subnet_len}")
    if config.enable_ipv6:
        if fits(config, previous_ipv6_subnet, 6) and not taken6.blocks(previous_ipv6_subnet):
            v6 = previous_ipv6_subnet
            reason = "previous" if (v4 is None or reason == "previous") else reason
        else:
            v6 = _pick(rng, config.ipv6_network, config.ipv6_subnet_len, config.ipv6_subnet_min,
                       config.ipv6_subnet_max, taken6,
                       f"IPv6Network {config.ipv6_network} with IPv6SubnetLen {config.ipv6_subnet_len}")
    return Choice(v4, v6, existing=None, reason=reason)


def overlaps(a: Lease, b: Lease) -> bool:
    """Do two leases share any address (v4 or v6)?"""
    return any(x is not None and y is not None and x.overlaps(y)
               for x, y in ((a.subnet, b.subnet), (a.ipv6_subnet, b.ipv6_subnet)))
