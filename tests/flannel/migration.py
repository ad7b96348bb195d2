"""In-place migration between flanneld and overlayd on a lab node, under ping."""
import re
import signal
import subprocess
import threading

from tests.e2e.conftest import wait_until


class PingStream:
    """A 50 pps ping from a pod, in back-to-back 1 s batches (`ping -c 50 -i 0.02`) until stop():
    however long the switches take, each batch ends normally (no packet in flight is cut off and
    counted lost), so the totals are exact."""

    BATCH = 50

    def __init__(self, src, dst_ip):
        self.cmd = ["ip", "netns", "exec", src.netns, "ping", "-c", str(self.BATCH), "-i", "0.02", "-W", "1", "-q",
                    dst_ip]
        self.sent = self.received = 0
        self.outputs = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            out = subprocess.run(self.cmd, capture_output=True, text=True).stdout
            sent, got = map(int, re.search(r"(\d+) packets transmitted, (\d+) received", out).groups())
            self.sent += sent
            self.received += got
            if got < sent:
                self.outputs.append(out)

    def stop(self) -> tuple:
        """(sent, received) over every batch, once the running batch has finished."""
        self._stop.set()
        self._thread.join(30)
        return self.sent, self.received


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
