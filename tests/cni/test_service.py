"""The native front end with overlayd's CNI service: same results, no interpreter per pod.

The front end (cni_plugin/native/overlay.c) is what kubelet runs; the service is the daemon's
(overlayd/cni_service.py), here started on its own. The real bridge and host-local run as the
delegate, started by the front end. The service's metrics tell whether it, or the Python plugin
(the fallback), answered.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from cni_plugin import wire
from cni_plugin.invoke import run_plugin
from overlayd.cni_service import CniService
from overlayd.metrics import Metrics

from cni_chain import ChainError
from frontend_driver import Scripted, finish, front_end, plugins, wait_until


NOTHING = {"veths": [], "ips": [], "cache": []}


class Served:
    def __init__(self, node, service, metrics):
        self.node, self.service, self.metrics = node, service, metrics

    def count(self, command: str, result: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "overlayd_cni_requests_total", {"command": command, "result": result})
        return value or 0.0


@pytest.fixture
def served(make_node, tmp_path):
    """A node whose conflist points at a running CNI service."""
    sock = str(tmp_path / "run" / "cni.sock")
    node = make_node(cni_socket=sock)
    metrics = Metrics()
    service = CniService(sock, node.subnet_file, metrics=metrics, data_dir=node.data_dir).start()
    yield Served(node, service, metrics)
    service.close()


def test_add_check_del_through_the_service_wire_a_pod_and_leave_nothing(served):
    node = served.node
    pod = node.pod("p1")
    result = node.runtime.add("c1", node.netns_path(pod))
    addr = result["ips"][0]["address"]
    assert addr.startswith("10.244.7.")
    assert node.pod_addrs(pod) == [addr]
    assert node.ping(pod, "10.244.7.1")                      # the bridge (gateway) answers
    assert served.count("ADD", "ok") == 1                     # the service answered, not the fallback
    node.runtime.check("c1", node.netns_path(pod))            # CHECK is the Python plugin's
    node.runtime.delete("c1", node.netns_path(pod))
    assert served.count("DEL", "ok") == 1
    assert node.leftovers() == NOTHING
    node.runtime.delete("c1", node.netns_path(pod))           # DEL again: still fine
    assert served.count("DEL", "ok") == 2


def test_the_service_refuses_an_interface_that_exists_and_leaves_it_alone(served):
    node = served.node
    pod = node.pod("p1")
    first = node.runtime.add("c1", node.netns_path(pod))
    with pytest.raises(ChainError) as failed:
        node.runtime.add("c2", node.netns_path(pod))          # same netns, same eth0
    assert failed.value.out["code"] == 4 and "already exists" in failed.value.out["msg"]
    assert node.pod_addrs(pod) == [first["ips"][0]["address"]]  # the rollback did not delete it
    assert node.cache_entries() == ["c1-eth0.json"]
    assert served.count("ADD", "error") == 1


def test_a_netns_that_cannot_be_opened_is_a_clear_error_through_the_service(served):
    node = served.node
    rc, out, _ = run_plugin(node.runtime.overlay, "ADD", node.runtime._conf(node.plugins()[0], None, None),
                            "c9", "/run/netns/does-not-exist", "eth0", cni_path=node.runtime.cni_path,
                            run_in_netns=node.netns)
    assert rc == 1 and out["code"] == 4 and "cannot be opened" in out["msg"], out
    assert node.leftovers() == NOTHING


def test_50_concurrent_adds_through_the_service_get_50_addresses_and_dels_leave_nothing(served):
    node = served.node
    pods = [node.pod(f"c{i}") for i in range(50)]
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(lambda i: node.runtime.add(f"ctr{i}", node.netns_path(pods[i])), range(50)))
    assert len({r["ips"][0]["address"] for r in results}) == 50
    assert served.count("ADD", "ok") == 50
    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(lambda i: node.runtime.delete(f"ctr{i}", node.netns_path(pods[i])), range(50)))
    assert served.count("DEL", "ok") == 50
    assert node.leftovers() == NOTHING


def test_without_the_service_the_python_plugin_answers(make_node, tmp_path):
    node = make_node(cni_socket=str(tmp_path / "nobody-listens.sock"))
    pod = node.pod("p1")
    node.runtime.add("c1", node.netns_path(pod))
    assert len(node.pod_addrs(pod)) == 1
    node.runtime.delete("c1", node.netns_path(pod))
    assert node.leftovers() == NOTHING


def test_a_stale_socket_of_a_killed_daemon_falls_back_and_a_new_service_replaces_it(make_node, tmp_path):
    sock = str(tmp_path / "cni.sock")
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(sock)
    dead.close()                                   # the file stays, nobody listens: ECONNREFUSED
    node = make_node(cni_socket=sock)
    pod = node.pod("p1")
    node.runtime.add("c1", node.netns_path(pod))   # answered by the Python plugin
    metrics = Metrics()
    service = CniService(sock, node.subnet_file, metrics=metrics, data_dir=node.data_dir).start()
    try:
        node.runtime.delete("c1", node.netns_path(pod))
        assert metrics.registry.get_sample_value("overlayd_cni_requests_total",
                                                 {"command": "DEL", "result": "ok"}) == 1
    finally:
        service.close()
    assert not os.path.exists(sock)
    assert node.leftovers() == NOTHING


def test_a_request_for_another_subnet_file_is_handed_back_to_the_plugin(served, tmp_path):
    node = served.node
    other = tmp_path / "other-subnet.env"
    other.write_text(open(node.subnet_file).read())
    node.subnet_file = str(other)
    node.runtime.conflist = node.conflist("1.0.0")
    pod = node.pod("p1")
    node.runtime.add("c1", node.netns_path(pod))
    assert served.count("ADD", "fallback") == 1 and served.count("ADD", "ok") == 0
    node.runtime.delete("c1", node.netns_path(pod))
    assert node.leftovers() == NOTHING


def test_the_service_socket_is_root_only(served):
    assert os.stat(served.service.socket_path).st_mode & 0o777 == 0o600


def test_the_service_refuses_to_replace_a_file_that_is_not_a_socket(tmp_path):
    path = tmp_path / "cni.sock"
    path.write_text("precious")
    with pytest.raises(OSError, match="not a socket"):
        CniService(str(path), "/run/flannel/subnet.env").start()
    assert path.read_text() == "precious"


# --- the front end against scripted services: what it does when the service misbehaves ---------

def _run(node, command="ADD", cid="c1", pod=None, conf=None):
    """-> (rc, parsed stdout, stderr) of one front-end run, as a runtime starts it."""
    return finish(front_end(node, conf or node.runtime._conf(node.plugins()[0], None, None), command, cid, pod))


def test_a_service_that_closes_before_answering_leaves_the_request_to_the_plugin(make_node, tmp_path):
    sock = str(tmp_path / "s.sock")
    node = make_node(cni_socket=sock)
    fake = Scripted(sock, lambda conn: None)
    pod = node.pod("p1")
    rc, out, err = _run(node, pod=pod)
    fake.close()
    assert rc == 0, (out, err)
    kind, blobs = fake.request
    env = dict(b.decode().split("=", 1) for b in blobs[2:])
    assert kind == wire.REQUEST and blobs[0] == b"2"          # protocol version 2
    assert env["CNI_COMMAND"] == "ADD" and env["CNI_CONTAINERID"] == "c1"
    assert json.loads(blobs[1])["cniSocket"] == sock
    assert node.pod_addrs(pod) == [out["ips"][0]["address"]]


def test_a_service_that_dies_mid_request_is_try_again_later_not_a_second_attempt(make_node, tmp_path):
    sock = str(tmp_path / "s.sock")
    node = make_node(cni_socket=sock)

    def ask_then_die(conn):
        wire.send(conn, wire.IFEXISTS, b"lo")
        assert wire.recv(conn) == (wire.REPLY, [b"yes"])    # the front end looked into CNI_NETNS

    fake = Scripted(sock, ask_then_die)
    rc, out, _ = _run(node, pod=node.pod("p1"))
    fake.close()
    assert rc == 1 and out["code"] == 11 and "went away" in out["msg"], out
    assert node.leftovers() == NOTHING                          # no fallback ran behind its back


def test_the_front_end_runs_what_the_service_asks_and_prints_its_answer(make_node, tmp_path):
    sock = str(tmp_path / "s.sock")
    node = make_node(cni_socket=sock)
    seen = {}

    def script(conn):
        wire.send(conn, wire.EXEC, b"host-local", b"VERSION", b'{"cniVersion":"1.0.0"}')
        seen["version"] = wire.recv(conn)
        wire.send(conn, wire.EXEC, b"no-such-plugin", b"VERSION", b"")
        seen["missing"] = wire.recv(conn)
        wire.send(conn, wire.DONE, b"3", b'{"cniVersion":"1.0.0","code":3,"msg":"scripted"}\n', b"to stderr\n")

    fake = Scripted(sock, script)
    rc, out, err = _run(node, command="DEL")
    fake.close()
    assert (rc, out["msg"], err) == (3, "scripted", "to stderr\n")
    kind, (status, stdout, _) = seen["version"]
    assert kind == wire.REPLY and status == b"0" and b"supportedVersions" in stdout
    assert seen["missing"] == (wire.REPLY, [b"E2"])             # not on CNI_PATH: ENOENT, not fatal


@pytest.mark.parametrize("conf_text, expected", [
    # nested objects and strings that mention the key do not fool the scanner
    ('{"delegate": {"cniSocket": "/wrong"}, "note": "\\"cniSocket\\": \\"/wrong\\"", "cniSocket": "%s"}', True),
    ('{"cniSocket": "%s", "ipam": {"ranges": [[{"subnet": "10.0.0.0/8"}]]}}', True),
    ('{"list": [1, 2, {"a": [3]}], "n": -1.5e3, "t": true, "z": null, "cniSocket": "%s"}', True),
    ('{"cniSocket": ""}', False),                                # "" turns the service off
    ('{"cniSocket": "/wrong", "x": 1, "cniSocket": "%s"}', True),  # the last one, as Go and Python
    ('{"cniSocket": "%s\\u0000"}', False),                      # unreadable for the scanner: plugin
])
def test_the_front_end_finds_the_top_level_cni_socket(make_node, tmp_path, conf_text, expected):
    sock = str(tmp_path / "s.sock")
    node = make_node()
    fake = Scripted(sock, lambda conn: wire.send(conn, wire.DONE, b"0", b"", b""))
    text = conf_text.replace("%s", sock)[:-1] + (
        f', "cniVersion": "1.0.0", "name": "{node.name}", "type": "overlay", '
        f'"subnetFile": "{node.subnet_file}", "dataDir": "{node.data_dir}"}}')
    json.loads(text)
    env = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0",
           "CNI_PATH": os.pathsep.join(node.runtime.cni_path), "PATH": os.environ.get("PATH", "")}
    proc = subprocess.run([node.runtime.overlay], input=text, capture_output=True, text=True, env=env, timeout=30)
    fake.close()
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    if expected:
        assert fake.request is not None and fake.request[1][1].decode() == text
    else:
        assert fake.request is None


def test_a_service_that_hangs_up_while_the_front_end_answers_is_try_again_later(make_node, tmp_path):
    sock = str(tmp_path / "s.sock")
    node = make_node(cni_socket=sock)
    plugins(node, tmp_path, slow="#!/bin/sh\nsleep 0.3\n")
    # asks for a run that takes 0.3 s and hangs up at once: the front end's answer meets a closed
    # socket, every time (EPIPE, reported as error 11; not a death by SIGPIPE)
    fake = Scripted(sock, lambda conn: wire.send(conn, wire.EXEC, b"slow", b"ADD", b""))
    rc, out, err = _run(node, pod=node.pod("p1"))
    fake.close()
    assert rc == 1 and out["code"] == 11, (rc, out, err)


def test_a_delegate_the_daemon_cannot_see_is_left_to_the_plugin(served):
    node = served.node
    conf = node.runtime._conf(node.plugins()[0], None, None)
    conf["delegate"] = {"type": "no-such-delegate"}
    rc, out, _ = _run(node, pod=node.pod("p1"), conf=conf)
    assert rc == 1 and out["code"] == 4 and "not found in CNI_PATH" in out["msg"], out
    assert served.count("ADD", "fallback") == 1
    assert node.leftovers() == NOTHING


def test_stopping_the_service_lets_a_request_in_flightfinish(make_node, tmp_path):
    """A daemon stopping (SIGTERM, rolling update) while a pod is being set up: that pod still
    gets its answer; only new requests go to the Python plugin."""
    node = make_node()
    sock = str(tmp_path / "cni.sock")
    service = CniService(sock, node.subnet_file, data_dir=node.data_dir).start()
    conf = dict(node.runtime._conf(node.plugins()[0], None, None), cniSocket=sock)
    env = [f"{k}={v}".encode() for k, v in {
        "CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni", "PATH": "/usr/bin:/bin"}.items()]
    front = socket.socket(socket.AF_UNIX)             # plays the front end, slowly
    front.connect(sock)
    wire.send(front, wire.REQUEST, b"2", json.dumps(conf).encode(), *env)
    assert wire.recv(front) == (wire.ACCEPTED, [])
    kind, blobs = wire.recv(front)                    # the service wants the delegate run
    assert kind == wire.EXEC
    closing = threading.Thread(target=service.close)
    closing.start()
    closing.join(0.5)
    assert closing.is_alive()                         # close() waits for us
    assert not os.path.exists(sock) or _refused(sock) # ... but takes no new request
    while kind == wire.EXEC:                          # run what it asks, like the front end
        plugin_type, command, stdin = blobs
        proc = subprocess.run([os.path.join("/usr/lib/cni", plugin_type.decode())], input=stdin,
                              capture_output=True, env={**dict(b.decode().split("=", 1) for b in env),
                                                        "CNI_COMMAND": command.decode()})
        wire.send(front, wire.REPLY, str(proc.returncode).encode(), proc.stdout, proc.stderr)
        kind, blobs = wire.recv(front)
    assert kind == wire.DONE and blobs[0] == b"0", blobs
    closing.join(10)
    assert not closing.is_alive() and not os.path.exists(sock)
    front.close()


def _refused(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.connect(path)
        return False
    except OSError:
        return True
    finally:
        probe.close()


# --- what the review found: each a scenario a runtime or an operator can hit ---------------------

def test_a_front_end_killed_while_its_delegate_runs_on_leaves_the_cache_for_the_runtimes_del(served, tmp_path):
    """kubelet's timeout kills `overlay` mid-ADD; bridge, already started, finishes as an orphan.
    The service must keep the cache entry, so the runtime's DEL releases the veth and address."""
    node = served.node
    bindir = tmp_path / "slowbin"
    bindir.mkdir()
    slow = bindir / "slowbridge"
    started = tmp_path / "delegate-started"
    slow.write_text(f'#!/bin/sh\n[ "$CNI_COMMAND" = ADD ] && touch {started} && sleep 1.5\nexec /usr/lib/cni/bridge\n')
    slow.chmod(0o755)
    node.runtime.cni_path = [str(bindir), *node.runtime.cni_path]
    conf = node.runtime._conf(node.plugins()[0], None, None)
    conf["delegate"] = {"type": "slowbridge", "bridge": "cni0", "isGateway": True}
    pod = node.pod("p1")
    warm = front_end(node, conf, "DEL", "c0", pod)            # learns slowbridge's versions first
    assert finish(warm)[0] == 0
    proc = front_end(node, conf, "ADD", "c1", pod)
    assert wait_until(lambda: served.count("ADD", "ok") + served.count("ADD", "error") == 0
                      and (node.root / "cni-cache" / "c1-eth0.json").exists(), 10)
    assert wait_until(started.exists, 10)                      # the delegate is running now
    proc.kill()
    proc.wait(10)
    assert wait_until(lambda: len(node.pod_addrs(pod)) == 1, 10)   # the orphan finished its ADD
    # ... and the service has settled that request (counted it): the cache decision is made.
    assert wait_until(lambda: served.count("ADD", "ok") + served.count("ADD", "error") >= 1, 10)
    assert node.cache_entries() == ["c1-eth0.json"]           # kept for the runtime's DEL
    assert finish(front_end(node, conf, "DEL", "c1", pod))[0] == 0
    assert node.leftovers() == NOTHING


