"""Driving the native front end as a runtime does, against a service scripted by the test."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time

from cni_plugin import wire


def wait_until(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return bool(cond())


class Scripted:
    """A one-connection fake service: records the request, then runs `script(conn)`."""

    def __init__(self, path: str, script):
        self.path, self.script, self.request = path, script, None
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(path)
        self.listener.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return                                  # closed without a connection
        with conn:
            self.request = wire.recv(conn)
            self.script(conn)

    def close(self):
        try:
            self.listener.shutdown(socket.SHUT_RDWR)   # wakes a pending accept()
        except OSError:
            pass
        self.thread.join(5)
        self.listener.close()


def plugins(node, tmp_path, **scripts) -> str:
    """Shell-script plugins in a directory put first on the node's CNI_PATH; -> the directory."""
    bindir = tmp_path / "scriptbin"
    bindir.mkdir(exist_ok=True)
    for name, text in scripts.items():
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    if str(bindir) not in node.runtime.cni_path:
        node.runtime.cni_path = [str(bindir), *node.runtime.cni_path]
    return str(bindir)


def front_end(node, conf, command="ADD", cid="c1", pod=None, env_extra=None, **popen):
    """Start the front end like a runtime, in the node's namespace; -> Popen (stdin already sent)."""
    env = {b"CNI_COMMAND": command.encode(), b"CNI_CONTAINERID": cid.encode(), b"CNI_IFNAME": b"eth0",
           b"CNI_PATH": os.pathsep.join(node.runtime.cni_path).encode(), b"PATH": b"/usr/sbin:/usr/bin:/sbin:/bin"}
    if pod:
        env[b"CNI_NETNS"] = node.netns_path(pod).encode()
    env.update(env_extra or {})
    proc = subprocess.Popen(["ip", "netns", "exec", node.netns, node.runtime.overlay], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, **popen)
    proc.stdin.write(json.dumps(conf).encode())
    proc.stdin.close()
    return proc


def finish(proc, timeout=60):
    out = proc.stdout.read()
    proc.wait(timeout)
    return proc.returncode, json.loads(out) if out.strip() else "", proc.stderr.read().decode()
