"""A LIFO registry of undo actions: what the lab made, it removes, even on failure."""
from __future__ import annotations

import logging
import signal
import threading
from typing import Callable

log = logging.getLogger(__name__)


class Cleanup:
    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[[], None]]] = []
        self._lock = threading.Lock()

    def push(self, what: str, action: Callable[[], None]) -> None:
        with self._lock:
            self._actions.append((what, action))

    def run(self) -> list[str]:
        """Run every action, newest first; return the descriptions of those that failed."""
        failed = []
        while True:
            with self._lock:
                if not self._actions:
                    break
                what, action = self._actions.pop()
            try:
                action()
            except Exception as err:  # best effort: keep undoing the rest
                log.warning("cleanup of %s failed: %s", what, err)
                failed.append(what)
        return failed

    def __enter__(self) -> "Cleanup":
        return self

    def __exit__(self, *exc) -> None:
        self.run()


class interrupts_as_exceptions:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt inside the block, so `finally` cleans up."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __enter__(self):
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
