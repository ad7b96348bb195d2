"""The metric names overlayd exports, read from a live exposition of its own registries."""
from __future__ import annotations

import re

from overlayd.metrics import Metrics

PROMETHEUS_OWN = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds", "scrape_samples_scraped"}


def exported_names() -> set[str]:
    """Every sample name the daemon's /metrics can carry: its Metrics, plus the policy engine's."""
    m = Metrics()
    from overlayd.policy.metrics import PolicyMetrics
    PolicyMetrics(m.registry)
    text = m.render().decode()
    names = set(re.findall(r"^([a-zA-Z_:][\w:]*)(?:\{|\s)", text, re.M))
    # Labelled counters with no child yet show only # TYPE lines: count those families too.
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        names.add(family + ("_total" if kind == "counter" and not family.endswith("_total") else ""))
        if kind == "histogram":
            names.update(family + s for s in ("_bucket", "_sum", "_count"))
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (identifiers that are not functions, keywords or labels)."""
    expr = re.sub(r'"[^"]*"', '""', expr)                         # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)                          # matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)                         # ranges
    words = re.findall(r"(?<![\w:.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr)
    keywords = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
    return {w for w in words if w.lower() not in keywords}
