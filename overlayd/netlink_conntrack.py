"""Cut established connections the policies no longer allow: delete their conntrack entries.

The forward chain accepts `ct state established,related` first (replies of allowed connections,
no per-packet policy walk). So after a change, connections it would now refuse must lose their
conntrack entries, or they would live on. We dump the entries touching this node's pods, ask
`allowed(src, dst, protocol, port)` (evaluate.still_allowed over the new cluster state), and
delete the rest. A deleted entry's next packet is new again and meets the new rules.
This module alone talks conntrack (pyroute2, in the daemon's own network namespace).
"""
from __future__ import annotations

import logging
from typing import Callable, Optional

from .policy.evaluate import PROTO_NUMBERS

log = logging.getLogger(__name__)
CLOSED_TCP = (7, 8)      # TIME_WAIT, CLOSE


def cut(allowed: Callable[[str, str, str, Optional[int]], bool], local_ips: set,
        netns: Optional[str] = None) -> int:
    """Delete entries from/to `local_ips` that `allowed` refuses; the number deleted.
    `netns`: another namespace's table (tests); None: our own."""
    from pyroute2 import Conntrack
    deleted = 0
    with (Conntrack(netns=netns) if netns else Conntrack()) as ct:
        for entry in list(ct.dump_entries()):
            t = entry.tuple_orig
            if t.saddr not in local_ips and t.daddr not in local_ips:
                continue
            if entry.protoinfo is not None and entry.protoinfo.state in CLOSED_TCP:
                continue                    # a finished connection: nothing left to cut
            protocol = PROTO_NUMBERS.get(t.proto, f"proto-{t.proto}")
            port = t.dport if t.proto in PROTO_NUMBERS else None
            if allowed(t.saddr, t.daddr, protocol, port):
                continue
            try:
                ct.delete(entry)
                deleted += 1
            except Exception as err:       # gone meanwhile (ENOENT) is fine; others are logged
                if getattr(err, "code", None) != 2:
                    log.warning("conntrack delete %s -> %s failed: %s", t.saddr, t.daddr, err)
    return deleted
