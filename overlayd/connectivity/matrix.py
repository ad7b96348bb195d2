"""The reachability matrix: results in, a table and a JSON document out. Pure."""
from __future__ import annotations

from typing import Iterable

from .plan import Check


def summary(results: Iterable[tuple[Check, bool, str]]) -> dict:
    rows = [{"src": c.src.name, "dst": c.dst, "kind": c.kind, "cross_node": c.cross_node, "ok": ok, "detail": d}
            for c, ok, d in results]
    by_kind: dict[str, list[int]] = {}
    for r in rows:
        good, total = by_kind.setdefault(r["kind"], [0, 0])
        by_kind[r["kind"]] = [good + r["ok"], total + 1]
    return {"ok": all(r["ok"] for r in rows) and bool(rows), "checks": rows,
            "by_kind": {k: {"ok": g, "total": t} for k, (g, t) in by_kind.items()}}


def render(doc: dict) -> str:
    rows = doc["checks"]
    srcs = list(dict.fromkeys(r["src"] for r in rows))
    targets = list(dict.fromkeys(r["dst"] for r in rows if r["dst"] != "service"))
    dsts = [s for s in srcs if s in targets] + [t for t in targets if t not in srcs] + (
        ["service"] if any(r["dst"] == "service" for r in rows) else [])
    cell = {(r["src"], r["dst"]): ("ok" if r["ok"] else "FAIL") for r in rows}
    width = max([len(x) for x in srcs + dsts] + [4]) + 2
    lines = ["connectivity (row reaches column over HTTP; '-': not probed):",
             " " * width + "".join(d.ljust(width) for d in dsts)]
    for s in srcs:
        lines.append(s.ljust(width) + "".join(cell.get((s, d), "-").ljust(width) for d in dsts))
    lines.append("; ".join(f"{k}: {v['ok']}/{v['total']}" for k, v in doc["by_kind"].items()))
    failed = [r for r in rows if not r["ok"]]
    lines += [f"FAIL {r['src']} -> {r['dst']} ({r['kind']}): {r['detail']}" for r in failed]
    return "\n".join(lines)
