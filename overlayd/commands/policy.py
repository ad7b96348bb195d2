"""`overlayd policy explain|log`: why can't A reach B, and which packets were denied."""
from __future__ import annotations

import argparse
import json
import os
import sys

HELP = "NetworkPolicy: explain a verdict between two pods, or show denied packets (nflog)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    e = sub.add_parser("explain", help="allowed or denied, and by which policies")
    e.add_argument("--from", dest="src", required=True, metavar="NS/POD", help="the client pod")
    e.add_argument("--to", dest="dst", required=True, metavar="NS/POD", help="the server pod")
    e.add_argument("--port", required=True, metavar="PORT/PROTO", help="e.g. 80/tcp, 53/udp, 9000/sctp")
    e.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG") or "",
                   help="kubeconfig (default: $KUBECONFIG, else in-cluster)")
    e.add_argument("--kube-api-url", default="", help="API server URL")
    e.add_argument("--json", action="store_true", help="print the verdict as JSON")
    lg = sub.add_parser("log", help="print denied packets from the daemon's nflog group, as they come "
                                    "(run it in the node's network namespace)")
    lg.add_argument("--group", type=int, required=True, metavar="N",
                    help="the daemon's --network-policy-log-group")
    lg.add_argument("--count", type=int, default=0, help="stop after this many packets (0: never)")
    lg.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                    help="stop after this long without a denied packet")
    lg.add_argument("--json", action="store_true", help="one JSON object a line")


def _pod_ref(text: str, flag: str) -> tuple[str, str]:
    ns, _, name = text.partition("/")
    if not ns or not name or "/" in name:
        raise ValueError(f"{flag} {text!r} must be NAMESPACE/POD, e.g. default/web")
    return ns, name


def _port(text: str) -> tuple[int, str]:
    port, _, proto = text.partition("/")
    proto = (proto or "tcp").upper()
    if not port.isdigit() or not 1 <= int(port) <= 65535 or proto not in ("TCP", "UDP", "SCTP"):
        raise ValueError(f"--port {text!r} must be PORT/PROTO with PROTO tcp, udp or sctp, e.g. 80/tcp")
    return int(port), proto


def explain_text(v: dict) -> str:
    head = f"{v['from']} -> {v['to']} {v['protocol']} {v['port']}: {'ALLOWED' if v['allowed'] else 'DENIED'}"
    if "reason" in v:
        return f"{head}\n  {v['reason']}"
    lines = [head + f"   ({v['src_ip']} -> {v['dst_ip']})"]
    for d, who in (("egress", v["from"]), ("ingress", v["to"])):
        x = v[d]
        if not x["enforced"]:
            lines.append(f"  {d} at {who}: not policed (host network, or no address)")
        elif not x["isolated"]:
            lines.append(f"  {d} at {who}: not isolated (no policy selects it for {d})")
        elif x["allowed"]:
            lines.append(f"  {d} at {who}: allowed by {', '.join(x['allowed_by'])}"
                         f" (isolated by {', '.join(x['selecting'])})")
        else:
            lines.append(f"  {d} at {who}: denied: isolated by {', '.join(x['selecting'])}, and no rule of "
                         f"them allows this peer and port")
    if "note" in v:
        lines.append(f"  note: {v['note']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.action == "explain":
        return _explain(args)
    return _log(args)


def _explain(args) -> int:
    from ..policy.cache import PolicyCache
    from ..policy.evaluate import explain
    from ..policy.watch import Watcher, make_api_client
    try:
        src, dst = _pod_ref(args.src, "--from"), _pod_ref(args.dst, "--to")
        port, proto = _port(args.port)
    except ValueError as err:
        print(f"overlayd policy explain: {err}", file=sys.stderr)
        return 2
    cache = PolicyCache()
    try:
        Watcher(make_api_client(args.kube_api_url or None, args.kubeconfig or None), cache,
                lambda _t: None, stop=None).list_all()
    except Exception as err:
        print(f"overlayd policy explain: cannot read the API: {err}", file=sys.stderr)
        return 2
    cluster = cache.cluster()
    pods = []
    for ns, name in (src, dst):
        pod = cluster.pods.get(f"{ns}/{name}")
        if pod is None:
            bad = cache.bad().get(f"pods {ns}/{name}")
            print(f"overlayd policy explain: pod {ns}/{name} " + (f"cannot be read: {bad}" if bad else "not found"),
                  file=sys.stderr)
            return 2
        pods.append(pod)
    verdict = explain(cluster, pods[0], pods[1], proto, port)
    for why in cache.bad().values():
        verdict.setdefault("ignored", []).append(why)
    print(json.dumps(verdict, indent=2, default=list) if args.json else explain_text(verdict))
    return 0 if verdict["allowed"] else 1


def _log(args) -> int:
    from ..netlink_nflog import NflogError, open_group, read
    try:
        sock = open_group(args.group)
    except (NflogError, OSError) as err:
        print(f"overlayd policy log: {err}", file=sys.stderr)
        return 2
    print(f"denied packets of nflog group {args.group} (rate limited by the rules):", file=sys.stderr, flush=True)
    n = 0
    try:
        for record in read(sock, args.timeout):
            print(json.dumps(record.__dict__) if args.json else record.line(), flush=True)
            n += 1
            if args.count and n >= args.count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0
