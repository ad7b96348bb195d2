"""A hostile CNI service gets nothing run (issue 13, item 1).

overlayd's container is unprivileged, yet whoever controls it speaks to the front end that the
runtime starts as root on the host. The service may name a delegate *type*, a CNI command and
stdin; never a path, never an environment. Each test proves "nothing ran" with a canary: a
program (or an LD_PRELOAD library) that would create a file if it were ever executed or loaded.
The runtime still gets a correct answer: the Python plugin's, if nothing had been asked yet;
otherwise CNI error 999 naming the refusal.
"""
from __future__ import annotations

import os
import socket
import subprocess

import pytest

from cni_plugin import wire
from cni_plugin.invoke import run_plugin
from overlayd.cni_service import CniService
from overlayd.metrics import Metrics

from frontend_driver import Scripted, finish, front_end, plugins

NOTHING = {"veths": [], "ips": [], "cache": []}


class Canary:
    """An executable and a preload library outside every CNI_PATH; either leaves `ran` behind."""

    def __init__(self, tmp_path):
        self.dir = tmp_path / "canary"
        self.dir.mkdir()
        self.ran = self.dir / "ran"
        self.exe = self.dir / "canary"
        self.exe.write_text(f"#!/bin/sh\necho exe >> {self.ran}\necho '{{}}'\n")
        self.exe.chmod(0o755)
        src = self.dir / "preload.c"
        src.write_text('#include <fcntl.h>\n#include <unistd.h>\n'
                       '__attribute__((constructor)) static void canary(void) {\n'
                       f'    int fd = open("{self.ran}", O_WRONLY | O_CREAT | O_APPEND, 0644);\n'
                       '    if (fd >= 0) { write(fd, "preload\\n", 8); close(fd); }\n}\n')
        self.lib = self.dir / "preload.so"
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(self.lib), str(src)], check=True)

    def tripped(self) -> bool:
        return self.ran.exists()


@pytest.fixture
def canary(tmp_path):
    return Canary(tmp_path)


def test_the_canaries_work(canary):
    """Positive controls: run, or preloaded into a dynamic program, each leaves its mark."""
    subprocess.run([str(canary.exe)], check=True, capture_output=True)
    assert canary.ran.read_text() == "exe\n"
    canary.ran.unlink()
    subprocess.run(["/bin/true"], check=True, env={"LD_PRELOAD": str(canary.lib)})
    assert canary.ran.read_text() == "preload\n"


def _hostile_asks(node, canary):
    up = os.path.relpath(canary.exe, node.runtime.cni_path[0])     # ../../.../canary/canary
    preload = f"LD_PRELOAD={canary.lib}".encode()
    return {
        "absolute-path": [str(canary.exe).encode(), b"ADD", b"{}"],
        "dot-dot-path": [up.encode(), b"ADD", b"{}"],
        "protocol-1-exec": [str(canary.exe).encode(), b"{}", b"CNI_COMMAND=ADD", preload],
        "env-with-ld-preload": [b"bridge", b"ADD", b"{}", preload, b"PATH=" + str(canary.dir).encode()],
        "dot-dot": [b"..", b"ADD", b"{}"],
        "empty-type": [b"", b"ADD", b"{}"],
        "nul-in-type": [b"bridge\0/" + str(canary.exe).encode(), b"ADD", b"{}"],
        "unknown-command": [b"canary", b"ADD;touch", b"{}"],
    }


HOSTILE = ["absolute-path", "dot-dot-path", "protocol-1-exec", "env-with-ld-preload", "dot-dot", "empty-type",
           "nul-in-type", "unknown-command"]


@pytest.mark.parametrize("ask", HOSTILE)
def test_a_hostile_first_ask_runs_nothing_and_the_python_plugin_answers(make_node, tmp_path, canary, ask):
    sock = str(tmp_path / "s.sock")
    node = make_node(cni_socket=sock)
    if ask == "unknown-command":          # a real plugin on CNI_PATH: only the command is wrong
        plugins(node, tmp_path, canary=canary.exe.read_text())
    blobs = _hostile_asks(node, canary)[ask]
    seen = {}

    def hostile(conn):
        wire.send(conn, wire.ACCEPTED)
        wire.send(conn, wire.EXEC, *blobs)
        try:
            seen["reply"] = wire.recv(conn)
        except wire.WireError as err:
            seen["closed"] = str(err)

    fake = Scripted(sock, hostile)
    pod = node.pod("p1")
    rc, out, err = finish(front_end(node, node.runtime._conf(node.plugins()[0], None, None), "ADD", "c1", pod))
    fake.close()
    assert not canary.tripped(), canary.ran.read_text()
    assert "closed" in seen, seen                                  # no reply: the front end hung up
    assert "refused a message from overlayd's CNI service" in err and "nothing was run" in err
    assert rc == 0, (out, err)                                     # the Python plugin did the ADD
    assert node.pod_addrs(pod) == [out["ips"][0]["address"]]
    assert finish(front_end(node, node.runtime._conf(node.plugins()[0], None, None), "DEL", "c1", pod))[0] == 0
    assert node.leftovers() == NOTHING