def test_an_environment_that_is_not_utf8_is_passed_on_unchanged(served):
    node = served.node
    pod = node.pod("p1")
    conf = node.runtime._conf(node.plugins()[0], None, None)
    rc, out, err = finish(front_end(node, conf, "ADD", "c1", pod, env_extra={b"RUNTIME_NOTE": b"caf\xe9"}))
    assert rc == 0, (out, err)
    assert served.count("ADD", "ok") == 1
    rc, out, err = finish(front_end(node, conf, "DEL", "c1", pod, env_extra={b"RUNTIME_NOTE": b"caf\xe9"}))
    assert rc == 0 and node.leftovers() == NOTHING, (out, err)


def test_a_runtime_that_ignores_sigchld_still_gets_the_delegates_real_exit_code(make_node, tmp_path):
    sock = str(tmp_path / "s.sock")
    node = make_node(cni_socket=sock)
    seen = {}

    plugins(node, tmp_path, fails="#!/bin/sh\nexit 1\n", dies="#!/bin/sh\nkill -TERM $$\n")

    def script(conn):
        wire.send(conn, wire.EXEC, b"fails", b"DEL", b"")
        seen["false"] = wire.recv(conn)
        wire.send(conn, wire.EXEC, b"dies", b"DEL", b"")
        seen["killed"] = wire.recv(conn)
        wire.send(conn, wire.DONE, b"0", b"", b"")

    fake = Scripted(sock, script)
    conf = node.runtime._conf(node.plugins()[0], None, None)
    proc = front_end(node, conf, "DEL", preexec_fn=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN))
    assert finish(proc)[0] == 0
    fake.close()
    assert seen["false"][1][0] == b"1"                           # not "0": a failed delegate stays failed
    assert seen["killed"][1][0] == b"-15"                         # as Python reports a signal death


