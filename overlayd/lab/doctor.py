"""`overlayd lab doctor`: run `overlayd doctor` on every lab node, as an operator would on each node.

Each node's doctor runs inside the node's namespace with that node's daemon flags (the lab's
daemon_command), the node's CNI conf dir and the lab's CNI bin dir, all nodes at once.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import subprocess

from ..doctor.report import EXIT_CODES, from_json, render_text, worst
from .netns import LabError


def command(lab, node, *extra: str) -> list[str]:
    if getattr(node, "daemon", "overlayd") == "flanneld":
        # A node running the real flanneld: doctor checks its datapath against the same leases (the
        # formats are flannel's); flanneld has no health server or CNI service of ours.
        daemon = lab.daemon_command(dataclasses.replace(node, daemon="overlayd")) + ["--healthz-port=0",
                                                                                      "--cni-socket="]
    else:
        daemon = lab.daemon_command(node)
    return ["ip", "netns", "exec", node.netns, daemon[0], "doctor", *daemon[1:],
            f"--cni-conf-dir={node.cni_conf_dir}", f"--cni-bin-dir={lab.cni_bin_dir}", *extra]


def run_node(lab, node, *extra: str, timeout: float = 120) -> dict:
    """One node's report (the JSON form)."""
    proc = subprocess.run(command(lab, node, "--json", *extra), capture_output=True, text=True,
                          env=lab.daemon_env(node), timeout=timeout)
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise LabError(f"overlayd doctor on {node.name} failed ({proc.returncode}): "
                       f"{proc.stderr.strip()[-2000:]}") from None


def run(lab, *extra: str) -> dict:
    """{"lab", "severity", "exit_code", "nodes": {name: report}} for every node of the lab."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(lab.nodes)) or 1) as pool:
        reports = dict(zip((n.name for n in lab.nodes), pool.map(lambda n: run_node(lab, n, *extra), lab.nodes)))
    severity = worst(r["severity"] for r in reports.values())
    return {"lab": lab.name, "severity": severity, "exit_code": EXIT_CODES[severity], "nodes": reports}


def render(result: dict, *, verbose: bool = False) -> str:
    parts = []
    for name, doc in result["nodes"].items():
        text = render_text(from_json(doc), verbose=verbose)
        parts.append(text.replace(f"overlayd doctor on {doc['node']}:", f"node {name}:", 1))
    parts.append(f"lab {result['lab']}: {result['severity']}; exit {result['exit_code']}")
    return "\n\n".join(parts)
