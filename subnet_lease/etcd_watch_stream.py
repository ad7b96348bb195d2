"""One etcd watch over the JSON gateway: a POST to /v3/watch whose answer never ends.

etcd streams one JSON object per line: {"result": {"created": true, ...}} first, then a result
per batch of events, in revision order; {"error": {...}} if the stream fails. A thread of the
watch's own reads the lines and hands each result with events to a callback; a compacted start
revision (a result with compact_revision, canceled) is handed on as RevisionCompacted, any other
cancel, an error line, a broken connection or its end as EtcdUnavailable or None.

The connection is the watch's own (never a kept one). cancel() shuts its socket down, so the
reading thread returns at once, from any thread. TCP keepalive (etcd_gateway.tune_socket) makes
a read on a connection whose peer vanished silently fail within ~25 s.
"""
from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
from typing import Callable, Optional, Union

from .etcd_gateway import EtcdUnavailable, Gateway, RevisionCompacted, error_from
from .etcd_types import WatchResult, parse_watch_result

log = logging.getLogger(__name__)

OnResult = Callable[[Union[WatchResult, Exception, None]], None]


class WatchStream:
    def __init__(self, gateway: Gateway, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse,
                 sock: socket.socket, on_result: OnResult, token: Optional[str]) -> None:
        self._gateway = gateway
        self._conn, self._resp, self._sock = conn, resp, sock
        self._on_result = on_result
        self._token = token
        self._lock = threading.Lock()
        self._cancelled = False
        self._thread: Optional[threading.Thread] = None

    @classmethod
    def open(cls, gateway: Gateway, request: dict, on_result: OnResult) -> "WatchStream":
        """Create the watch: returns once etcd confirmed it (within the call timeout), raising as
        a call does if it could not (and RevisionCompacted if the start revision is gone)."""
        conn, resp, sock, token = gateway.open_stream("/v3/watch", request)
        stream = cls(gateway, conn, resp, sock, on_result, token)
        try:
            first = stream._next()                    # {"created": true}, within the call timeout
            if first is None:
                raise EtcdUnavailable("etcd ended the watch before confirming it")
            stream._check(first)
            sock.settimeout(None)                     # from now on TCP keepalive watches the line
        except (OSError, http.client.HTTPException, ValueError) as err:
            stream._close()
            raise EtcdUnavailable(f"creating the watch: {type(err).__name__}: {err}") from None
        except BaseException:
            stream._close()
            raise
        if first.events:
            on_result(first)
        stream._thread = threading.Thread(target=stream._read, name="etcd-watch", daemon=True)
        stream._thread.start()
        return stream

    def _next(self) -> Optional[WatchResult]:
        """The next message; None at the end of the stream. Raises the error of an error line."""
        while True:
            line = self._resp.readline()
            if not line:
                return None
            if not line.strip():
                continue
            msg = json.loads(line)
            if "error" in msg:
                raise error_from(200, line)
            return parse_watch_result(msg.get("result", {}))

    def _check(self, result: WatchResult) -> None:
        if result.compact_revision:
            raise RevisionCompacted(f"OUT_OF_RANGE: watch start revision compacted (etcd keeps "
                                    f"{result.compact_revision} and later)")
        if result.canceled:
            # e.g. a token etcd no longer accepts: the next watch authenticates again.
            self._gateway.forget_token(self._token)
            raise EtcdUnavailable(f"etcd canceled the watch: {result.cancel_reason or 'no reason given'}")

    def _read(self) -> None:
        outcome: Union[Exception, None] = None
        try:
            while True:
                result = self._next()
                if result is None:
                    break
                self._check(result)
                if result.events:
                    self._deliver(result)
        except (RevisionCompacted, EtcdUnavailable) as err:
            outcome = err
        except Exception as err:     # a broken connection, a garbled line, another error line:
            outcome = EtcdUnavailable(f"watch stream: {type(err).__name__}: {err or 'connection lost'}")
        self._close()
        self._deliver(outcome)

    def _deliver(self, item) -> None:
        with self._lock:
            if self._cancelled:
                return
        try:
            self._on_result(item)
        except Exception:
            log.exception("etcd watch callback failed")

    def cancel(self) -> None:
        """Stop the watch now (from any thread); the callback is not called again."""
        with self._lock:
            self._cancelled = True
        self._close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)

    def _close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)     # wakes a blocked read at once
        except OSError:
            pass
        try:
            self._resp.close()
        except Exception:
            pass
        self._conn.close()
