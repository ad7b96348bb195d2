"""The one small protocol both lease backends (etcd, kube) satisfy, and its errors.

The daemon talks to a backend only through this, and gets plain data back
(NetConfig, Lease, LeaseEvent, LeaseHealth).

Revisions: `snapshot()` returns every lease plus the store revision it was read at
(etcd: the revision, an int; kube: the Node list's resourceVersion, an opaque string that is
never parsed or compared). Pass that revision unchanged to `watch()`: it emits every change
made *after* it (etcd: watch from revision + 1).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import threading
from typing import Iterator, Optional, Protocol, runtime_checkable

from .config import NetConfig
from .lease import Lease, LeaseEvent


class LeaseError(RuntimeError):
    """The lease layer could not do what was asked; the message says why and what to do."""


class BackendUnavailable(LeaseError):
    """The store (etcd / API server) cannot be reached right now; retrying may help."""


class AcquireContended(BackendUnavailable):
    """Other nodes kept winning the race for the chosen subnet; retrying later will help."""


class SubnetsQuarantined(BackendUnavailable):
    """The only free subnets are held for owners whose leases just expired; they free up later."""


@dataclasses.dataclass(frozen=True)
class LeaseHealth:
    """What the daemon exports as metrics and readiness."""
    acquired: bool                       # this node holds a subnet
    subnet: Optional[ipaddress.IPv4Network] = None
    ipv6_subnet: Optional[ipaddress.IPv6Network] = None
    lease_id: Optional[int] = None       # etcd lease ID (None: a reservation, or kube mode)
    ttl_left: Optional[float] = None     # seconds until the etcd lease expires if never renewed
    renewals: int = 0                    # successful keep-alives since start
    reacquisitions: int = 0              # times the own key vanished and was taken again
    last_error: Optional[str] = None     # the most recent store error, cleared on success
    waiting_for: Optional[str] = None    # kube: why no subnet yet (e.g. "Node.spec.podCIDR")
    watch_restarts: int = 0              # peer watch reconnects, re-snapshots after compaction,
                                         # re-lists after 410 Gone (overlayd_watch_restarts_total)


@runtime_checkable
class LeaseBackend(Protocol):
    def get_network_config(self) -> NetConfig:
        """etcd: `<prefix>/config`; kube: the --net-config-path file. Raises ConfigError."""

    def find_own_lease(self, public_ip) -> Optional[Lease]:
        """This node's lease in the store (by PublicIP), e.g. to reuse its VTEP MAC."""

    def acquire(self, config: NetConfig, template: Lease,
                previous_subnet: Optional[ipaddress.IPv4Network] = None) -> Lease:
        """Take this node's subnet and keep it renewed (and re-taken if it vanishes) until close().

        `template` carries public_ip, backend_type and backend_data; its subnet is ignored.
        """

    def snapshot(self, *, reuse_start_read: bool = False) -> tuple[list[Lease], int]:
        """Every lease (own included) and the revision they were read at.

        reuse_start_read: the daemon's start-up may take the read that acquire() just made
        (with acquire's own writes in it) instead of reading the store again: consistent at its
        revision, and a watch from there replays whatever came after. Backends may ignore it."""

    def watch(self, from_revision: int, stop: threading.Event) -> Iterator[list[LeaseEvent]]:
        """Batches of changes after `from_revision`; returns soon (≤ ~1 s) after `stop` is set."""

    def reconnect(self) -> None:
        """Drop the connection; the next call opens a fresh one (the node's address changed)."""

    def health(self) -> LeaseHealth:
        """The own lease's state for metrics/readiness."""

    def close(self) -> None:
        """Stop renewing (the lease stays in the store until its TTL ends) and disconnect."""


def diff_leases(old: dict[str, Lease], new: dict[str, Lease]) -> list[LeaseEvent]:
    """Events that turn the `old` key->lease map into `new` (used after a re-snapshot)."""
    events = [LeaseEvent("removed", lease) for key, lease in old.items() if key not in new]
    events += [LeaseEvent("added", lease) for key, lease in new.items()
               if key not in old or old[key] != lease]
    return events
