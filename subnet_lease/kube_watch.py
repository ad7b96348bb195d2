"""Peers in kube mode: list nodes, then watch from the list's resourceVersion.

The resourceVersion is opaque (Kubernetes' API conventions): it is never parsed or compared,
only handed back, and the last one seen (an event's or a bookmark's) is where the next watch
starts. A 410 Gone (as an HTTP status or an ERROR event) means it is too old: list again and
emit the difference. Only nodes that carry the annotations and a podCIDR are peers.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
from typing import Callable, Iterator, Optional

from .backend import BackendUnavailable, LeaseError, diff_leases
from .backoff import Backoff
from .kube_client import Gone, KubeApi
from .kube_nodes import Annotations, lease_or_skip
from .lease import Lease, LeaseEvent

log = logging.getLogger(__name__)


def watch_nodes(api: KubeApi, ann: Annotations, from_revision: str, stop, closed: threading.Event, *,
                snap_cache=None, on_own_node: Callable[[dict], None] = lambda node: None,
                count_restart: Callable[[], None] = lambda: None) -> Iterator[list[LeaseEvent]]:
    """Node changes after `from_revision` (snapshot()'s resourceVersion), until `stop` is set."""
    s = api.settings
    backoff = Backoff(s.backoff_initial, s.backoff_max)
    known: dict[str, Lease] = dict(snap_cache[1]) if snap_cache and snap_cache[0] == from_revision else {}
    revision = from_revision
    while not stop.is_set() and not closed.is_set():
        stream = None
        try:
            stream = Stream(api, revision)
            while not stop.is_set() and not closed.is_set():
                try:
                    item = stream.events.get(timeout=0.5)
                except queue.Empty:
                    continue
                if item is Stream.END:        # the server ended this watch: watch again
                    break
                if isinstance(item, BaseException):
                    raise item
                etype, obj = item.get("type"), item.get("object") or {}
                if etype == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone()
                    raise BackendUnavailable(f"watch error: {obj.get('message') or obj}")
                # Events come in order: the latest resourceVersion is where we are now.
                revision = (obj.get("metadata") or {}).get("resourceVersion") or revision
                if etype == "BOOKMARK":
                    continue
                batch = apply_node_event(etype, obj, known, ann, api.known_node_name, on_own_node)
                backoff.reset()
                if batch:
                    yield batch
        except Gone:
            log.warning("resourceVersion %s is too old (410 Gone); listing nodes again", revision)
            count_restart()
            try:
                fresh, new_revision = api.list_nodes(ann)
            except (BackendUnavailable, LeaseError) as err:
                log.warning("%s", err)
                stop.wait(backoff.next())
                continue
            events = diff_leases(known, fresh)
            known, revision = fresh, new_revision
            if events:
                yield events
        except (BackendUnavailable, LeaseError) as err:
            log.warning("watching nodes: %s; reconnecting", err)
            count_restart()
            stop.wait(backoff.next())
        finally:
            if stream is not None:
                stream.close()


def apply_node_event(etype: str, obj: dict, known: dict[str, Lease], ann: Annotations,
                     own_name: Optional[str], on_own_node: Callable[[dict], None]) -> list[LeaseEvent]:
    """One watch event -> LeaseEvents, updating `known` (node name -> Lease)."""
    name = (obj.get("metadata") or {}).get("name")
    if etype != "DELETED" and name is not None and name == own_name:
        on_own_node(obj)
    old = known.get(name)
    # A node whose annotations turned malformed is dropped, as a fresh list would drop it.
    new = None if etype == "DELETED" else lease_or_skip(obj, ann)
    if new == old:
        return []
    batch = []
    if old is not None and (new is None or (old.subnet, old.ipv6_subnet) != (new.subnet, new.ipv6_subnet)):
        batch.append(LeaseEvent("removed", old))
    if new is not None:
        batch.append(LeaseEvent("added", new))
        known[name] = new
    else:
        known.pop(name, None)
    return batch


class Stream:
    """One watch request read by a helper thread, so the generator can check `stop` every 0.5 s."""

    END = object()

    def __init__(self, api: KubeApi, revision: str) -> None:
        self.events: queue.Queue = queue.Queue()
        self._resp = api.call("watch nodes", lambda c: c.list_node(
            watch=True, resource_version=str(revision), allow_watch_bookmarks=True,
            timeout_seconds=api.settings.watch_timeout, _preload_content=False,
            _request_timeout=(api.settings.request_timeout, api.settings.watch_timeout + 30)),
            json_body=False)
        self._closed = False
        self._thread = threading.Thread(target=self._read, name="kube-watch", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            buf = b""
            for chunk in self._resp.stream(4096, decode_content=True):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        self.events.put(json.loads(line))
            if buf.strip():
                self.events.put(json.loads(buf))
            self.events.put(self.END)
        except Exception as err:  # the connection broke, or close() cut it
            if not self._closed:
                self.events.put(BackendUnavailable(f"watch stream broke: {err}"))
            else:
                self.events.put(self.END)

    def close(self) -> None:
        self._closed = True
        try:
            self._resp.shutdown() if hasattr(self._resp, "shutdown") else None
        except Exception:
            pass
        try:
            self._resp.release_conn()
            self._resp.close()
        except Exception:
            pass
