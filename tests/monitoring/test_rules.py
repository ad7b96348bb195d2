"""The alert rules: one file for Prometheus, the same rules as a PrometheusRule, unit-tested by promtool."""
from __future__ import annotations

import os
import subprocess

import yaml

from .exported import PROMETHEUS_OWN, exported_names, metric_names

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MONITORING = os.path.join(REPO, "monitoring")
RULES = os.path.join(MONITORING, "overlayd-rules.yml")
PROMETHEUS_RULE = os.path.join(MONITORING, "prometheusrule.yaml")
ALERTS = {"OverlaydNodeNotReady", "OverlaydLeaseStoreUnreachable", "OverlaydEntriesDrifting",
          "OverlaydCNIErrorRate", "OverlaydSlowConvergence", "OverlaydPolicySyncFailing"}


def _rules() -> list[dict]:
    return [r for g in yaml.safe_load(open(RULES))["groups"] for r in g["rules"]]


def test_promtool_unit_tests_fire_and_stay_silent_as_written():
    proc = subprocess.run(["promtool", "test", "rules", os.path.join(MONITORING, "tests", "overlayd-rules.test.yml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tested = yaml.safe_load(open(os.path.join(MONITORING, "tests", "overlayd-rules.test.yml")))["tests"]
    firing = {t["alertname"] for c in tested for t in c["alert_rule_test"] if t["exp_alerts"]}
    assert firing == ALERTS, "every alert has a case where it fires"
    # ... and one where it stays silent: an empty expectation, or an input series the expectation leaves out
    for case in tested:
        fired = {tuple(sorted(a["exp_labels"].items())) for t in case["alert_rule_test"] for a in t["exp_alerts"]}
        instances = {s["series"].split('instance="')[1].split('"')[0] for s in case["input_series"]}
        quiet = [t for t in case["alert_rule_test"] if not t["exp_alerts"]]
        assert quiet or len(instances) > len({dict(f)["instance"] for f in fired}), case["name"]


def test_promtool_checks_the_rules_file():
    proc = subprocess.run(["promtool", "check", "rules", RULES], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_prometheusrule_holds_exactly_the_rules_of_the_plain_file():
    manifest = yaml.safe_load(open(PROMETHEUS_RULE))
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1" and manifest["kind"] == "PrometheusRule"
    assert manifest["spec"] == yaml.safe_load(open(RULES))


def test_the_alerts_the_issue_names_exist_on_metrics_we_export():
    rules = _rules()
    assert {r["alert"] for r in rules} == ALERTS
    exported = exported_names() | PROMETHEUS_OWN
    for rule in rules:
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported, f"{rule['alert']} uses {names - exported}, which overlayd does not export"
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
