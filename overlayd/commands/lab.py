"""`overlayd lab`: a multi-node cluster in network namespaces on this machine."""
from __future__ import annotations

import argparse
import json
import sys
import time

from subnet_lease.defaults import ANNOTATION_PREFIX, ETCD_PREFIX

from ..lab import pod_cli as lab_pod

HELP = "a multi-node cluster in network namespaces on this machine (up, status, check, down, demo)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    for action, text in (("up", "bring a lab up and leave it running"),
                         ("demo", "up, print the connectivity matrix, down (what `make demo` runs)")):
        p = sub.add_parser(action, help=text)
        p.add_argument("--nodes", type=int, default=3)
        p.add_argument("--pods-per-node", type=int, default=2)
        p.add_argument("--name", help="lab name (default: a unique one)")
        p.add_argument("--dual-stack", action="store_true", help="IPv4 and IPv6 pods (flannel-v6.1 too)")
        p.add_argument("--kube", action="store_true",
                       help="kube mode: a real kube-apiserver and kube-controller-manager instead of etcd, a Node with "
                            "spec.podCIDR per node, overlayd --kube-subnet-mgr")
        p.add_argument("--kubelet", action="store_true",
                       help="real nodes: kubelet, containerd and kube-proxy per node, kube-scheduler, and "
                            "overlayd installed with kubectl apply -f manifests/overlayd.yaml (implies --kube; "
                            "see docs/real-node.md)")
        p.add_argument("--daemon-arg", action="append", default=[], metavar="ARG",
                       help="extra overlayd flag for every node, e.g. --daemon-arg=--ip-masq")
        p.add_argument("--prometheus", action="store_true",
                       help="a real Prometheus in the switch namespace scraping every node's /metrics, "
                            "its API on a Unix socket (see `lab status`)")
        p.add_argument("--network-policy", action="store_true",
                       help="run every overlayd with --network-policy (NetworkPolicy enforcement; implies --kube); "
                            "with demo: the allow-http policy before and after")
    for action, text in (("status", "what a running lab consists of"),
                         ("check", "ping every pod from every pod"),
                         ("down", "remove everything a lab made")):
        p = sub.add_parser(action, help=text)
        p.add_argument("--name", help="which lab (default: the only one)")
        if action != "down":
            p.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("list", help="names of the labs that are up")
    p = sub.add_parser("doctor", help="run `overlayd doctor` on every node")
    p.add_argument("--name", help="which lab (default: the only one)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-v", "--verbose", action="store_true", help="evidence for passed checks too")
    lab_pod.add_arguments(sub)


def _say(msg: str) -> None:
    print(f"[lab] {msg}", file=sys.stderr, flush=True)


def print_matrix(result: dict, out=sys.stdout) -> None:
    pods = []
    for row in result["pairs"]:
        for key in ("src", "dst"):
            if row[key] not in pods:
                pods.append(row[key])
    ok = {(r["src"], r["dst"]): r["ok"] for r in result["pairs"]}
    ips = {r["src"]: r["src_ip"] for r in result["pairs"]}
    width = max(len(p) for p in pods) + 2
    print("connectivity (row pings column; ok = reply):", file=out)
    print(" " * (width + 16) + "".join(p.ljust(width) for p in pods), file=out)
    for src in pods:
        cells = "".join(("-" if src == dst else ("ok" if ok[(src, dst)] else "FAIL")).ljust(width) for dst in pods)
        print(f"{src.ljust(width)}{ips.get(src, '').ljust(16)}{cells}", file=out)
    good = sum(1 for r in result["pairs"] if r["ok"])
    cross = [r for r in result["pairs"] if r["cross_node"]]
    print(f"{good}/{len(result['pairs'])} pairs reply ({sum(r['ok'] for r in cross)}/{len(cross)} across nodes)",
          file=out)


