"""A lab pod's workload: servers and a prober, run inside the pod's network namespace.

    ip netns exec <pod netns> python -m overlayd.lab.pod_agent --socket PATH --name x/a \
        --serve 80/TCP --serve 80/UDP ...

- Serves each --serve port: TCP answers every connection with "<ns/pod> <the peer's address>" and
  closes; UDP answers every datagram the same way (so a test sees the source address that arrived). Both bind the pod's every address (v4 and v6).
- Receives crafted SCTP INIT chunks on a raw socket (this kernel cannot open SCTP sockets) and
  remembers (source address, destination port, initiate tag) of each.
- Answers requests on a Unix socket (a filesystem path, so the lab reaches it from any namespace),
  one JSON object per connection:
    {"op": "probe", "targets": [[ip, port, "TCP"|"UDP"], ...], "timeout": 0.5} -> {"results": [name|null, ...]}
    {"op": "sctp_send", "targets": [[ip, port, tag], ...]}                     -> {"sent": n}
    {"op": "sctp_seen"}                                                        -> {"seen": [[src, port, tag], ...]}
    {"op": "watch", "target": [ip, port, proto], "want": true|false, ...}     -> {"at": time.time()}
    {"op": "connect_rate", "target": [ip, port], "seconds": 3, "parallel": 8} -> {"per_second": ...}
    {"op": "ping"}                                                             -> {"name": ...}
  A probe's result is the server's answer ("<ns/pod> <source address it saw>") when a TCP
  connection was set up and the answer read back (or a UDP reply came), null when it timed out or
  was refused.

Standard library only (asyncio); one process per pod, tens of concurrent probes.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import struct
import sys
import time

IPPROTO_SCTP = 132


# -- SCTP INIT crafting (RFC 9260 §3, CRC32c Appendix A) -------------------------------------------
def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def sctp_init(src_port: int, dst_port: int, tag: int) -> bytes:
    chunk = struct.pack("!BBHIIHHI", 1, 0, 20, tag, 65535, 1, 1, tag)
    header = struct.pack("!HHII", src_port, dst_port, 0, 0)
    packet = header + chunk
    return packet[:8] + struct.pack("<I", crc32c(packet)) + packet[12:]


def parse_sctp_init(payload: bytes):
    """-> (dst port, initiate tag) of an INIT, else None."""
    if len(payload) < 32 or payload[12] != 1:
        return None
    dst_port = struct.unpack("!H", payload[2:4])[0]
    tag = struct.unpack("!I", payload[16:20])[0]
    return dst_port, tag


# -- servers --------------------------------------------------------------------------------------
def _bind(kind: int, port: int) -> socket.socket:
    try:
        s = socket.socket(socket.AF_INET6, kind)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", port))
    except OSError:
        s = socket.socket(socket.AF_INET, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
    s.setblocking(False)
    return s


class Agent:
    def __init__(self, name: str, serve: list[tuple[int, str]], control: str):
        self.name = name
        self.serve = serve
        self.control = control
        self.sctp_seen: list = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        hello = (self.name + "\n").encode()
        for port, proto in self.serve:
            if proto == "TCP":
                async def handle(reader, writer):
                    peer = writer.get_extra_info("peername")[0].removeprefix("::ffff:")
                    writer.write(f"{self.name} {peer}\n".encode())
                    try:
                        await writer.drain()
                    finally:
                        writer.close()
                s = _bind(socket.SOCK_STREAM, port)
                s.listen(512)
                await asyncio.start_server(handle, sock=s)
            elif proto == "UDP":
                s = _bind(socket.SOCK_DGRAM, port)
                await loop.create_datagram_endpoint(lambda: _Echo(hello), sock=s)
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                raw = socket.socket(family, socket.SOCK_RAW, IPPROTO_SCTP)
            except OSError:
                continue
            raw.setblocking(False)
            loop.add_reader(raw.fileno(), self._on_sctp, raw, family)
        if os.path.exists(self.control):
            os.unlink(self.control)
        server = await asyncio.start_unix_server(self._control, path=self.control)
        print(f"pod agent {self.name}: serving {self.serve}, control {self.control}", flush=True)
        async with server:
            await server.serve_forever()

    def _on_sctp(self, raw: socket.socket, family: int) -> None:
        try:
            data, addr = raw.recvfrom(65535)
        except OSError:
            return
        if family == socket.AF_INET:
            data = data[(data[0] & 0x0F) * 4:]           # IPv4 raw sockets include the IP header
        parsed = parse_sctp_init(data)
        if parsed:
            self.sctp_seen.append([addr[0].removeprefix("::ffff:"), parsed[0], parsed[1]])

    async def _control(self, reader, writer) -> None:
        try:
            req = json.loads(await reader.readline())
            op = req.get("op")
            if op == "probe":
                timeout = float(req.get("timeout", 1.0))
                results = await asyncio.gather(*(self._probe(ip, int(port), proto, timeout)
                                                 for ip, port, proto in req["targets"]))
                reply = {"results": list(results)}
            elif op == "sctp_send":
                reply = {"sent": self._sctp_send(req["targets"])}
            elif op == "sctp_seen":
                reply, self.sctp_seen = {"seen": self.sctp_seen}, []
            elif op == "watch":
                reply = await self._watch(req)
            elif op == "connect_rate":
                reply = await self._connect_rate(req)
            elif op == "ping":
                reply = {"name": self.name, "pid": os.getpid()}
            else:
                reply = {"error": f"unknown op {op!r}"}
        except Exception as err:      # a bad request must not take the pod's servers down
            reply = {"error": f"{type(err).__name__}: {err}"}
        writer.write((json.dumps(reply) + "\n").encode())
        await writer.drain()
        writer.close()

    async def _probe(self, ip: str, port: int, proto: str, timeout: float):
        try:
            if proto == "TCP":
                reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
                try:
                    line = await asyncio.wait_for(reader.readline(), timeout)
                finally:
                    writer.close()
                return line.decode().strip() or None
            if proto == "UDP":
                loop = asyncio.get_running_loop()
                fut = loop.create_future()
                transport, _ = await loop.create_datagram_endpoint(lambda: _Reply(fut), remote_addr=(ip, port))
                try:
                    transport.sendto(b"probe")
                    data = await asyncio.wait_for(fut, timeout)
                    return data.decode().strip() or None
                finally:
                    transport.close()
        except (OSError, asyncio.TimeoutError):
            return None
        return None

    async def _watch(self, req: dict) -> dict:
        """Start a probe every `interval` s until one started at time T sees `want` (allowed:
        answered; denied: no answer) and the next `confirm` do too; -> {"at": T (time.time())}.
        The benchmarks time policy changes with it: T is when the first packet met the new rules."""
        ip, port, proto = req["target"]
        want, interval = bool(req["want"]), float(req.get("interval", 0.005))
        attempt_timeout, confirm = float(req.get("attempt_timeout", 0.1)), int(req.get("confirm", 3))
        deadline = time.monotonic() + float(req.get("deadline", 10))
        attempts: list = []                     # (start wall time, task), in start order
        try:
            while time.monotonic() < deadline:
                attempts.append((time.time(), asyncio.ensure_future(self._probe(ip, int(port), proto, attempt_timeout))))
                await asyncio.sleep(interval)
                seen = []                           # verdicts of the finished prefix, in start order
                for _, task in attempts:
                    if not task.done():
                        break
                    seen.append((task.result() is not None) == want)
                for i in range(len(seen) - confirm):
                    if all(seen[i:i + confirm + 1]):
                        return {"at": attempts[i][0], "attempts": len(attempts)}
            return {"at": None, "attempts": len(attempts)}
        finally:
            for _, task in attempts:
                task.cancel()

    async def _connect_rate(self, req: dict) -> dict:
        """New TCP connections per second to target (connect, read the answer, close), by
        `parallel` loops for `seconds`."""
        ip, port = req["target"][0], int(req["target"][1])
        seconds, parallel = float(req.get("seconds", 3)), int(req.get("parallel", 8))
        end = time.monotonic() + seconds
        counts = [0, 0]

        async def loop():
            while time.monotonic() < end:
                ok = await self._probe(ip, port, "TCP", 1.0)
                counts[0 if ok else 1] += 1

        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(parallel)))
        elapsed = time.monotonic() - started
        return {"ok": counts[0], "failed": counts[1], "seconds": elapsed, "per_second": counts[0] / elapsed}

    def _sctp_send(self, targets) -> int:
        sent = 0
        for ip, port, tag in targets:
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            with socket.socket(family, socket.SOCK_RAW, IPPROTO_SCTP) as raw:
                raw.sendto(sctp_init(random.randint(20000, 60000), int(port), int(tag)), (ip, 0))
                sent += 1
        return sent


class _Echo(asyncio.DatagramProtocol):
    def __init__(self, hello: bytes):
        self.hello = hello

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        peer = addr[0].removeprefix("::ffff:")
        self.transport.sendto(self.hello.rstrip(b"\n") + f" {peer}\n".encode(), addr)


class _Reply(asyncio.DatagramProtocol):
    def __init__(self, fut):
        self.fut = fut

    def datagram_received(self, data, addr):
        if not self.fut.done():
            self.fut.set_result(data)

    def error_received(self, exc):
        if not self.fut.done():
            self.fut.set_exception(exc)


def parse_serve(text: str) -> tuple[int, str]:
    port, _, proto = text.partition("/")
    proto = (proto or "TCP").upper()
    if not port.isdigit() or proto not in ("TCP", "UDP", "SCTP"):
        raise argparse.ArgumentTypeError(f"--serve {text!r}: want PORT/TCP, PORT/UDP or PORT/SCTP")
    return int(port), proto


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--serve", type=parse_serve, action="append", default=[])
    args = parser.parse_args(argv)
    serve = sorted(set(args.serve))
    try:
        asyncio.run(Agent(args.name, serve, args.socket).run())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
