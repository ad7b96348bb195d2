"""Taking a subnet in etcd: a create-if-absent transaction on the pure allocator's choice.

Losing a race is retried (bounded; then AcquireContended, a BackendUnavailable the daemon
retries later), and an etcd lease granted for an attempt that did not keep it is revoked.
Because two different key strings can cover the same addresses (a dual-stack key and a v4-only
one, or a changed SubnetLen), a successful create is checked once more for overlaps and the
younger key backs off.
"""
from __future__ import annotations

import dataclasses
import logging
import random
import time
from typing import Optional

from .allocator import PoolExhausted, choose_subnet, is_own, overlaps
from .backend import AcquireContended, SubnetsQuarantined
from .config import NetConfig
from .etcd_api import created_at, delete_op, modified_at, put_op
from .etcd_quarantine import Quarantine
from .etcd_reads import LeaseReads
from .lease import Lease, LeaseFormatError, lease_from_json

log = logging.getLogger(__name__)


class Acquirer:
    def __init__(self, conn, reads: LeaseReads, settings, rng: random.Random) -> None:
        self.conn = conn
        self.reads = reads
        self.settings = settings
        self.rng = rng
        self.quarantine = Quarantine(conn, self, settings)

    # ---- etcd leases ----------------------------------------------------------------------
    def keepalive(self, lease_id: int) -> int:
        """Refresh an etcd lease; its TTL after the refresh (<= 0: the lease is gone)."""
        return self.conn.call("lease keep-alive", lambda c: c.keepalive(lease_id))

    def grant(self, ttl: Optional[int] = None) -> tuple[int, int]:
        ttl = ttl or self.settings.lease_ttl
        grant = self.conn.call("lease grant", lambda c: c.grant(ttl))
        return grant.id, grant.ttl

    def revoke(self, lease_id: int) -> None:
        """Best effort: an etcd lease we granted but do not use would otherwise live 24 h."""
        try:
            self.conn.call("lease revoke", lambda c: c.revoke(lease_id))
            log.info("revoked unused etcd lease %x", lease_id)
        except Exception as err:  # the store is away: the lease expires after its TTL
            log.warning("could not revoke unused etcd lease %x: %s", lease_id, err)

    # ---- the subnet -----------------------------------------------------------------------
    def take(self, config: NetConfig, template: Lease, previous_subnet, previous_ipv6_subnet,
             reuse_lease_id: Optional[int]) -> tuple[Lease, str]:
        """One subnet, written; retried (bounded) when another node wins a race.

        An etcd lease granted here is carried from a lost attempt into the next one, and revoked
        if we end up not using it (a failure, or the key kept an older lease), so a node never
        leaves a second lease behind for 24 h.
        """
        granted: list[int] = []          # etcd leases this call granted (at most one)
        used: Optional[int] = None
        try:
            lease, key = self._attempts(config, template, previous_subnet, previous_ipv6_subnet,
                                        reuse_lease_id, granted)
            used = lease.lease_id
            return lease, key
        finally:
            for lease_id in granted:
                if lease_id != used:
                    self.revoke(lease_id)

    def _attempts(self, config: NetConfig, template: Lease, previous_subnet,
                  previous_ipv6_subnet, reuse_lease_id: Optional[int],
                  granted: list[int]) -> tuple[Lease, str]:
        s = self.settings
        last_conflict = "none"
        for attempt in range(s.acquire_attempts):
            read = (self.reads.take_handed("acquire") if attempt == 0 else None) or self.reads.read_all()
            leases, raw, unparsed, _ = read

            def choose(blockers=()):
                return choose_subnet(config, list(leases.values()) + unparsed + list(blockers),
                                     template.public_ip, public_ipv6=template.public_ipv6,
                                     previous_subnet=previous_subnet,
                                     previous_ipv6_subnet=previous_ipv6_subnet,
                                     own_lease_id=reuse_lease_id, rng=self.rng)
            choice = choose()
            holds = {}
            if choice.existing is None and self.quarantine.enabled:
                # A new key: not on a subnet held for an owner whose lease expired (etcd_quarantine).
                holds = self.quarantine.read_all()
                blockers = [h.as_blocker() for h in holds.values() if not h.is_of(template)]
                if blockers:
                    choice = self._choose_around(choose, blockers)
            new = dataclasses.replace(template, subnet=choice.subnet, ipv6_subnet=choice.ipv6_subnet,
                                      lease_id=None, ttl=None)
            key = s.subnets_prefix + new.key
            lease_id, ttl = None, None
            if choice.existing is not None:
                kv = raw[s.subnets_prefix + choice.existing.key]
                if choice.existing.lease_id is None:
                    lease_id = 0                                 # our reservation: stays one
                else:
                    left = self.keepalive(choice.existing.lease_id)
                    if left > 0:
                        lease_id, ttl = choice.existing.lease_id, left
                compare = [modified_at(key, kv.mod_revision)]
            else:
                compare = [created_at(key, 0)]
            if choice.existing is None and self.quarantine.enabled:
                qkey, hold = self.quarantine.key_for(new), holds.get(new.key)
                if hold is None:      # nobody may have started holding it meanwhile
                    compare.append(created_at(qkey, 0))
                else:                 # our own hold (others' were avoided): unchanged since read
                    compare.append(modified_at(qkey, hold.mod_revision))
            if lease_id is None and reuse_lease_id:
                left = self.keepalive(reuse_lease_id)
                if left > 0:
                    lease_id, ttl = reuse_lease_id, left
            if lease_id is None:
                lease_id, ttl = self.grant()
                granted.append(lease_id)
            value = new.to_json()
            ok = self.conn.call("transaction", lambda c: c.txn(
                compare, [put_op(key, value, lease=lease_id or None)])).succeeded
            if ok and choice.existing is None and self._younger_overlap(key, new):
                ok = False
            if ok:
                dropped = self._drop_stale_own(leases, raw, new, template)
                # For the snapshot that follows: the read as it is now that our writes are done
                # (at its old revision, so a watch from there replays them, and finds them known).
                after = {k: v for k, v in leases.items() if k not in dropped}
                after[key] = dataclasses.replace(new, lease_id=lease_id or None)
                self.reads.hand_on((after, raw, unparsed, read[3]), to="snapshot")
                return dataclasses.replace(new, lease_id=lease_id or None, ttl=ttl), key
            last_conflict = new.key
            reuse_lease_id = lease_id or reuse_lease_id
            log.info("subnet %s was taken by another node meanwhile; retrying", new.key)
            time.sleep(self.rng.uniform(0, 0.02 * (attempt + 1)))
        # Retryable (BackendUnavailable): the daemon's start-up retry and the keeper try again later.
        raise AcquireContended(f"could not acquire a subnet after {s.acquire_attempts} attempts: other "
                               f"nodes kept taking the chosen one (last: {last_conflict}); retrying "
                               f"later; if this persists, is something writing {s.subnets_prefix} "
                               f"in a loop?")

    @staticmethod
    def _choose_around(choose, blockers):
        """The choice with quarantined subnets taken; only they fill the pool: retryable."""
        try:
            return choose(blockers)
        except PoolExhausted as err:
            try:
                choose()
            except PoolExhausted:
                raise err from None
            held = ", ".join(sorted(str(b.subnet or b.ipv6_subnet) for b in blockers)[:5])
            raise SubnetsQuarantined(
                f"{err}: {len(blockers)} of them only because their owners' leases expired within "
                f"--subnet-quarantine ({held}{', ...' if len(blockers) > 5 else ''}); they are "
                f"handed out once that runs out (or delete their keys under the quarantine prefix "
                f"if those nodes are gone for good); retrying") from None

    def _drop_stale_own(self, leases: dict, raw: dict, new: Lease, template: Lease) -> list[str]:
        """Our older keys that the config no longer allows (flannel deletes them too); -> their keys."""
        dropped = []
        for key, lease in leases.items():
            if (key != self.settings.subnets_prefix + new.key and lease.lease_id is not None
                    and is_own(lease, template.public_ip, template.public_ipv6)):
                log.info("deleting our stale lease %s", lease.key)
                kv = raw[key]
                self.conn.call("delete", lambda c: c.txn([modified_at(key, kv.mod_revision)], [delete_op(key)]))
                dropped.append(key)
        return dropped

    def _younger_overlap(self, key: str, new: Lease) -> bool:
        """After a create: does an older key cover the same addresses? Then ours backs off."""
        _, raw, _ = self.reads.read()
        mine = raw.get(key)
        if mine is None:
            return True
        for other_key, kv in raw.items():
            if other_key == key:
                continue
            try:
                other = lease_from_json(other_key, kv.value)
            except LeaseFormatError:
                continue
            if overlaps(other, new) and kv.create_revision < mine.create_revision:
                self.conn.call("delete", lambda c: c.txn([modified_at(key, mine.mod_revision)], [delete_op(key)]))
                return True
        return False