def run(args: argparse.Namespace) -> int:
    from ..lab.cleanup import interrupts_as_exceptions
    from ..lab.cluster import Lab, list_labs
    from ..lab.netns import LabError

    try:
        if args.action == "list":
            print("\n".join(list_labs()))
            return 0
        if args.action == "pod":
            return lab_pod.run(args, _say)
        if args.action in ("up", "demo"):
            # Policies, pods and namespaces come from the API: --network-policy implies --kube.
            daemon_args = tuple(args.daemon_arg) + (("--network-policy",) if args.network_policy else ())
            lab = Lab(args.name, log=_say, daemon_args=daemon_args, dual_stack=args.dual_stack, kubelet=args.kubelet,
                      kube=args.kube or args.network_policy, prometheus=args.prometheus)
            if args.action == "demo" and args.network_policy:
                args.pods_per_node = 0          # the policy demo makes its own pods (web, frontend, other)
            with interrupts_as_exceptions():
                try:
                    started = time.monotonic()
                    lab.up(args.nodes, args.pods_per_node)
                    _say(f"lab {lab.name} up in {time.monotonic() - started:.1f}s")
                    if args.action == "up":
                        print(lab.name)
                        return 0
                    if args.network_policy:
                        from ..lab.policy_demo import run as policy_demo
                        return policy_demo(lab, _say)
                    return _demo(lab)
                finally:
                    if args.action == "demo":
                        _say("removing everything the lab made")
                        lab.down()
        lab = Lab.load(args.name, log=_say)
        if args.action == "status":
            status = lab.status()
            if args.json:
                print(json.dumps(status, indent=1))
            else:
                store = (f"Kubernetes API {status['kube_api']['url']} {status['kube_api']['version']} "
                         f"(kubectl --kubeconfig {status['kube_api']['kubeconfig']})"
                         if status["kube_api"] else f"etcd {status['etcd']}")
                print(f"lab {status['lab']}: {store} in {status['switch']}")
                if status.get("prometheus"):
                    print(f"  Prometheus API: curl --unix-socket {status['prometheus']['socket']} "
                          "http://prometheus/api/v1/query?query=up")
                if status.get("kubelet"):
                    _print_kubelet_nodes(status)
                    return 0
                for n in status["nodes"]:
                    print(f"  {n['name']}  {n['netns']}  underlay {n['underlay_ip']}  subnet {n['subnet']}  "
                          f"overlayd {'running' if n['daemon_alive'] else 'NOT RUNNING'} (pid {n['daemon_pid']})")
                for p in status["pods"]:
                    print(f"  pod {p['name']} on {p['node']}: {p['ip']} ({p['netns']})")
            return 0
        if args.action == "check":
            result = lab.check()
            if args.json:
                print(json.dumps(result, indent=1))
            else:
                print_matrix(result)
            return 0 if result["ok"] else 1
        if args.action == "doctor":
            from ..lab import doctor
            result = doctor.run(lab)
            print(json.dumps(result, indent=1) if args.json else doctor.render(result, verbose=args.verbose))
            return result["exit_code"]
        if args.action == "down":
            failed = lab.down()
            _say(f"lab {lab.name} removed" + (f" (could not undo: {failed})" if failed else ""))
            return 1 if failed else 0
    except LabError as err:
        _say(f"error: {err}")
        return 1
    except KeyboardInterrupt:
        _say("interrupted; everything the lab made was removed")
        return 130
    return 2


def _print_kubelet_nodes(status: dict) -> None:
    """`lab status` of a --kubelet lab: what runs on each node, and how to get onto it."""
    print(f"  test image: {status['images']['test']} (imagePullPolicy: Never)")
    for n in status["kubelet"]["nodes"]:
        running = ", ".join(f"{k} {'running' if v else 'NOT RUNNING'}" for k, v in n["running"].items())
        print(f"  {n['name']}  {n['netns']}  {running}  (a shell on it: {' '.join(n['enter'])} sh)")


def _demo(lab) -> int:
    _say("waiting for every node to route to every other node's subnet")
    result = lab.check()
    print()
    for n in lab.status()["nodes"]:
        print(f"node {n['name']} ({n['netns']}): underlay {n['underlay_ip']}, pod subnet {n['subnet']}")
    print()
    if lab.kube:
        _print_nodes(lab)
    else:
        print(f"$ etcdctl get --prefix {ETCD_PREFIX}/subnets")
        print(lab.etcd.etcdctl("get", "--prefix", f"{ETCD_PREFIX}/subnets").stdout.rstrip())
        print("$ etcdctl lease list")
        print(lab.etcd.etcdctl("lease", "list").stdout.rstrip())
    print()
    print_matrix(result)
    return 0 if result["ok"] else 1


def _print_nodes(lab, prefix: str = ANNOTATION_PREFIX) -> None:
    """What `kubectl get nodes` with flannel's annotations as columns would show."""
    print(f"$ kubectl --kubeconfig {lab.kube_api.kubeconfig} get nodes   # with flannel's annotations as columns")
    rows = [("NAME", "POD-CIDR", "PUBLIC-IP", "VTEP-MAC", "NETWORK-UNAVAILABLE")]
    for node in lab.api.nodes():
        ann = node["metadata"].get("annotations") or {}
        try:
            mac = json.loads(ann.get(f"{prefix}/backend-data") or "{}").get("VtepMAC", "")
        except ValueError:
            mac = "?"
        cond = next((c["status"] for c in node.get("status", {}).get("conditions", [])
                     if c.get("type") == "NetworkUnavailable"), "")
        rows.append((node["metadata"]["name"], ",".join(node["spec"].get("podCIDRs") or []) or "<none>",
                     ann.get(f"{prefix}/public-ip", ""), mac, cond))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
