"""What etcd answers, as plain data: keys and values as bytes, revisions and lease IDs as ints.

The JSON gateway sends keys and values base64-encoded and int64 fields (revisions, lease IDs,
TTLs) as JSON strings, and leaves out every field at its zero value (a PUT event has no "type",
a key without a lease no "lease", a failed transaction no "succeeded"). The parsers here are the
one place that knows; the rest of subnet_lease sees these dataclasses.
"""
from __future__ import annotations

import dataclasses
from base64 import b64decode
from typing import Optional


@dataclasses.dataclass(slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int              # 0: no lease


@dataclasses.dataclass(slots=True)
class RangeResult:
    kvs: list               # of KeyValue, in key order
    revision: int           # the store revision the read saw


@dataclasses.dataclass(slots=True)
class TxnResult:
    succeeded: bool
    revision: int


@dataclasses.dataclass(slots=True)
class LeaseGrant:
    id: int
    ttl: int


@dataclasses.dataclass(slots=True)
class WatchEvent:
    kind: str                       # "put" or "delete"
    kv: KeyValue                    # a delete's has the key and its mod_revision only
    prev_kv: Optional[KeyValue]     # with prev_kv=True: the key as it was before


@dataclasses.dataclass(slots=True)
class WatchResult:
    """One message of a watch stream."""
    revision: int                   # the header's store revision
    events: list                    # of WatchEvent, in revision order
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0       # > 0: the start revision was compacted; the watch is canceled
    cancel_reason: str = ""


def parse_kv(kv: dict) -> KeyValue:
    get = kv.get
    return KeyValue(b64decode(get("key", "")), b64decode(get("value", "")),
                    int(get("create_revision", 0)), int(get("mod_revision", 0)),
                    int(get("version", 0)), int(get("lease", 0)))


def revision_of(answer: dict) -> int:
    return int(answer.get("header", {}).get("revision", 0))


def parse_watch_result(result: dict) -> WatchResult:
    events = []
    for ev in result.get("events", ()):
        prev = ev.get("prev_kv")
        events.append(WatchEvent("delete" if ev.get("type") == "DELETE" else "put",
                                 parse_kv(ev.get("kv", {})), parse_kv(prev) if prev else None))
    return WatchResult(revision_of(result), events, bool(result.get("created")), bool(result.get("canceled")),
                       int(result.get("compact_revision", 0)), str(result.get("cancel_reason", "")))
