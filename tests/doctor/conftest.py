"""A lab per test module, doctor run on a node, and the 'names it and only it' assertion.

The labs run the daemons as the manifests do (--ip-masq) and with a long --resync, so a broken
thing stays broken while doctor looks (the daemon would repair most of them at its next resync).
"""
from __future__ import annotations

import time

from overlayd.doctor.report import Report, from_json
from overlayd.lab import doctor as lab_doctor
from overlayd.lab.cluster import Lab

DAEMON_ARGS = ("--ip-masq", "--resync=3600")


def make_lab(*extra_args: str, nodes: int = 2) -> Lab:
    lab = Lab(daemon_args=DAEMON_ARGS + extra_args)
    try:
        return lab.up(nodes, 1)
    except BaseException:
        lab.down()
        raise


def diagnose(lab: Lab, node: str = "n1") -> Report:
    return from_json(lab_doctor.run_node(lab, lab.node(node), "--probe-timeout=1", "--store-timeout=60"))


def failing(report: Report) -> dict[str, list]:
    return {name: [f for f in found if f.severity in ("warning", "error")]
            for name, found in report.by_check().items() if name in report.failing()}


class Found(list):
    """The failing check's findings, with the whole report at .report."""

    def __init__(self, findings, report: Report):
        super().__init__(findings)
        self.report = report


def only(lab: Lab, check: str, node: str = "n1", severity: str | None = None):
    """Doctor on `node` names `check` (with warning or error) and nothing else; its findings."""
    report = diagnose(lab, node)
    bad = failing(report)
    assert set(bad) == {check}, f"expected only {check!r} to fail, got {sorted(bad)}:\n" + "\n".join(
        f"  {f.check} {f.severity}: {f.summary}" for fs in bad.values() for f in fs)
    if severity:
        assert {f.severity for f in bad[check]} == {severity}, bad[check]
    assert report.exit_code == (2 if any(f.severity == "error" for f in bad[check]) else 1)
    return Found(bad[check], report)


def clean(lab: Lab, node: str = "n1", timeout: float = 30) -> Report:
    """Wait until doctor on `node` finds nothing at warning or worse (after a repair)."""
    deadline = time.monotonic() + timeout
    while True:
        report = diagnose(lab, node)
        if not report.failing() or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not report.failing(), {k: [f.summary for f in v] for k, v in failing(report).items()}
    assert report.exit_code == 0
    return report


def text(findings) -> str:
    return "\n".join(f.summary + "\n" + "\n".join(f"{e.source}: {e.detail}" for e in f.evidence)
                     for f in findings)
