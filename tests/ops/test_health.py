"""/healthz, /readyz and /metrics over real HTTP on loopback, parsed with prometheus_client's parser."""
from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from overlayd.health import HealthError, Heartbeat, Readiness, Status
from overlayd.health_server import HealthServer
from overlayd.metrics import Metrics


class FakeClock:
    """Only the heartbeat's and lease's notion of time; the HTTP traffic is real."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


@pytest.fixture
def served(cleanup):
    clock = FakeClock()
    heartbeat = Heartbeat(max_age=30, clock=clock)
    readiness = Readiness("subnet file written", "rules in place")
    metrics = Metrics(clock=clock)
    server = HealthServer("127.0.0.1", 0, liveness=heartbeat, readiness=readiness,
                          registry=metrics.registry).start()
    cleanup.push("health server", server.close)
    return clock, heartbeat, readiness, metrics, server


def test_port_zero_serves_on_a_free_port_and_close_releases_it(served):
    *_, server = served
    assert server.port > 0
    assert get(server.url + "/healthz")[0] == 200
    server.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    server.close()   # twice is fine


def test_healthz_follows_the_heartbeat(served):
    clock, heartbeat, _, _, server = served
    code, ctype, body = get(server.url + "/healthz")
    assert code == 200 and body.startswith("ok") and ctype.startswith("text/plain")
    clock.now += 31
    code, _, body = get(server.url + "/healthz")
    assert code == 503 and "stalled" in body and "31.0s" in body
    heartbeat.beat()
    assert get(server.url + "/healthz")[0] == 200


def test_readyz_says_what_is_missing_until_everything_is_in_place(served):
    _, _, readiness, _, server = served
    code, _, body = get(server.url + "/readyz")
    assert code == 503 and "subnet file written" in body and "rules in place" in body
    readiness.set("subnet file written")
    code, _, body = get(server.url + "/readyz")
    assert code == 503 and "subnet file" not in body and "rules in place" in body
    readiness.set("rules in place")
    assert get(server.url + "/readyz")[:3:2] == (200, "ready\n")
    readiness.set("rules in place", False, "nft failed: table busy")
    code, _, body = get(server.url + "/readyz")
    assert code == 503 and "nft failed: table busy" in body


def test_a_failing_readiness_callback_is_not_ready_and_the_server_keeps_serving(cleanup):
    def broken():
        raise RuntimeError("etcd unreachable")

    server = HealthServer("127.0.0.1", 0, liveness=lambda: Status(True, "ok"), readiness=broken,
                          registry=Metrics().registry).start()
    cleanup.push("health server", server.close)
    code, _, body = get(server.url + "/readyz")
    assert code == 503 and "etcd unreachable" in body
    assert get(server.url + "/healthz")[0] == 200
    assert get(server.url + "/nope")[0] == 404


def test_metrics_are_prometheus_text_with_the_daemons_figures(served):
    clock, _, _, metrics, server = served
    metrics.peers.set(3)
    metrics.set_lease_expiry(clock.now + 86400)
    clock.now += 400
    metrics.reconciled(0.004)
    metrics.reconciled(0.5, ok=False)
    metrics.added("arp", 3)
    metrics.added("fdb", 3)
    metrics.added("route", 3)
    metrics.removed("route")
    metrics.netlink_errors.inc()
    metrics.watch_restarts.inc(2)
    for latency in (0.0008, 0.015, 1.5):
        metrics.event_to_kernel.observe(latency)

    code, ctype, body = get(server.url + "/metrics")
    assert code == 200 and ctype.startswith("text/plain; version=")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(body) for s in fam.samples}

    def value(name, **labels):
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("overlayd_peers") == 3
    assert value("overlayd_lease_ttl_seconds") == 86000
    assert value("overlayd_reconcile_runs_total", result="ok") == 1
    assert value("overlayd_reconcile_runs_total", result="error") == 1
    assert value("overlayd_reconcile_duration_seconds_count") == 2
    assert value("overlayd_reconcile_duration_seconds_sum") == pytest.approx(0.504)
    assert [value("overlayd_entries_added_total", kind=k) for k in ("arp", "fdb", "route")] == [3, 3, 3]
    assert value("overlayd_entries_removed_total", kind="route") == 1
    assert value("overlayd_entries_removed_total", kind="arp") == 0
    assert value("overlayd_netlink_errors_total") == 1
    assert value("overlayd_watch_restarts_total") == 2
    # 1 ms .. 10 s buckets: 0.8 ms lands in the first, 15 ms by 20 ms, 1.5 s by 2 s, all by 10 s.
    assert value("overlayd_event_to_kernel_seconds_bucket", le="0.001") == 1
    assert value("overlayd_event_to_kernel_seconds_bucket", le="0.02") == 2
    assert value("overlayd_event_to_kernel_seconds_bucket", le="2.0") == 3
    assert value("overlayd_event_to_kernel_seconds_bucket", le="10.0") == 3
    assert value("overlayd_event_to_kernel_seconds_count") == 3
    # Only our metrics: a registry of our own, not the process-global one (no python_gc_*, process_*).
    assert {name for name, _ in samples} and all(name.startswith("overlayd_") for name, _ in samples)

    with pytest.raises(ValueError, match="arp, fdb, route"):
        metrics.added("neigh")


def test_lease_ttl_is_zero_without_a_lease_and_never_negative():
    clock = FakeClock()
    metrics = Metrics(clock=clock)
    text = metrics.render().decode()
    assert "overlayd_lease_ttl_seconds 0.0" in text
    metrics.set_lease_expiry(clock.now + 5)
    clock.now += 10
    assert "overlayd_lease_ttl_seconds 0.0" in metrics.render().decode()


def test_concurrent_scrapes_all_succeed(served):
    *_, server = served
    codes = []

    def scrape():
        codes.append(get(server.url + "/metrics")[0])

    threads = [threading.Thread(target=scrape) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert codes == [200] * 8


def test_ipv6_loopback_works(cleanup):
    server = HealthServer("::1", 0, liveness=lambda: True, readiness=lambda: (False, "no lease yet"),
                          registry=Metrics().registry).start()
    cleanup.push("health server", server.close)
    assert server.url.startswith("http://[::1]:")
    assert get(server.url + "/readyz") == (503, "text/plain; charset=utf-8", "no lease yet\n")


@pytest.mark.parametrize("ip,port,needle", [
    ("localhost", 0, "--healthz-ip"),
    ("127.0.0.1", 70000, "--healthz-port"),
    ("127.0.0.1", -1, "--healthz-port"),
])
def test_bad_flags_are_refused_naming_the_flag(ip, port, needle):
    with pytest.raises(HealthError, match=needle):
        HealthServer(ip, port, liveness=lambda: True, readiness=lambda: True, registry=Metrics().registry)


def test_a_port_in_use_is_a_clear_error(served):
    *_, server = served
    with pytest.raises(HealthError, match=f"port {server.port}.*--healthz-port.*in use"):
        HealthServer("127.0.0.1", server.port, liveness=lambda: True, readiness=lambda: True,
                     registry=Metrics().registry)
