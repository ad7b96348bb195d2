"""Two start-up helpers of the daemon, measured from outside (bench/bench_startup.py):

- start_prefetch: the lease store's first reads (the network config; with etcd, every lease) in a
  thread, while the main thread imports the daemon. The store works in its own
  process meanwhile, so the read's wait overlaps the imports. Errors are left for the real start
  to meet and report (it reads again when nothing was prefetched).
- release_free_memory: after start-up, hand the transient memory of the snapshot (the raw store
  answer, the parse, the first reconcile's plans) back to the kernel, so the resident size is
  what the running daemon holds, not the start-up's peak.
"""
from __future__ import annotations

import gc
import logging
import threading

log = logging.getLogger(__name__)


def start_prefetch(backend) -> threading.Thread:
    def run() -> None:
        try:
            backend.get_network_config()
            prefetch = getattr(backend, "prefetch", None)
            if prefetch is not None:
                prefetch()
        except Exception as err:       # the real start-up reads again and reports it
            log.debug("prefetch: %s", err)

    thread = threading.Thread(target=run, name="prefetch", daemon=True)
    thread.start()
    return thread


def release_free_memory() -> None:
    gc.collect()
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):    # not glibc: nothing to trim
        pass
