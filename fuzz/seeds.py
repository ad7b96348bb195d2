"""Writes the hand-made seeds of fuzz/corpus/ (kept in the repo; run again only to change them).

`python fuzz/seeds.py`: one file per seed, named after what it is. Inputs the fuzzers found
that crashed are kept next to them as regression-* files (see docs/development.md)."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def payload(kind: bytes, *blobs: bytes) -> bytes:
    return kind + b"".join(struct.pack(">I", len(b)) + b for b in blobs)


WIRE = {
    "accepted": payload(b"A"),
    "fallback": payload(b"F"),
    "done": payload(b"D", b"0", b'{"cniVersion":"1.0.0"}\n', b""),
    "exec-bridge-add": payload(b"X", b"bridge", b"ADD", b'{"cniVersion":"1.0.0","name":"n","type":"bridge"}'),
    "exec-version": payload(b"X", b"host-local", b"VERSION", b'{"cniVersion":"1.1.0"}'),
    "exec-path": payload(b"X", b"/bin/sh", b"ADD", b""),
    "exec-dotdot": payload(b"X", b"../../bin/sh", b"DEL", b""),
    "exec-protocol-1": payload(b"X", b"/usr/lib/cni/bridge", b"{}", b"CNI_COMMAND=ADD", b"LD_PRELOAD=/x.so"),
    "exec-nul": payload(b"X", b"bridge\0x", b"CHECK", b""),
    "ifexists": payload(b"I", b"eth0"),
    "reply": payload(b"R", b"0", b"{}", b""),
    "truncated-length": b"X\x00\x00\x00\x09bri",
    "empty-blobs": payload(b"X", b"", b"", b""),
}

JSCAN = {
    "plain": '{"cniVersion": "1.0.0", "name": "n", "type": "overlay", "cniSocket": "/run/flannel/cni.sock"}',
    "nested": '{"delegate": {"cniSocket": "/wrong"}, "note": "\\"cniSocket\\": \\"/w\\"", "cniSocket": "/s"}',
    "arrays": '{"cniSocket": "/s", "ipam": {"ranges": [[{"subnet": "10.0.0.0/8"}]]}}',
    "scalars": '{"list": [1, 2, {"a": [3]}], "n": -1.5e3, "t": true, "z": null, "cniSocket": "/s"}',
    "empty": '{"cniSocket": ""}',
    "twice": '{"cniSocket": "/wrong", "x": 1, "cniSocket": "/s"}',
    "escaped": '{"cniSocket": "/s\\u0000"}',
    "bom": '\ufeff{"cniVersion": "0.4.0", "cniSocket": "/s"}',
    "unterminated": '{"cniSocket": "/s',
    "not-object": '["cniSocket", "/s"]',
    "long": json.dumps({"cniSocket": "/" + "a" * 300}),
    "deep": '{"a": ' + "[" * 200 + "]" * 200 + ', "cniSocket": "/s"}',
    "version-long": '{"cniVersion": "' + "9" * 40 + '"}',
}

ENV = {
    "add": b"\x00" + b"\0".join([b"CNI_COMMAND=ADD", b"CNI_CONTAINERID=c1", b"CNI_NETNS=/run/netns/p",
                                 b"CNI_IFNAME=eth0", b"CNI_PATH=/opt/cni/bin:/usr/lib/cni", b"PATH=/bin"]),
    "version": b"\x03" + b"\0".join([b"bridge", b"CNI_COMMAND=DEL", b"CNI_ARGS=IgnoreUnknown=1",
                                     b"CNI_PATH=/usr/lib/cni::/nonexistent", b"CNI_NETNS=/x"]),
    "path-type": b"\x01" + b"\0".join([b"../bin/sh", b"CNI_PATH=/usr/lib/cni"]),
    "no-equals": b"\x02" + b"\0".join([b"CNI_COMMAND", b"CNI_COMMAND=", b"=", b"", b"CNI_PATH="]),
}


def write(name: str, seeds: dict) -> None:
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for seed, data in seeds.items():
        with open(os.path.join(d, f"seed-{seed}"), "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)


if __name__ == "__main__":
    write("fuzz_wire", WIRE)
    write("fuzz_jscan", JSCAN)
    write("fuzz_env", ENV)