def test_a_daemon_that_stopped_accepting_costs_seconds_not_a_hang(make_node, tmp_path):
    sock = str(tmp_path / "s.sock")
    node = make_node(cni_socket=sock)
    stuck = socket.socket(socket.AF_UNIX)
    stuck.bind(sock)
    stuck.listen(0)                                               # never accept()ed
    fillers = []
    for _ in range(4):                                            # fill the backlog
        c = socket.socket(socket.AF_UNIX)
        c.setblocking(False)
        try:
            c.connect(sock)
        except OSError:
            pass
        fillers.append(c)
    conf = node.runtime._conf(node.plugins()[0], None, None)
    started = time.monotonic()
    rc, out, err = finish(front_end(node, conf, "DEL"), timeout=60)
    assert rc == 0, (out, err)                                    # the Python plugin answered
    assert time.monotonic() - started < 30
    for c in fillers + [stuck]:
        c.close()


def test_a_service_that_accepts_but_never_answers_is_left_after_a_few_seconds(make_node, tmp_path):
    sock = str(tmp_path / "s.sock")
    node = make_node(cni_socket=sock)
    release = threading.Event()
    fake = Scripted(sock, lambda conn: release.wait(30))
    conf = node.runtime._conf(node.plugins()[0], None, None)
    rc, out, err = finish(front_end(node, conf, "DEL"), timeout=60)
    release.set()
    fake.close()
    assert rc == 0, (out, err)