def test_a_hostile_ask_after_a_genuine_one_is_a_cni_error_and_runs_nothing(make_node, tmp_path, canary):
    sock = str(tmp_path / "s.sock")
    node = make_node(cni_socket=sock)
    seen = {}

    def genuine_then_hostile(conn):
        wire.send(conn, wire.IFEXISTS, b"eth0")
        seen["ifexists"] = wire.recv(conn)
        wire.send(conn, wire.EXEC, str(canary.exe).encode(), b"ADD", b"{}")
        try:
            seen["reply"] = wire.recv(conn)
        except wire.WireError:
            seen["closed"] = True

    fake = Scripted(sock, genuine_then_hostile)
    pod = node.pod("p1")
    rc, out, err = finish(front_end(node, node.runtime._conf(node.plugins()[0], None, None), "ADD", "c1", pod))
    fake.close()
    assert seen["ifexists"] == (wire.REPLY, [b"no"]) and seen.get("closed"), seen
    assert not canary.tripped()
    assert rc == 1 and out["code"] == 999 and "refuses" in out["msg"], (out, err)
    assert "'/'" in out["details"]                                 # names what was wrong with it
    assert node.leftovers() == NOTHING                             # and no fallback behind its back


def test_a_type_not_on_the_front_ends_cni_path_is_not_found_there(make_node, tmp_path, canary):
    """The service's view of the disk does not count: a name only in a directory that is not on
    the runtime's CNI_PATH is "E2" (ENOENT), and nothing runs."""
    sock = str(tmp_path / "s.sock")
    node = make_node(cni_socket=sock)
    seen = {}

    def script(conn):
        wire.send(conn, wire.EXEC, b"canary", b"ADD", b"{}")
        seen["reply"] = wire.recv(conn)
        wire.send(conn, wire.DONE, b"0", b"", b"")

    fake = Scripted(sock, script)
    rc, _, _ = finish(front_end(node, node.runtime._conf(node.plugins()[0], None, None), "DEL"))
    fake.close()
    assert rc == 0 and seen["reply"] == (wire.REPLY, [b"E2"])
    assert not canary.tripped()


def test_the_delegate_runs_with_the_runtimes_environment_not_the_services(make_node, tmp_path, canary):
    """A genuine ask runs the type found on the front end's CNI_PATH with the front end's own
    environment: CNI_COMMAND set; for VERSION without the container's variables."""
    sock = str(tmp_path / "s.sock")
    node = make_node(cni_socket=sock)
    dump = tmp_path / "env.dump"
    plugins(node, tmp_path, envdump=f"#!/bin/sh\nenv -0 > {dump}.$CNI_COMMAND\necho '{{}}'\n")
    seen = {}

    def script(conn):
        for command in (b"ADD", b"VERSION"):
            wire.send(conn, wire.EXEC, b"envdump", command, b'{"cniVersion": "1.0.0"}')
            seen[command] = wire.recv(conn)
        wire.send(conn, wire.DONE, b"0", b"", b"")

    fake = Scripted(sock, script)
    pod = node.pod("p1")
    runtime_env = {b"RUNTIME_NOTE": b"caf\xe9", b"CNI_ARGS": b"K8S_POD_NAME=p1"}
    rc, _, err = finish(front_end(node, node.runtime._conf(node.plugins()[0], None, None), "ADD", "c1", pod,
                                  env_extra=runtime_env))
    fake.close()
    assert rc == 0, err
    assert seen[b"ADD"][1][0] == b"0" and seen[b"VERSION"][1][0] == b"0", seen

    def dumped(command):
        entries = (tmp_path / f"env.dump.{command}").read_bytes().split(b"\0")
        return dict(e.split(b"=", 1) for e in entries if e and not e.startswith((b"PWD=", b"SHLVL=", b"_=")))

    expected = {b"CNI_COMMAND": b"ADD", b"CNI_CONTAINERID": b"c1", b"CNI_IFNAME": b"eth0",
                b"CNI_PATH": os.pathsep.join(node.runtime.cni_path).encode(),
                b"PATH": b"/usr/sbin:/usr/bin:/sbin:/bin", b"CNI_NETNS": node.netns_path(pod).encode(),
                **runtime_env}
    assert dumped("ADD") == expected
    version_env = {k: v for k, v in expected.items()
                   if k not in (b"CNI_CONTAINERID", b"CNI_NETNS", b"CNI_IFNAME", b"CNI_ARGS")}
    assert dumped("VERSION") == {**version_env, b"CNI_COMMAND": b"VERSION"}
    assert not canary.tripped()


