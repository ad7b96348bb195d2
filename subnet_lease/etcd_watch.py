"""Watching the subnets prefix: snapshot, then watch from revision + 1 with prev_kv.

A removal carries the lease that went away (prev_kv). A key overwritten with a value we cannot
parse is the removal of the lease it held, as a fresh snapshot would see it; a key that is not
UTF-8 is skipped with a warning. If etcd has compacted the revision we need (told by the error's
type or gRPC status, never its text), we re-snapshot and emit the difference against what we
knew (mark-and-sweep), as Calico's etcdutils does.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, Iterator, Optional

from pyetcd import events as etcd_events
from pyetcd import exceptions as etcd_exc

from .backend import BackendUnavailable, diff_leases
from .backoff import Backoff
from .etcd_client import describe, is_compacted, is_transport
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
    except etcd_exc.RevisionCompactedError:
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
        client = None
        watch_id = None
        try:
            if known is None:
                known = known_at(reads, snap_cache, revision)
                if known is None:   # that revision is compacted: resync below
                    raise etcd_exc.RevisionCompactedError(0)
            client = conn.new_client()
            responses: queue.Queue = queue.Queue()
            watch_id = client.add_watch_prefix_callback(
                s.subnets_prefix, responses.put, start_revision=revision + 1, prev_kv=True)
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
                    revision = max(revision, ev.mod_revision)
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
            if client is not None:
                if watch_id is not None:
                    try:
                        client.cancel_watch(watch_id)
                    except Exception:
                        pass
                try:
                    client.close()
                except Exception:
                    pass


def apply_events(events, known: dict[str, Lease]) -> list[LeaseEvent]:
    """etcd watch events -> LeaseEvents, updating `known` (key -> Lease) as they apply."""
    batch = []
    for ev in events:
        key = decode_key(ev.key)
        if key is None:
            continue
        if isinstance(ev, etcd_events.DeleteEvent):
            old = known.pop(key, None)
            if old is None and ev._event.HasField("prev_kv"):
                try:
                    old = lease_from_json(key, ev._event.prev_kv.value)
                except LeaseFormatError:
                    old = None
            if old is not None:
                batch.append(LeaseEvent("removed", old))
            continue
        try:
            lease = lease_from_json(key, ev.value, lease_id=ev.lease or None)
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
