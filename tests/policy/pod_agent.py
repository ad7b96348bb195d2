"""A test pod's process, run inside the pod's namespace: TCP/UDP echo servers and a prober.

argv: the ports to serve (TCP and UDP, IPv4 and IPv6). stdin, one command a line:
  probe tcp|udp DST PORT TIMEOUT   -> "ok" or "fail"  (a new connection; UDP: an echoed datagram)
  open DST PORT                    -> "ok" or "fail"  (one kept TCP connection)
  ping TIMEOUT                     -> "ok" or "fail"  (an echo over the kept connection)
stdout: "READY" first. Test tooling only; it never leaves the namespace it was started in.
"""
import socket
import sys
import threading


def serve_tcp(family, port):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    s.listen(64)

    def echo(c):
        with c:
            while True:
                data = c.recv(100)
                if not data:
                    return
                c.sendall(data)

    def loop():
        while True:
            c, _ = s.accept()
            threading.Thread(target=echo, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()


def serve_udp(family, port):
    s = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))

    def loop():
        while True:
            data, peer = s.recvfrom(100)
            s.sendto(data, peer)
    threading.Thread(target=loop, daemon=True).start()


def probe(proto, dst, port, timeout):
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((dst, port))
            s.send(b"x")
            return s.recv(10) == b"x"
        except OSError:
            return False


for port in map(int, sys.argv[1:]):
    for fam in (socket.AF_INET, socket.AF_INET6):
        serve_tcp(fam, port)
        serve_udp(fam, port)
print("READY", flush=True)
kept = None
for line in sys.stdin:
    cmd = line.split()
    ok = False
    if cmd[0] == "probe":
        ok = probe(cmd[1], cmd[2], int(cmd[3]), float(cmd[4]))
    elif cmd[0] == "open":
        try:
            kept = socket.create_connection((cmd[1], int(cmd[2])), timeout=2)
            ok = True
        except OSError:
            ok = False
    elif cmd[0] == "ping" and kept is not None:
        kept.settimeout(float(cmd[1]))
        try:
            kept.send(b"y")
            ok = kept.recv(10) == b"y"
        except OSError:
            ok = False
    print("ok" if ok else "fail", flush=True)
