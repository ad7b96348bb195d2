"""The framing between the native front end (native/overlay.c) and overlayd's CNI service.

A message: u32 big-endian payload length; the payload is one type byte, then blobs, each a u32
big-endian length and its bytes. The types and their blobs are listed in native/overlay.c.
"""
import struct

MAX_MESSAGE = 64 << 20
_U32 = struct.Struct(">I")

REQUEST, ACCEPTED, EXEC, IFEXISTS, FALLBACK, DONE, REPLY = b"Q", b"A", b"X", b"I", b"F", b"D", b"R"


class WireError(Exception):
    """The peer closed the connection or sent something that is not a message."""


def encode(kind: bytes, *blobs: bytes) -> bytes:
    parts = [kind]
    for blob in blobs:
        parts.append(_U32.pack(len(blob)))
        parts.append(blob)
    payload = b"".join(parts)
    return _U32.pack(len(payload)) + payload


def decode(payload: bytes):
    """-> (kind, [blobs]) of one payload (without its length prefix)."""
    if not payload:
        raise WireError("empty message")
    blobs, i, n = [], 1, len(payload)
    while i < n:
        if i + 4 > n:
            raise WireError("truncated blob length")
        (size,) = _U32.unpack_from(payload, i)
        i += 4
        if size > n - i:
            raise WireError("blob longer than its message")
        blobs.append(payload[i:i + size])
        i += size
    return payload[:1], blobs


def recv(sock):
    """-> (kind, [blobs]); WireError on EOF or garbage."""
    (size,) = _U32.unpack(_recv_exact(sock, 4))
    if not 1 <= size <= MAX_MESSAGE:
        raise WireError(f"message of {size} bytes")
    return decode(_recv_exact(sock, size))


def send(sock, kind: bytes, *blobs: bytes) -> None:
    try:
        sock.sendall(encode(kind, *blobs))
    except OSError as err:
        raise WireError(f"cannot send: {err}") from None


def _recv_exact(sock, size: int) -> bytes:
    chunks, left = [], size
    while left:
        try:
            chunk = sock.recv(min(left, 1 << 20))
        except OSError as err:
            raise WireError(f"cannot receive: {err}") from None
        if not chunk:
            raise WireError("connection closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
