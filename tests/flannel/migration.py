"""In-place migration between flanneld and overlayd on a lab node, under ping."""
import re
import signal
import subprocess

from tests.e2e.conftest import wait_until


def pinger(src, dst_ip, count):
    return subprocess.Popen(["ip", "netns", "exec", src.netns, "ping", "-c", str(count), "-i", "0.02", "-W", "1",
                             "-q", dst_ip], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


# The line each daemon logs once it holds its lease (flanneld: after writing the subnet file).
READY = {"overlayd": "leased ", "flanneld": "flannel is ready"}


def log_count(node, daemon):
    try:
        with open(node.log_file) as f:
            return f.read().count(READY[daemon])
    except FileNotFoundError:
        return 0


def switch_daemon(lab, node, daemon):
    """Stop the node's daemon and start the other kind on the same node, files and device; return
    once the new daemon holds its lease and runs."""
    lab.stop_daemon(node, signal.SIGTERM)
    lab.set_daemon(node, daemon)
    before = log_count(node, daemon)
    lab.start_daemon(node)
    assert wait_until(lambda: log_count(node, daemon) > before or not lab.daemon_alive(node), 30)
    assert lab.daemon_alive(node), open(node.log_file).read()[-2000:]


def loss(ping_output: str, count: int) -> int:
    """Packets lost by a finished `ping -c count -q` (every packet must have been sent)."""
    sent, got = map(int, re.search(r"(\d+) packets transmitted, (\d+) received", ping_output).groups())
    assert sent == count, ping_output
    return sent - got
