"""Quarantine: a subnet whose lease expired while its owner may still live goes to nobody else.

    <prefix>/quarantine/10.244.3.0-24   {"PublicIP":"192.0.2.11"}   (its own etcd lease)

Each node holds one such key for its subnet, under a second etcd lease whose TTL is the subnet
lease's TTL plus the quarantine (`--subnet-quarantine`), refreshed whenever the subnet lease is.
When the subnet lease expires (the node died, or only it lost etcd), the hold outlives it by the
quarantine: the allocator hands that subnet to no other node meanwhile, and the owner, once etcd
answers again, takes it back. A dead node's subnet is free again TTL + quarantine after its last
renewal; a partition longer than that cannot be told from a death (docs/chaos.md).

flanneld neither writes nor honours these keys: it only reads and watches `<prefix>/subnets/`.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import threading
from typing import Optional

from .etcd_api import created_at, modified_at, put_op
from .lease import Lease, LeaseFormatError, parse_subnet_key

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Hold:
    """One quarantine key as read: whose it is, and the revisions a transaction compares."""
    key: str                                   # the full etcd key
    subnet: Optional[ipaddress.IPv4Network]
    ipv6_subnet: Optional[ipaddress.IPv6Network]
    public_ip: Optional[str]
    public_ipv6: Optional[str]
    lease_id: Optional[int]
    mod_revision: int

    def is_of(self, template: Lease) -> bool:
        if template.public_ip is not None and self.public_ip is not None:
            return self.public_ip == str(template.public_ip)
        return template.public_ipv6 is not None and self.public_ipv6 == str(template.public_ipv6)

    def as_blocker(self) -> Lease:
        """A placeholder the allocator counts as taken (it is nobody's peer)."""
        return Lease(subnet=self.subnet, public_ip=None, ipv6_subnet=self.ipv6_subnet)


def hold_value(template: Lease) -> str:
    value = {"PublicIP": str(template.public_ip) if template.public_ip is not None else None}
    if template.public_ipv6 is not None:
        value["PublicIPv6"] = str(template.public_ipv6)
    return json.dumps(value, separators=(",", ":"))


def parse_hold(key: str, raw_value: bytes, lease_id: Optional[int], mod_revision: int) -> Hold:
    v4, v6 = parse_subnet_key(key)
    try:
        value = json.loads(raw_value)
    except (ValueError, UnicodeDecodeError) as err:
        raise LeaseFormatError(f"{key}: not JSON ({err})") from None
    if not isinstance(value, dict):
        raise LeaseFormatError(f"{key}: expected a JSON object")
    ip4, ip6 = value.get("PublicIP"), value.get("PublicIPv6")
    return Hold(key, v4, v6, ip4 if isinstance(ip4, str) else None, ip6 if isinstance(ip6, str) else None,
                lease_id or None, mod_revision)


class Quarantine:
    """Reads the holds (for the allocator) and keeps this node's own hold alive."""

    def __init__(self, conn, acquirer, settings) -> None:
        self.conn = conn
        self.acquirer = acquirer              # its keepalive / grant / revoke
        self.settings = settings
        self.lock = threading.Lock()
        self.held: Optional[tuple[str, int]] = None     # (full key, etcd lease) of our own hold

    @property
    def enabled(self) -> bool:
        return self.settings.quarantine > 0

    def key_for(self, lease: Lease) -> str:
        return self.settings.quarantine_prefix + lease.key

    def read_all(self) -> dict[str, Hold]:
        """Every hold, by subnet key (`10.244.3.0-24`); an unreadable one is skipped with a warning."""
        if not self.enabled:
            return {}
        prefix = self.settings.quarantine_prefix
        resp = self.conn.call("range quarantine", lambda c: c.range_prefix(prefix))
        holds = {}
        for kv in resp.kvs:
            try:
                key = kv.key.decode()
                hold = parse_hold(key, kv.value, kv.lease, kv.mod_revision)
            except (UnicodeDecodeError, LeaseFormatError) as err:
                log.warning("ignoring quarantine key %r: %s", kv.key, err)
                continue
            holds[key[len(prefix):]] = hold
        return holds

    def needs_keeping(self, lease: Lease) -> bool:
        with self.lock:
            return self.enabled and bool(lease.lease_id) and (self.held is None or self.held[0] != self.key_for(lease))

    def keep(self, lease: Lease, template: Lease) -> None:
        """Refresh our hold on `lease`'s subnet, or create it; a hold on an older subnet of ours
        is revoked. Raises BackendUnavailable when etcd does not answer (the keeper retries)."""
        if not self.enabled or not lease.lease_id:
            return
        key = self.key_for(lease)
        with self.lock:
            held = self.held
        if held is not None and held[0] == key and self.acquirer.keepalive(held[1]) > 0:
            return
        hold = self._get(key)
        if hold is not None and not hold.is_of(template):
            log.warning("subnet %s is quarantined for %s, not for this node (a node that does not "
                        "honour quarantine, e.g. flanneld, took it?): leaving that hold alone",
                        lease.key, hold.public_ip or hold.public_ipv6)
            return
        if hold is not None and hold.lease_id and self.acquirer.keepalive(hold.lease_id) > 0:
            self._set_held((key, hold.lease_id))
            return
        lease_id, _ = self.acquirer.grant(self.settings.lease_ttl + self.settings.quarantine)
        value = hold_value(template)
        compare_rev = None if hold is None else hold.mod_revision
        compare = created_at(key, 0) if compare_rev is None else modified_at(key, compare_rev)
        ok = self.conn.call("quarantine transaction", lambda c: c.txn(
            [compare], [put_op(key, value, lease=lease_id)])).succeeded
        if not ok:
            self.acquirer.revoke(lease_id)
            log.info("quarantine key %s changed meanwhile; trying again at the next check", key)
            return
        log.info("holding %s for %d s past the subnet lease (etcd lease %x)", key,
                 self.settings.quarantine, lease_id)
        self._set_held((key, lease_id))

    def _get(self, key: str) -> Optional[Hold]:
        kv = self.conn.call("get quarantine", lambda c: c.get(key))
        if kv is None:
            return None
        try:
            return parse_hold(key, kv.value, kv.lease, kv.mod_revision)
        except LeaseFormatError as err:
            log.warning("unreadable quarantine key (left alone, it expires with its lease): %s", err)
            return Hold(key, None, None, None, None, None, kv.mod_revision)

    def _set_held(self, new: tuple[str, int]) -> None:
        with self.lock:
            old, self.held = self.held, new
        if old is not None and old != new and old[1] != new[1]:
            self.acquirer.revoke(old[1])          # our hold on a subnet we no longer have
