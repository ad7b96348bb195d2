"""The Grafana dashboard loads, and every query names metrics overlayd exports."""
from __future__ import annotations

import json
import os

from .exported import PROMETHEUS_OWN, exported_names, metric_names

DASHBOARD = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                         "monitoring", "grafana-dashboard.json")


def test_the_dashboard_loads_and_every_query_names_an_exported_metric():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    assert dash["title"] == "overlayd" and dash["panels"]
    assert {i["name"] for i in dash["__inputs"]} == {"DS_PROMETHEUS"}
    exported = exported_names() | PROMETHEUS_OWN
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in dash["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names & exported, f"{panel['title']}: {target['expr']} names no metric we export"
            assert names <= exported, f"{panel['title']}: {sorted(names - exported)} are not exported"


def test_the_metric_name_reader_sees_what_a_query_selects():
    expr = 'histogram_quantile(0.99, sum by (node, le) (rate(overlayd_event_to_kernel_seconds_bucket{le!="1"}[5m])))'
    assert metric_names(expr) == {"overlayd_event_to_kernel_seconds_bucket"}
    assert metric_names('overlayd_ready == 0 or up{job=~".*overlayd.*"} == 0') == {"overlayd_ready", "up"}
    assert "overlayd_does_not_exist" not in exported_names()
