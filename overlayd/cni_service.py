"""overlayd's CNI service: the plugin's ADD and DEL, answered by the resident daemon.

kubelet starts the native front end (cni_plugin/native/overlay.c) for every pod operation; it
sends the request here over a unix socket, so no Python interpreter starts per pod. The logic
is the plugin's own (cni_plugin.main.handle); what must happen in the runtime's context, running
the delegate and looking into the pod's network namespace, goes back to the front end as a
request (RemoteHost). Anything else the front end asks is answered "run the Python plugin".

The socket is a file (mode 0600 in a directory only root can write), so only root on the node
can reach it; requests for another subnet file than this daemon's are sent back to the plugin.
"""
from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import threading
import time
from typing import Optional

from cni_plugin import main as plugin, netns, spawn, wire
from cni_plugin.cache import DEFAULT_DATA_DIR
from cni_plugin.errors import CniError, INVALID_ENVIRONMENT, TRY_AGAIN_LATER

log = logging.getLogger("overlayd.cni")

SERVED = ("ADD", "DEL")
PROTOCOL = b"2"                        # the front end's (cni_plugin/native/overlay.c) wire version


class Refused(Exception):
    """This request is the Python plugin's to run (not ours to serve)."""


class FrontEndGone(CniError):
    """The front end went away mid-request: the runtime will retry."""

    def __init__(self, why: str):
        super().__init__(TRY_AGAIN_LATER, "the overlay front end went away during the request", why)


class RemoteHost:
    """cni_plugin.host's interface, carried out by the front end at the other end of `conn`."""

    def __init__(self, conn: socket.socket):
        self.conn = conn

    def _ask(self, kind: bytes, *blobs: bytes) -> list:
        try:
            wire.send(self.conn, kind, *blobs)
            reply, answer = wire.recv(self.conn)
        except wire.WireError as err:
            raise FrontEndGone(str(err)) from None
        if reply != wire.REPLY or not answer:
            raise FrontEndGone(f"unexpected reply {reply!r}")
        return answer

    def run(self, plugin_type: str, path: str, env: dict, stdin: bytes):
        """Only the type, the command and stdin go out: the front end finds the type on its own
        CNI_PATH and builds the environment from its own (native/delegate.c); `path` (our view)
        and `env` are not sent."""
        command = env.get("CNI_COMMAND", "")
        answer = self._ask(wire.EXEC, _bytes(plugin_type), command.encode(), stdin)
        status = answer[0].decode()
        if status == f"E{errno.ENOENT}":
            raise CniError(INVALID_ENVIRONMENT, f"delegate plugin {plugin_type!r} not found in CNI_PATH "
                           f"({env.get('CNI_PATH', '') or 'empty'}) as the runtime sees it",
                           "install the reference CNI plugins (bridge, host-local, portmap) into the CNI bin dir")
        if status.startswith("E"):
            code = int(status[1:])
            raise OSError(code, os.strerror(code))
        if len(answer) != 3:
            raise FrontEndGone("a plugin run's reply lacks its output")
        return int(status), answer[1], answer[2]

    def interface_exists(self, netns_path: str, ifname: str) -> bool:
        """The front end looks into its own CNI_NETNS (which `netns_path` came from)."""
        status = self._ask(wire.IFEXISTS, _bytes(ifname))[0].decode()
        if status in ("yes", "no"):
            return status == "yes"
        code = int(status[1:])
        if status.startswith("E"):
            raise netns.cannot_open(netns_path, os.strerror(code))
        raise netns.cannot_enter(netns_path, os.strerror(code))


