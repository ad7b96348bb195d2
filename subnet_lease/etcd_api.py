"""The etcd v3 calls the lease backend makes, as plain data in and out (over etcd_gateway).

Requests are built here (keys and values base64, int64 fields as strings, a prefix as its range
end); answers are parsed by etcd_types. Keys may be str (UTF-8) or bytes.
"""
from __future__ import annotations

import base64
import json
from typing import Callable, Optional, Union

from .etcd_gateway import Endpoint, EtcdRefused, Gateway, error_from
from .etcd_types import KeyValue, LeaseGrant, RangeResult, TxnResult, WatchResult, parse_kv, revision_of
from .etcd_watch_stream import WatchStream

Key = Union[str, bytes]


# ---- conversions ------------------------------------------------------------------------------

def b64(key: Key) -> str:
    return base64.b64encode(key.encode() if isinstance(key, str) else key).decode("ascii")


def prefix_end(prefix: bytes) -> bytes:
    """The range end that makes [prefix, end) every key starting with prefix (etcdctl --prefix)."""
    for i in range(len(prefix) - 1, -1, -1):
        if prefix[i] < 0xFF:
            return prefix[:i] + bytes([prefix[i] + 1])
    return b"\0"          # every key


def _as_bytes(key: Key) -> bytes:
    return key.encode() if isinstance(key, str) else key


def _json(path: str, data: bytes) -> dict:
    """An answer as a dict; EtcdRefused if it is none (say, a proxy's HTML page with status 200)."""
    try:
        obj = json.loads(data)
    except ValueError as err:
        raise EtcdRefused(None, f"{path}: the answer is not JSON ({err}): {data[:80]!r}") from None
    if not isinstance(obj, dict):
        raise EtcdRefused(None, f"{path}: the answer is not a JSON object: {data[:80]!r}")
    return obj


# ---- transaction parts: plain JSON fragments ----------------------------------------------------

def created_at(key: Key, revision: int) -> dict:
    """Compare: the key's create revision is `revision` (0: the key does not exist)."""
    return {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": str(revision)}


def modified_at(key: Key, revision: int) -> dict:
    """Compare: the key was last modified at `revision`."""
    return {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(revision)}


def put_op(key: Key, value: Union[str, bytes], lease: Optional[int] = None) -> dict:
    put = {"key": b64(key), "value": b64(value)}
    if lease:
        put["lease"] = str(lease)
    return {"request_put": put}


def delete_op(key: Key) -> dict:
    return {"request_delete_range": {"key": b64(key)}}


# ---- the client ---------------------------------------------------------------------------------

class EtcdClient:
    """One etcd cluster's calls. Raises etcd_gateway's errors (EtcdConnection sorts them)."""

    def __init__(self, endpoints: list[Endpoint], *, timeout: float, cafile: Optional[str] = None,
                 certfile: Optional[str] = None, keyfile: Optional[str] = None,
                 username: Optional[str] = None, password: Optional[str] = None) -> None:
        self.gateway = Gateway(endpoints, timeout=timeout, cafile=cafile, certfile=certfile,
                               keyfile=keyfile, username=username, password=password)

    def _call(self, path: str, body: dict) -> dict:
        return _json(path, self.gateway.post(path, body))

    # ---- keys ---------------------------------------------------------------------------------

    def get(self, key: Key) -> Optional[KeyValue]:
        """The key's KeyValue, or None if it does not exist."""
        kvs = self.range(key).kvs
        return kvs[0] if kvs else None

    def range(self, key: Key, *, range_end: Optional[bytes] = None,
              revision: Optional[int] = None) -> RangeResult:
        body = {"key": b64(key)}
        if range_end is not None:
            body["range_end"] = b64(range_end)
        if revision:
            body["revision"] = str(revision)
        answer = self._call("/v3/kv/range", body)
        return RangeResult([parse_kv(kv) for kv in answer.get("kvs", ())], revision_of(answer))

    def range_prefix(self, prefix: Key, *, revision: Optional[int] = None) -> RangeResult:
        return self.range(prefix, range_end=prefix_end(_as_bytes(prefix)), revision=revision)

    def put(self, key: Key, value: Union[str, bytes], *, lease: Optional[int] = None) -> int:
        """-> the store revision of the write."""
        return revision_of(self._call("/v3/kv/put", put_op(key, value, lease)["request_put"]))

    def delete(self, key: Key) -> int:
        return revision_of(self._call("/v3/kv/deleterange", {"key": b64(key)}))

    def delete_prefix(self, prefix: Key) -> int:
        return revision_of(self._call("/v3/kv/deleterange", {
            "key": b64(prefix), "range_end": b64(prefix_end(_as_bytes(prefix)))}))

    def txn(self, compare: list[dict], success: list[dict], failure: tuple = ()) -> TxnResult:
        answer = self._call("/v3/kv/txn", {"compare": compare, "success": success, "failure": list(failure)})
        return TxnResult(bool(answer.get("succeeded", False)), revision_of(answer))

    # ---- leases -------------------------------------------------------------------------------

    def grant(self, ttl: int) -> LeaseGrant:
        answer = self._call("/v3/lease/grant", {"TTL": str(ttl)})
        if answer.get("error"):            # LeaseGrantResponse's own error field
            raise EtcdRefused(None, f"lease grant: {answer['error']}")
        return LeaseGrant(int(answer["ID"]), int(answer.get("TTL", 0)))

    def keepalive(self, lease_id: int) -> int:
        """Refresh the lease once; its TTL now (0: the lease does not exist any more)."""
        data = self.gateway.post("/v3/lease/keepalive", {"ID": str(lease_id)})
        for line in data.splitlines():          # a streamed call: {"result": {...}} per line
            if line.strip():
                msg = _json("/v3/lease/keepalive", line)
                if "error" in msg:
                    raise error_from(200, line)
                return int(msg.get("result", {}).get("TTL", 0))
        return 0

    def revoke(self, lease_id: int) -> None:
        self._call("/v3/lease/revoke", {"ID": str(lease_id)})

    def time_to_live(self, lease_id: int) -> int:
        """Seconds left on the lease; -1 once it expired or was revoked."""
        return int(self._call("/v3/lease/timetolive", {"ID": str(lease_id)}).get("TTL", 0))

    # ---- watching -----------------------------------------------------------------------------

    def watch(self, key: Key, on_result: Callable[[Union[WatchResult, Exception, None]], None], *,
              prefix: bool = False, start_revision: Optional[int] = None,
              prev_kv: bool = False) -> WatchStream:
        """Watch `key` (every key under it with prefix=True) from start_revision (default: now).

        on_result gets, in order and from the stream's own thread: each WatchResult with events,
        then at most once an exception (RevisionCompacted, EtcdUnavailable) or None (the server
        ended the stream). Nothing after cancel(). Creating the watch raises as a call does.
        """
        create = {"key": b64(key)}
        if prefix:
            create["range_end"] = b64(prefix_end(_as_bytes(key)))
        if start_revision:
            create["start_revision"] = str(start_revision)
        if prev_kv:
            create["prev_kv"] = True
        return WatchStream.open(self.gateway, {"create_request": create}, on_result)

    # ---- end ----------------------------------------------------------------------------------

    def reset(self) -> None:
        self.gateway.reset()

    def close(self) -> None:
        self.gateway.close()
