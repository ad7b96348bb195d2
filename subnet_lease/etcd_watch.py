"""Watching the subnets prefix: snapshot, then watch from revision + 1 with prev_kv.

A removal carries the lease that went away (prev_kv). A key overwritten with a value we cannot
parse is the removal of the lease it held, as a fresh snapshot would see it; a key that is not
UTF-8 is skipped with a warning. If etcd has compacted the revision we need (told by the gRPC
status code OUT_OF_RANGE or the watch's compact_revision, never by text), we re-snapshot and emit
the difference against what we knew (mark-and-sweep), as Calico's etcdutils does. The stream
itself (its thread, TCP keepalive, cancelling) is etcd_watch_stream's.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, Iterator, Optional

from .backend import BackendUnavailable, diff_leases
from .backoff import Backoff
from .etcd_client import RevisionCompacted, describe, is_compacted, is_transport
from .etcd_reads import LeaseReads, decode_key
from .lease import Lease, LeaseEvent, LeaseFormatError, lease_from_json

log = logging.getLogger(__name__)


def known_at(reads: LeaseReads, snap_cache, revision: int) -> Optional[dict[str, Lease]]:
    """The leases as of `revision`: the snapshot's own, else read there; None if it is compacted."""
    if snap_cache is not None and snap_cache[0] == revision:
        return dict(snap_cache[1])
    try:
        leases, _, _ = reads.read(revision)
        return leases
    except RevisionCompacted:
        return None


def watch_prefix(conn, reads: LeaseReads, settings, from_revision: int, stop: threading.Event, *,
                 snap_cache=None, rng=None, count_restart: Callable[[], None] = lambda: None
                 ) -> Iterator[list[LeaseEvent]]:
    """Changes after `from_revision` (snapshot()'s revision), in batches, until `stop` is set."""
    s = settings
    backoff = Backoff(s.backoff_initial, s.backoff_max, rng=rng)
    revision = from_revision
    known: Optional[dict[str, Lease]] = None
    while not stop.is_set():
        stream = None
        try:
            if known is None:
                known = known_at(reads, snap_cache, revision)
                if known is None:   # that revision is compacted: resync below
                    raise RevisionCompacted(f"revision {revision} is compacted")
            responses: queue.Queue = queue.Queue()
            stream = conn.call("watch", lambda c: c.watch(s.subnets_prefix, responses.put, prefix=True,
                                                          start_revision=revision + 1, prev_kv=True))
            backoff.reset()
            while not stop.is_set():
                try:
                    item = responses.get(timeout=0.5)
                except queue.Empty:
                    continue
                if isinstance(item, Exception):
                    raise item
                if item is None:
                    raise BackendUnavailable("the watch stream was closed by the server")
                batch = apply_events(item.events, known)
                for ev in item.events:
                    revision = max(revision, ev.kv.mod_revision)
                if batch:
                    yield batch
        except Exception as err:
            if is_compacted(err):
                # The events between our revision and the compaction are gone for good. Read the
                # whole state again and emit what differs from what we knew (mark and sweep).
                log.warning("etcd revision %d is compacted; re-reading all leases", revision + 1)
                count_restart()
                try:
                    fresh, _, new_revision = reads.read()
                except BackendUnavailable as err2:
                    log.warning("watch: %s", err2)
                    stop.wait(backoff.next())
                    continue
                events = diff_leases(known or {}, fresh)
                known, revision = fresh, new_revision
                if events:
                    yield events
            elif isinstance(err, BackendUnavailable) or is_transport(err):
                log.warning("watching %s: %s; reconnecting", s.subnets_prefix, describe(err))
                count_restart()
                conn.last_error = f"watch: {describe(err)}"
                stop.wait(backoff.next())
            else:
                raise
        finally:
            if stream is not None:
                stream.cancel()


def apply_events(events, known: dict[str, Lease]) -> list[LeaseEvent]:
    """etcd WatchEvents -> LeaseEvents, updating `known` (key -> Lease) as they apply."""
    batch = []
    for ev in events:
        key = decode_key(ev.kv.key)
        if key is None:
            continue
        if ev.kind == "delete":
            old = known.pop(key, None)
            if old is None and ev.prev_kv is not None:
                try:
                    old = lease_from_json(key, ev.prev_kv.value)
                except LeaseFormatError:
                    old = None
            if old is not None:
                batch.append(LeaseEvent("removed", old))
            continue
        try:
            lease = lease_from_json(key, ev.kv.value, lease_id=ev.kv.lease or None)
        except LeaseFormatError as err:
            # Overwritten with something we cannot read: the lease it replaced is gone, as a
            # fresh snapshot (a restarted daemon) would see it.
            log.warning("ignoring %s", err)
            old = known.pop(key, None)
            if old is not None:
                batch.append(LeaseEvent("removed", old))
            continue
        if known.get(key) != lease:
            batch.append(LeaseEvent("added", lease))
        known[key] = lease
    return batch
