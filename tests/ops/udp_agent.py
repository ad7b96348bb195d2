"""A tiny UDP agent run inside a test namespace: listens on PORT (v4 and v6) and sends on request.

stdin:  "send DST DPORT SPORT PAYLOAD"   (SPORT 0 = any)
stdout: "READY", then "GOT SRC SPORT PAYLOAD" for every datagram received, "ERR ..." on a failed send.
Test tooling only; it never leaves the namespace it was started in.
"""
import socket
import sys
import threading

PORT = int(sys.argv[1])


def listen(family, addr):
    s = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, PORT))

    def loop():
        while True:
            data, peer = s.recvfrom(2048)
            print("GOT", peer[0], peer[1], data.decode(errors="replace"), flush=True)

    threading.Thread(target=loop, daemon=True).start()


listen(socket.AF_INET, "0.0.0.0")
listen(socket.AF_INET6, "::")
print("READY", flush=True)
for line in sys.stdin:
    parts = line.split()
    if len(parts) != 5 or parts[0] != "send":
        continue
    _, dst, dport, sport, payload = parts
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if int(sport):
                s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", int(sport)))
            s.sendto(payload.encode(), (dst, int(dport)))
    except OSError as err:
        print("ERR", dst, err, flush=True)