@pytest.mark.parametrize("first", [b"Z", b"A"], ids=["unknown-message", "accepted-then-closed"])
def test_nothing_asked_yet_means_the_python_plugin_may_still_answer(make_node, tmp_path, first):
    sock = str(tmp_path / "s.sock")
    node = make_node(cni_socket=sock)
    fake = Scripted(sock, lambda conn: wire.send(conn, first))
    pod = node.pod("p1")
    rc, out, err = finish(front_end(node, node.runtime._conf(node.plugins()[0], None, None), "ADD", "c1", pod))
    fake.close()
    assert rc == 0 and node.pod_addrs(pod) == [out["ips"][0]["address"]], (out, err)


def test_the_service_hands_back_other_protocol_versions_and_data_dirs(served, tmp_path):
    node = served.node
    front = socket.socket(socket.AF_UNIX)
    front.connect(served.service.socket_path)
    wire.send(front, wire.REQUEST, b"1", b"{}", b"CNI_COMMAND=ADD")   # protocol 1: an older front end
    assert wire.recv(front) == (wire.FALLBACK, [])
    front.close()
    conf = dict(node.runtime._conf(node.plugins()[0], None, None), dataDir=str(tmp_path / "elsewhere"))
    pod = node.pod("p1")
    rc, out, _ = finish(front_end(node, conf, "ADD", "c1", pod))
    assert rc == 0 and served.count("ADD", "fallback") == 1     # the plugin did it, in its own dataDir
    assert os.listdir(tmp_path / "elsewhere") and node.cache_entries() == []
    assert finish(front_end(node, conf, "DEL", "c1", pod))[0] == 0


def test_a_socket_served_by_someone_other_than_root_is_not_trusted(make_node):
    import tempfile
    shared = tempfile.mkdtemp(prefix="ovt-sock-")
    os.chmod(shared, 0o777)
    sock = os.path.join(shared, "s.sock")
    nobody = subprocess.Popen(
        ["/usr/bin/python3", "-c", "import socket,sys\n"
         f"s=socket.socket(socket.AF_UNIX); s.bind({sock!r}); s.listen(1); print('up', flush=True)\n"
         "c,_=s.accept(); data=c.recv(65536); print('got', len(data), flush=True)"],
        user=65534, group=65534, stdout=subprocess.PIPE, text=True)
    try:
        assert nobody.stdout.readline().strip() == "up"
        node = make_node(cni_socket=sock)
        rc, out, err = finish(front_end(node, node.runtime._conf(node.plugins()[0], None, None), "DEL"))
        assert rc == 0, (out, err)                                   # the Python plugin answered
        assert nobody.stdout.readline().strip() == "got 0"           # and nothing was sent there
    finally:
        nobody.kill()
        nobody.wait(5)
        import shutil
        shutil.rmtree(shared, ignore_errors=True)
