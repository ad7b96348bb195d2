"""doctor's pure core: checks over plain facts, the report's JSON interface and exit codes.

The lab tests (tests/doctor/) break each thing for real; these pin what the lab cannot easily
show: a daemon that is not ready or gone, policy status from metrics, config parsing corners,
and the JSON shape scripts rely on.
"""
from __future__ import annotations

import dataclasses
import ipaddress

from overlayd.doctor import checks_host, checks_store
from overlayd.doctor.core import diagnose
from overlayd.doctor.facts import (CniFacts, ConfFile, DoctorSettings, HealthFacts, KernelFacts, NodeFacts,
                                   StoreFacts)
from overlayd.doctor.report import CHECKS, REPORT_VERSION, Finding, Report, from_json
from subnet_lease.config import parse_net_config
from subnet_lease.lease import Lease


def facts(**changes) -> NodeFacts:
    own = Lease(subnet=ipaddress.ip_network("10.244.3.0/24"), public_ip=ipaddress.ip_address("192.0.2.1"),
                backend_data={"VNI": 1, "VtepMAC": "0a:00:00:00:00:01"}, lease_id=0x1f, ttl=86000)
    base = NodeFacts(
        settings=DoctorSettings(node="n1", health_url="http://127.0.0.1:8471"),
        store=StoreFacts("etcd http://192.0.2.254:2379", config=parse_net_config('{"Network": "10.244.0.0/16"}'),
                         leases=(own,), own=own, own_by="PublicIP 192.0.2.1"),
        subnet_env={"FLANNEL_NETWORK": "10.244.0.0/16", "FLANNEL_SUBNET": "10.244.3.1/24", "FLANNEL_MTU": "1450",
                    "FLANNEL_IPMASQ": "false"},
        kernel=KernelFacts(), cni=CniFacts("/etc/cni/net.d"),
        health=HealthFacts("http://127.0.0.1:8471", (200, "ok"), (200, "ok"), "overlayd_peers 0.0\n"))
    return dataclasses.replace(base, **changes)


def test_a_daemon_that_is_not_ready_is_an_error_quoting_its_reason():
    f = facts(health=HealthFacts("http://127.0.0.1:8471", (200, "ok"), (503, "not ready: waiting for the lease store")))
    [found] = checks_store.daemon(f)
    assert found.severity == "error" and "waiting for the lease store" in found.summary
    assert found.evidence[0].source == "http://127.0.0.1:8471/readyz"


def test_a_daemon_that_does_not_answer_is_an_error():
    [found] = checks_store.daemon(facts(health=HealthFacts("http://127.0.0.1:8471", error="Connection refused")))
    assert found.severity == "error" and "does not answer" in found.summary


def test_policy_not_enabled_failing_and_fine_from_the_metrics():
    assert checks_store.policy(facts())[0].summary.startswith("not enabled")
    failing = facts(health=HealthFacts("u", (200, ""), (200, ""), 'overlayd_policy_policies 2.0\n'
                                       'overlayd_policy_nft_failures_total 3.0\noverlayd_policy_bad_objects 0.0\n'))
    [found] = checks_store.policy(failing)
    assert found.severity == "warning" and "3 nftables policy transaction(s) failed" in found.summary
    fine = facts(health=HealthFacts("u", (200, ""), (200, ""), "overlayd_policy_policies 2.0\n"
                                    "overlayd_policy_nft_failures_total 0.0\n"))
    assert checks_store.policy(fine)[0].severity == "ok"


def test_cni_configs_libcni_would_refuse_are_named_with_the_reason():
    cases = {'{"name": "x"}': "neither `plugins` nor `type`", "[]": "not a JSON object",
             '{"plugins": [], "name": "x"}': "`plugins` is not a non-empty list",
             '{"plugins": [{"type": "bridge"}]}': "no `name`", "{": "not JSON"}
    for text, why in cases.items():
        doc, error = checks_host.parse_conf(ConfFile("x.conf", text))
        assert doc is None and error.startswith(why), (text, error)
    doc, error = checks_host.parse_conf(ConfFile("x.conf", '{"name": "n", "type": "overlay"}'))
    assert error is None and checks_host.is_ours(doc)


def test_the_binaries_a_conflist_needs_follow_its_delegate_and_ipam():
    doc = {"name": "n", "plugins": [{"type": "overlay", "delegate": {"type": "ipvlan"}, "ipam": {"type": "dhcp"}},
                                    {"type": "portmap"}]}
    assert [n for n, _ in checks_host.needed_binaries(doc)] == ["overlay", "ipvlan", "dhcp", "portmap"]
    default = {"name": "n", "plugins": [{"type": "overlay"}]}
    assert [n for n, _ in checks_host.needed_binaries(default)] == ["overlay", "bridge", "host-local"]


def test_the_json_report_keeps_its_keys_and_round_trips():
    report = diagnose(facts())
    doc = report.to_json()
    assert set(doc) == {"version", "node", "severity", "exit_code", "checks"} and doc["version"] == REPORT_VERSION
    assert [c["check"] for c in doc["checks"]] == [c for c in CHECKS if c in {x["check"] for x in doc["checks"]}]
    for check in doc["checks"]:
        assert set(check) == {"check", "severity", "findings"}
        for f in check["findings"]:
            assert set(f) == {"severity", "summary", "fix", "evidence"}
            assert all(set(e) == {"source", "detail"} for e in f["evidence"])
    assert from_json(doc) == report


def test_exit_code_follows_the_worst_severity():
    def report(*severities):
        return Report("n", tuple(Finding("daemon", s, s) for s in severities))
    assert report().exit_code == 0 and report("ok", "info").exit_code == 0
    assert report("ok", "warning").exit_code == 1 and report("warning", "error", "info").exit_code == 2


def test_subnet_env_for_another_subnet_is_named_with_what_the_lease_wants():
    env = {"FLANNEL_NETWORK": "10.244.0.0/16", "FLANNEL_SUBNET": "10.244.9.1/24", "FLANNEL_MTU": "1450",
           "FLANNEL_IPMASQ": "false"}
    [found] = checks_store.subnet_env(facts(subnet_env=env))
    assert found.severity == "error" and "FLANNEL_SUBNET=10.244.9.1/24 (want 10.244.3.1/24)" in found.summary
    [gone] = checks_store.subnet_env(facts(subnet_env=None))
    assert gone.severity == "error" and "does not exist" in gone.summary
