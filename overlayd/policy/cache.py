"""One cache of Pods, Namespaces and NetworkPolicies, fed by the watcher, read as plain values.

replace() after a list (mark and sweep: what the list lacks is gone), apply() per watch event.
A bad object never reaches the compile step: it is left out and named in bad(), so /readyz and
the log can say which object to fix. Updates that change nothing policy cares about (a pod's
status heartbeat, a resourceVersion) report no change, so they trigger no sync.
"""
from __future__ import annotations

import threading
from typing import Callable, Optional

from .model import BadObject, parse_namespace, parse_pod, parse_policy
from .semantics import Cluster

PARSERS: dict[str, Callable] = {"pods": parse_pod, "namespaces": parse_namespace,
                                "networkpolicies": parse_policy}
KINDS = tuple(PARSERS)


def object_key(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


class PolicyCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objs: dict[str, dict] = {k: {} for k in KINDS}
        self._bad: dict[str, str] = {}
        self._listed: set[str] = set()
        self.version = 0            # bumped on every change that matters

    def _parse(self, kind: str, obj: dict) -> Optional[object]:
        key = f"{kind} {object_key(obj)}"
        try:
            value = PARSERS[kind](obj)
        except BadObject as err:
            self._bad[key] = str(err)
            return None
        except Exception as err:      # a shape we did not foresee: still never crash the agent
            self._bad[key] = f"{key}: cannot read it ({type(err).__name__}: {err})"
            return None
        self._bad.pop(key, None)
        return value

    def replace(self, kind: str, items: list) -> bool:
        """The full list of `kind` (after a list or a re-list on 410). True if anything changed."""
        with self._lock:
            fresh = {}
            for key in [k for k in self._bad if k.startswith(f"{kind} ")]:
                del self._bad[key]
            for obj in items:
                value = self._parse(kind, obj)
                if value is not None:
                    fresh[object_key(obj)] = value
            changed = fresh != self._objs[kind] or kind not in self._listed
            self._objs[kind] = fresh
            self._listed.add(kind)
            if changed:
                self.version += 1
            return changed

    def apply(self, kind: str, event_type: str, obj: dict) -> bool:
        """One watch event (ADDED, MODIFIED, DELETED). True if the cluster changed for policy."""
        key = object_key(obj)
        with self._lock:
            objs = self._objs[kind]
            if event_type == "DELETED":
                self._bad.pop(f"{kind} {key}", None)
                changed = objs.pop(key, None) is not None
            else:
                value = self._parse(kind, obj)
                if value is None:
                    changed = objs.pop(key, None) is not None
                else:
                    changed = objs.get(key) != value
                    objs[key] = value
            if changed:
                self.version += 1
            return changed

    @property
    def synced(self) -> bool:
        with self._lock:
            return self._listed == set(KINDS)

    def unsynced(self) -> list:
        with self._lock:
            return [k for k in KINDS if k not in self._listed]

    def bad(self) -> dict:
        with self._lock:
            return dict(self._bad)

    def cluster(self) -> Cluster:
        with self._lock:
            return Cluster(dict(self._objs["pods"]), dict(self._objs["namespaces"]),
                           dict(self._objs["networkpolicies"]))
