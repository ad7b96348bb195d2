"""Reading every lease under the subnets prefix, and handing one read on between start-up steps."""
from __future__ import annotations

import logging
import time
from typing import Optional

from .lease import Lease, LeaseFormatError, lease_from_json, parse_subnet_key

log = logging.getLogger(__name__)

# How old a read handed from one start-up step to the next may be (see LeaseReads.hand_on).
HANDED_READ_MAX_AGE = 5.0


def decode_key(raw: bytes) -> Optional[str]:
    """A key as text; None (with a warning naming it) when it is not UTF-8: no lease of ours."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        log.warning("ignoring key %r: it is not UTF-8, so no subnet lease", raw)
        return None


class LeaseReads:
    """Full reads of the subnets prefix. A read is (leases, raw kvs, unparsed, revision)."""

    def __init__(self, conn, settings) -> None:
        self.conn = conn
        self.settings = settings
        self.count = 0                   # full reads made (a start-up should make one)
        # One full read handed on to the next step of a start-up (find_own_lease -> acquire ->
        # snapshot), so a daemon reads 5,000 leases once, not three times.
        self._handed: Optional[tuple] = None

    def read(self, revision: Optional[int] = None) -> tuple[dict[str, Lease], dict[str, object], int]:
        """key -> Lease, key -> raw KeyValue (for revisions), and the store revision."""
        leases, raw, _, rev = self.read_all(revision)
        return leases, raw, rev

    def read_all(self, revision: Optional[int] = None
                 ) -> tuple[dict[str, Lease], dict[str, object], list[Lease], int]:
        """As read, plus a placeholder for each key whose value we cannot parse: it is no peer
        (it is skipped with a warning), but its subnet is still taken, so we never choose it."""
        resp = self.conn.call("range", lambda c: c.range_prefix(self.settings.subnets_prefix, revision=revision))
        self.count += 1
        leases, raw, unparsed = {}, {}, []
        for kv in resp.kvs:
            key = decode_key(kv.key)
            if key is None:
                continue
            try:
                lease = lease_from_json(key, kv.value, lease_id=kv.lease or None)
            except LeaseFormatError as err:
                log.warning("ignoring %s", err)
                try:
                    v4, v6 = parse_subnet_key(key)
                    unparsed.append(Lease(subnet=v4, public_ip=None, ipv6_subnet=v6))
                except LeaseFormatError:
                    pass
                continue
            leases[key] = lease
            raw[key] = kv
        return leases, raw, unparsed, resp.revision

    def hand_on(self, read: tuple, to: str) -> None:
        self._handed = (time.monotonic(), to, read)

    def take_handed(self, step: str) -> Optional[tuple]:
        """The read the previous step handed on to `step` ("acquire" or "snapshot"), once, if it
        is recent. Safe to use stale: the acquire transaction compares revisions, and a watch
        from the snapshot's revision replays the rest."""
        handed, self._handed = self._handed, None
        if handed is not None and handed[1] == step and time.monotonic() - handed[0] <= HANDED_READ_MAX_AGE:
            return handed[2]
        return None
