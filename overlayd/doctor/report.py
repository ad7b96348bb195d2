"""Findings and the report: plain data, the text and JSON renderings, the exit code.

A check yields one or more findings. A finding has a severity, a one-line summary, the evidence
(what was read, from where) and the fix. A check that finds nothing wrong yields one `ok`
finding whose evidence says what it looked at, so a clean report still shows its work.

The JSON form is an interface (docs/operations.md documents it; REPORT_VERSION changes when a
key changes meaning or goes away):

    {"version": 1, "node": str, "severity": "ok|info|warning|error", "exit_code": 0|1|2,
     "checks": [{"check": str, "severity": str,
                 "findings": [{"severity": str, "summary": str, "fix": str,
                               "evidence": [{"source": str, "detail": str}]}]}]}
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Optional

REPORT_VERSION = 1
SEVERITIES = ("ok", "info", "warning", "error")
EXIT_CODES = {"ok": 0, "info": 0, "warning": 1, "error": 2}

# Every check, in report order. These names are part of the JSON interface.
CHECKS = ("daemon", "lease-store", "lease-ttl", "subnet-env", "device", "entries", "mtu",
          "reachability", "cni-bin", "cni-conf", "cni-service", "sysctls", "tx-checksum",
          "masquerade", "policy")


@dataclasses.dataclass(frozen=True)
class Evidence:
    source: str          # where it was read: a file, a netlink dump, a URL, a sysctl
    detail: str          # what was there


@dataclasses.dataclass(frozen=True)
class Finding:
    check: str
    severity: str
    summary: str
    evidence: tuple[Evidence, ...] = ()
    fix: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} must be one of {SEVERITIES}")
        if self.check not in CHECKS:
            raise ValueError(f"check {self.check!r} must be one of {CHECKS}")


def ev(source: str, detail: object) -> Evidence:
    return Evidence(source, str(detail))


def worst(severities: Iterable[str]) -> str:
    return max(severities, key=SEVERITIES.index, default="ok")


@dataclasses.dataclass(frozen=True)
class Report:
    node: str
    findings: tuple[Finding, ...]

    @property
    def severity(self) -> str:
        return worst(f.severity for f in self.findings)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.severity]

    def by_check(self) -> dict[str, list[Finding]]:
        out: dict[str, list[Finding]] = {}
        for name in CHECKS:
            hits = [f for f in self.findings if f.check == name]
            if hits:
                out[name] = hits
        return out

    def failing(self, at_least: str = "warning") -> set[str]:
        """Names of the checks with a finding of this severity or worse."""
        floor = SEVERITIES.index(at_least)
        return {f.check for f in self.findings if SEVERITIES.index(f.severity) >= floor}

    def to_json(self) -> dict:
        return {
            "version": REPORT_VERSION, "node": self.node, "severity": self.severity,
            "exit_code": self.exit_code,
            "checks": [{"check": name, "severity": worst(f.severity for f in found),
                        "findings": [{"severity": f.severity, "summary": f.summary, "fix": f.fix,
                                      "evidence": [dataclasses.asdict(e) for e in f.evidence]}
                                     for f in found]}
                       for name, found in self.by_check().items()],
        }


def from_json(doc: dict) -> Report:
    findings = []
    for check in doc["checks"]:
        for f in check["findings"]:
            findings.append(Finding(check["check"], f["severity"], f["summary"],
                                    tuple(Evidence(**e) for e in f["evidence"]), f["fix"]))
    return Report(doc["node"], tuple(findings))


_MARK = {"ok": "ok  ", "info": "info", "warning": "WARN", "error": "FAIL"}


def render_text(report: Report, *, verbose: bool = False) -> str:
    """One line per finding; evidence and fix under every finding that is not ok (all with verbose)."""
    lines = [f"overlayd doctor on {report.node}: {report.severity}"]
    for name, found in report.by_check().items():
        for f in found:
            lines.append(f"[{_MARK[f.severity]}] {name}: {f.summary}")
            if f.severity in ("warning", "error") or verbose:
                lines += [f"         {e.source}: {e.detail}" for e in f.evidence]
                if f.fix:
                    lines.append(f"         fix: {f.fix}")
    counts = {s: sum(1 for f in report.findings if f.severity == s) for s in SEVERITIES}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n) + f"; exit {report.exit_code}")
    return "\n".join(lines)


def ok(check: str, summary: str, *evidence: Evidence) -> Finding:
    return Finding(check, "ok", summary, tuple(evidence))


def finding(check: str, severity: str, summary: str, fix: str, *evidence: Evidence,
            more: Optional[Iterable[Evidence]] = None) -> Finding:
    return Finding(check, severity, summary, tuple(evidence) + tuple(more or ()), fix)