class CniService:
    """Listens on `socket_path`; one thread per connection. `metrics`: overlayd.metrics.Metrics.

    Serves requests for this daemon's `subnet_file` whose `dataDir` is `data_dir` (the one the
    daemon shares with the node, so the plugin on the host sees the same cache and lock)."""

    def __init__(self, socket_path: str, subnet_file: str, metrics=None, data_dir: str = DEFAULT_DATA_DIR,
                 on_added=None):
        # After a successful ADD, before the answer goes out: on_added(environ, result_json).
        # overlayd --network-policy compiles the new pod there (overlayd.policy.agent).
        self.on_added = on_added
        self.socket_path = socket_path
        self.subnet_file = subnet_file
        self.data_dir = data_dir
        self.metrics = metrics
        self._listener: Optional[socket.socket] = None
        self._identity = None
        self._closed = threading.Event()
        self._busy = threading.Condition()
        self._in_flight = 0

    def start(self) -> "CniService":
        directory = os.path.dirname(self.socket_path) or "."
        os.makedirs(directory, mode=0o755, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            _remove_stale(self.socket_path)
            old_umask = os.umask(0o177)          # the socket is born 0600: root only
            try:
                sock.bind(self.socket_path)
            finally:
                os.umask(old_umask)
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        st = os.stat(self.socket_path)
        self._identity = (st.st_dev, st.st_ino)
        self._listener = sock
        threading.Thread(target=self._accept_loop, name="cni-service", daemon=True).start()
        log.info("CNI service listening on %s", self.socket_path)
        return self

    def close(self, drain: float = 5.0) -> None:
        """Stop accepting; give requests in flight up to `drain` seconds to finish, so a daemon
        stopping (SIGTERM, rolling update) does not fail the pods being set up right then."""
        self._closed.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._busy:
            if not self._busy.wait_for(lambda: self._in_flight == 0, timeout=drain):
                log.warning("CNI service: %d request(s) still running after %.0f s; the runtime will "
                            "retry them", self._in_flight, drain)
        try:  # only our own socket file: a newer daemon may have bound the path meanwhile
            st = os.stat(self.socket_path)
            if (st.st_dev, st.st_ino) == self._identity:
                os.unlink(self.socket_path)
        except OSError:
            pass

    def _accept_loop(self) -> None:
        listener = self._listener
        while not self._closed.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                if self._closed.is_set():
                    return
                time.sleep(0.05)  # EMFILE and friends: do not spin
                continue
            with self._busy:
                if self._closed.is_set():   # close() is already draining: the front end falls back
                    conn.close()
                    return
                self._in_flight += 1
            try:
                threading.Thread(target=self._serve_counted, args=(conn,), name="cni-request", daemon=True).start()
            except Exception as err:    # no thread to be had: the front end falls back
                log.warning("CNI service: cannot take a request: %s", err)
                conn.close()
                with self._busy:
                    self._in_flight -= 1
                    self._busy.notify_all()
                time.sleep(0.05)

    def _serve_counted(self, conn: socket.socket) -> None:
        try:
            self._serve(conn)
        finally:
            with self._busy:
                self._in_flight -= 1
                self._busy.notify_all()

    def _serve(self, conn: socket.socket) -> None:
        started = time.perf_counter()
        command, counted = "?", False
        with conn:
            try:
                kind, blobs = wire.recv(conn)
                if kind != wire.REQUEST or not blobs:
                    raise wire.WireError(f"expected a request, got {kind!r}")
                if blobs[0] != PROTOCOL or len(blobs) < 2:
                    raise Refused(f"front end protocol {blobs[0][:8]!r}, this daemon speaks {PROTOCOL!r}")
                stdin, environ = blobs[1], _environ(blobs[2:])
                command = environ.get("CNI_COMMAND", "?")
                if command not in SERVED:
                    raise Refused(command)
                wire.send(conn, wire.ACCEPTED)    # alive and on it; the plugin lock may take a while
                code, out, err = plugin.handle(environ, stdin, RemoteHost(conn), accept=self._accept)
                if code == 0 and command == "ADD" and self.on_added is not None:
                    try:
                        self.on_added(environ, out)
                    except Exception:       # the pod is wired; its hook's trouble is not the runtime's
                        log.exception("CNI ADD: the on_added hook failed")
                # Counted before the answer goes out: once the front end has it, the pod moves on.
                self._count(command, "ok" if code == 0 else "error", started)
                counted = True
                wire.send(conn, wire.DONE, str(code).encode(), out, err)
            except Refused:
                self._count(command, "fallback", started)
                _send_quietly(conn, wire.FALLBACK)
            except wire.WireError as err:
                if not counted:
                    self._count(command, "lost", started)
                log.warning("CNI %s: the front end went away: %s", command, err)
            except Exception:  # a bug here must not take the daemon down; the front end retries
                self._count(command, "error", started)
                log.exception("CNI %s failed inside overlayd", command)

    def _count(self, command: str, result: str, started: float) -> None:
        if self.metrics is not None and command in SERVED:
            self.metrics.cni_requests.labels(command=command, result=result).inc()
            self.metrics.cni_duration.labels(command=command).observe(time.perf_counter() - started)

    def _accept(self, req) -> None:
        if req.subnet_file != self.subnet_file:
            raise Refused(f"subnetFile {req.subnet_file} is not this daemon's {self.subnet_file}")
        if req.data_dir != self.data_dir:
            # Not the directory this daemon shares with the node: serving it would split the
            # cache and the lock between the daemon's view and the host's.
            raise Refused(f"dataDir {req.data_dir} is not this daemon's --cni-data-dir {self.data_dir}")
        delegate = req.netconf.get("delegate")
        kind = delegate.get("type", "bridge") if isinstance(delegate, dict) else "bridge"
        if spawn.find(kind, req.cni_path) is None:
            # Not in this daemon's view of CNI_PATH (a directory it does not mount): the plugin,
            # running in the runtime's view, finds it or reports it properly.
            raise Refused(f"delegate {kind!r} not on CNI_PATH as overlayd sees it")


def _environ(blobs) -> dict:
    env = {}
    for blob in blobs:
        name, sep, value = blob.decode("utf-8", "surrogateescape").partition("=")
        if sep:
            env[name] = value
    return env


def _bytes(text: str) -> bytes:
    """Back to the bytes the front end sent (undecodable ones came in as surrogates)."""
    return text.encode("utf-8", "surrogateescape")


def _send_quietly(conn, kind: bytes) -> None:
    try:
        wire.send(conn, kind)
    except wire.WireError:
        pass


def _remove_stale(path: str) -> None:
    """A socket left by a daemon that was killed; never anything that is not a socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(f"{path} exists and is not a socket; remove it or choose another --cni-socket")
    os.unlink(path)


def main(argv=None) -> int:
    """`python -m overlayd.cni_service --socket S --subnet-file F`: the service without the daemon
    (benchmarks, debugging); SIGTERM or SIGINT stops it."""
    import argparse
    import signal
    parser = argparse.ArgumentParser(prog="python -m overlayd.cni_service", description=main.__doc__.split("\n")[0])
    parser.add_argument("--socket", required=True, help="unix socket to listen on")
    parser.add_argument("--subnet-file", required=True, help="the subnet file whose requests are served")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="the plugin cache directory served")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    service = CniService(args.socket, args.subnet_file, data_dir=args.data_dir).start()
    try:
        stop.wait()
    finally:
        service.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
