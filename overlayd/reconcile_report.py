"""What one reconcile pass did, told to the log, the metrics and readiness (one place for each)."""
from __future__ import annotations

import logging
import time

from .errors import DatapathError

log = logging.getLogger("overlayd.daemon")

ENTRY_KIND = {"neigh": "arp", "fdb": "fdb", "route": "route"}


def merge_counts(totals: dict, counts: dict) -> None:
    for k, v in counts.items():
        totals[k] = totals.get(k, 0) + v


def account(what: str, elapsed: float, counts: dict, errors: list, peers: int, metrics=None,
            readiness=None) -> None:
    """Log, export and mark readiness for one pass; DatapathError if any request failed."""
    if counts or errors:
        log.info("%s: %s in %.1f ms%s", what, ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
                 elapsed * 1000, f"; {len(errors)} errors" if errors else "")
    for err in errors[:5]:
        log.error("  %s", err)
    if metrics is not None:
        metrics.reconciled(elapsed, ok=not errors)
        for key, n in counts.items():
            verb, kind = key.split("_", 1)
            (metrics.added if verb == "add" else metrics.removed)(ENTRY_KIND[kind], n)
        if errors:
            metrics.netlink_errors.inc(len(errors))
        metrics.peers.set(peers)
    if readiness is not None:
        readiness.set("datapath programmed", not errors, f"{len(errors)} netlink errors" if errors else "")
    if errors:
        raise DatapathError(what, errors[0].errno, f"{len(errors)} requests failed, first: {errors[0]}")


def export_lease_health(metrics, backend, seen_restarts: int) -> int:
    """The lease TTL left, whether the store answers, and the backend's own watch restarts
    (reconnects, re-snapshots, re-lists) since `seen_restarts`; returns the new count."""
    try:
        health = backend.health()
    except Exception:
        return seen_restarts
    metrics.set_lease_expiry(time.time() + health.ttl_left if health.ttl_left is not None else None)
    metrics.lease_store_up.set(0 if health.last_error else 1)
    restarts = getattr(health, "watch_restarts", 0) or 0
    if restarts > seen_restarts:
        metrics.watch_restarts.inc(restarts - seen_restarts)
    return max(restarts, seen_restarts)
