"""Test helpers shared by the lease-layer tests: waiting for a condition, collecting a watch."""
import contextlib
import threading
import time


def wait_for(predicate, timeout=15.0, what="condition"):
    """The predicate's first truthy value; AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Collector:
    """Runs backend.watch() in a thread and collects its events as `shape(event)` tuples."""

    def __init__(self, backend, revision, shape=lambda e: (e.kind, e.lease)):
        self.events = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._shape = shape
        self._gen = backend.watch(revision, self.stop)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        for batch in self._gen:
            with self._lock:
                self.events.extend(self._shape(e) for e in batch)

    def seen(self):
        with self._lock:
            return list(self.events)

    def close(self):
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "watch did not return after stop was set"


@contextlib.contextmanager
def kube_backends(tmp_path, **connection):
    """make(**KubeSettings overrides) -> a KubeLeaseBackend for node-1 on `connection` (kubeconfig=
    or api_url=), with short timeouts and its own net-conf.json; all closed on exit."""
    from subnet_lease.kube_backend import KubeLeaseBackend, KubeSettings
    conf = tmp_path / "net-conf.json"
    conf.write_text('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}')
    made = []

    def make(**overrides) -> KubeLeaseBackend:
        settings = dict(node_name="node-1", net_config_path=str(conf), podcidr_poll_interval=0.2,
                        watch_timeout=5, backoff_initial=0.05, backoff_max=0.5, **connection)
        settings.update(overrides)
        b = KubeLeaseBackend(KubeSettings(**settings))
        made.append(b)
        return b

    try:
        yield make
    finally:
        for b in made:
            b.close()
