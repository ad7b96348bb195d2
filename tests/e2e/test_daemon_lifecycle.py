"""The daemon process itself: start-up while the lease store is down, signals, flags."""
import os
import signal
import stat
import subprocess
import time

import pytest

from overlayd.lab.cluster import bin_dir
from overlayd.lab.etcd import free_port
from overlayd.lab.netns import ip, run

pytestmark = pytest.mark.e2e


def test_unreachable_etcd_means_not_ready_and_retrying_not_a_crash_loop(make_netns, tmp_path):
    ns = make_netns("node")
    ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", "eth0p", "netns", ns)
    ip("addr", "add", "192.0.2.1/24", "dev", "eth0", netns=ns)
    ip("link", "set", "eth0", "up", netns=ns)
    ip("link", "set", "eth0p", "up", netns=ns)
    ip("route", "add", "default", "via", "192.0.2.254", netns=ns)
    port = free_port()
    log = open(tmp_path / "overlayd.log", "w")
    proc = subprocess.Popen(["ip", "netns", "exec", ns, os.path.join(bin_dir(), "overlayd"),
                             f"--etcd-endpoints=http://127.0.0.1:{port}", f"--subnet-file={tmp_path}/subnet.env",
                             "--healthz-ip=127.0.0.1", "--healthz-port=8471", f"--cni-socket={tmp_path}/cni.sock",
                             f"--cni-data-dir={tmp_path}/cni"], stdout=log, stderr=subprocess.STDOUT)
    try:
        def get(path):
            out = run(["/usr/bin/python3", "-c", "import urllib.request,urllib.error\n"
                       f"try: r=urllib.request.urlopen('http://127.0.0.1:8471{path}',timeout=3); print(r.status, r.read().decode())\n"
                       "except urllib.error.HTTPError as e: print(e.code, e.read().decode())\n"
                       "except OSError as e: print(0, e)"], netns=ns).stdout
            code, _, body = out.partition(" ")
            return int(code), body

        deadline = time.monotonic() + 20
        while get("/healthz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        # Still trying, not exited: it has failed to reach etcd and retried, more than once.
        deadline = time.monotonic() + 30
        while open(tmp_path / "overlayd.log").read().count("lease store unavailable") < 2 \
                and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert open(tmp_path / "overlayd.log").read().count("lease store unavailable") >= 2
        assert proc.poll() is None, open(tmp_path / "overlayd.log").read()
        assert get("/healthz")[0] == 200
        # The health server and the CNI service wait for the datapath to be programmed, but not
        # for a store that cannot be reached: pods still get served from the last subnet.env.
        assert stat.S_ISSOCK(os.stat(tmp_path / "cni.sock").st_mode)
        code, body = get("/readyz")
        assert code == 503 and "subnet file written" in body
        assert not (tmp_path / "subnet.env").exists()
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        print(f"stopped {time.monotonic() - started:.2f}s after SIGTERM")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert "retrying" in open(tmp_path / "overlayd.log").read()


def test_bad_flags_are_clear_errors_and_help_lists_flags_and_subcommands():
    exe = os.path.join(bin_dir(), "overlayd")
    bad = subprocess.run([exe, "--iptables-forward-rules=maybe"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "--iptables-forward-rules" in bad.stderr
    helptext = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=30).stdout
    for flag in ("--etcd-endpoints", "--etcd-prefix", "--iface", "--public-ip", "--subnet-file", "--ip-masq",
                 "--kube-subnet-mgr", "--healthz-port", "overlayd lab", "overlayd leases"):
        assert flag in helptext


def test_a_burst_of_sigterms_still_exits_promptly(make_lab):
    """Kubelet, supervisors and `lab down` may signal more than once; a second SIGTERM arriving
    while the loop held a lock once deadlocked the daemon until SIGKILL. (A SIGTERM that lands
    during interpreter finalization ends the process by the default action: exit status -15.)"""
    lab = make_lab(2, 0)
    node = lab.node("n1")
    for round_ in range(6):
        assert lab.wait_for_subnet_file(node, 30)
        proc = lab._procs[node.pid]
        time.sleep(0.2 + 0.1 * round_)
        for _ in range(5):
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.002 * round_)
        assert proc.wait(10) in (0, -signal.SIGTERM), open(node.log_file).read()[-3000:]
        assert "Traceback" not in open(node.log_file).read()
        node.pid = None
        lab.start_daemon(node)
    assert lab.wait_converged(30)