@pytest.mark.parametrize("bad_type", ["/usr/lib/cni/bridge", "../cni/bridge", ".."])
def test_a_delegate_type_that_is_a_path_is_a_config_error_with_or_without_the_service(
        make_node, tmp_path, bad_type):
    """cni_plugin.spawn's rule, as libcni's: a type with '/' is never looked up; the plugin
    answers with CNI error 7 naming delegate.type, whether the daemon is up or not."""
    sock = str(tmp_path / "cni.sock")
    node = make_node(cni_socket=sock)
    metrics = Metrics()
    service = CniService(sock, node.subnet_file, metrics=metrics, data_dir=node.data_dir).start()
    conf = node.runtime._conf(node.plugins()[0], None, None)
    conf["delegate"] = {"type": bad_type}
    pod = node.pod("p1")
    try:
        for cni_socket in (sock, ""):
            conf["cniSocket"] = cni_socket
            rc, out, _ = run_plugin(node.runtime.overlay, "ADD", conf, "c1", node.netns_path(pod),
                                    cni_path=node.runtime.cni_path, run_in_netns=node.netns)
            assert rc == 1 and out["code"] == 7, out
            assert repr(bad_type) in out["msg"] and "delegate.type" in out["details"], out
    finally:
        service.close()
    assert metrics.registry.get_sample_value("overlayd_cni_requests_total",
                                             {"command": "ADD", "result": "fallback"}) == 1
    assert node.leftovers() == NOTHING


def test_the_service_never_sends_a_path_or_an_environment(make_node, tmp_path):
    """The real service, watched on the wire by a relay: every 'X' is type, command, stdin."""
    node = make_node()
    real = str(tmp_path / "real.sock")
    service = CniService(real, node.subnet_file, data_dir=node.data_dir).start()
    relay_path = str(tmp_path / "relay.sock")
    asks = []

    def relay(conn):
        upstream = socket.socket(socket.AF_UNIX)
        upstream.connect(real)
        with upstream:
            kind, blobs = fake.request
            wire.send(upstream, kind, *blobs)
            while True:
                kind, blobs = wire.recv(upstream)
                if kind == wire.EXEC:
                    asks.append(blobs)
                wire.send(conn, kind, *blobs)
                if kind in (wire.DONE, wire.FALLBACK):
                    return
                if kind in (wire.EXEC, wire.IFEXISTS):
                    reply, answer = wire.recv(conn)
                    wire.send(upstream, reply, *answer)

    fake = Scripted(relay_path, relay)
    conf = dict(node.runtime._conf(node.plugins()[0], None, None), cniSocket=relay_path)
    pod = node.pod("p1")
    try:
        rc, out, err = finish(front_end(node, conf, "ADD", "c1", pod))
    finally:
        fake.close()
        service.close()
    assert rc == 0 and out["ips"], (out, err)
    assert asks and all(len(blobs) == 3 and b"/" not in blobs[0] for blobs in asks), asks
    assert [blobs[:2] for blobs in asks][-1] == [b"bridge", b"ADD"]
    assert finish(front_end(node, dict(conf, cniSocket=""), "DEL", "c1", pod))[0] == 0
    assert node.leftovers() == NOTHING



def test_a_type_the_front_end_cannot_find_is_error_4_from_the_service():
    """The service's side of "E2": the runtime's CNI_PATH lacks the type the daemon found."""
    from cni_plugin.errors import CniError
    from overlayd.cni_service import RemoteHost
    service_end, front = socket.socketpair()
    with service_end, front:
        wire.send(front, wire.REPLY, b"E2")           # queued: the answer to the ask below
        with pytest.raises(CniError) as failed:
            RemoteHost(service_end).run("bridge", "/usr/lib/cni/bridge",
                                        {"CNI_COMMAND": "ADD", "CNI_PATH": "/opt/cni/bin", "LD_PRELOAD": "x"}, b"{}")
        assert failed.value.code == 4 and "'bridge' not found in CNI_PATH (/opt/cni/bin)" in failed.value.msg
        assert wire.recv(front) == (wire.EXEC, [b"bridge", b"ADD", b"{}"])   # no path, no environment
