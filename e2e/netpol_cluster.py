"""The upstream NetworkPolicy cases (tests/netpol/upstream.py) on a real cluster running
manifests/overlayd.yaml: kubelet pods, kubectl only.

    python -m e2e.netpol_cluster --kubectl PATH --image IMAGE [--kubeconfig FILE] [--cases REGEX]

(run from the repository root; KUBECONFIG is the default kubeconfig). In order:

1. turn enforcement on as a user would: `--network-policy` added to the overlayd DaemonSet's args,
   `kubectl rollout status`;
2. the model: namespaces x, y, z, pods a, b, c in each, spread over the nodes so that same-node and
   cross-node pairs both occur (e2e/netpol_kube.py);
3. each case: back to no policies and default labels, the 9 × 9 matrix open, then the case's
   policies and label changes written through kubectl and the matrix probed with `kubectl exec`
   until it equals the case's expected table (or the deadline passes: FAIL with both tables);
4. always, also on failure or Ctrl-C: the namespaces deleted, the DaemonSet patch reverted, and a
   check that enforcement is off again (new pods on every node reach each other).

Cases whose checks probe SCTP are skipped (no SCTP sockets on this kernel: the lab suite crafts INIT
chunks, a pod cannot); cases with SCTP policies and TCP checks run. Exits 1 on any failure.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time

from e2e.netpol_kube import OWNER, ClusterError, ClusterModel, Kubectl, PolicyFlag, probe_script
from tests.netpol.driver import case_checks, run_case
from tests.netpol.upstream import CASES


def probeable(case) -> bool:
    return all(proto in ("TCP", "UDP") for _, proto, _ in case_checks(case))


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m e2e.netpol_cluster", description=__doc__.split("\n\n")[0])
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"), help="default: $KUBECONFIG")
    p.add_argument("--kubectl", default="kubectl")
    p.add_argument("--image", required=True, help="an image with busybox (sh, nc, timeout) and /bin/udp")
    p.add_argument("--pull-policy", default="Never", help="imagePullPolicy of the model's pods (Never: preloaded)")
    p.add_argument("--nodes", help="comma-separated node names (default: every node, by name)")
    p.add_argument("--cases", default="", help="run only the cases whose name matches this regex")
    p.add_argument("--deadline", type=float, default=90, help="seconds a check may take (default 90)")
    p.add_argument("--first-deadline", type=float, default=300,
                   help="seconds the first open matrix may take, while the engines start (default 300)")
    p.add_argument("--wait", type=float, default=300, help="seconds for rollouts, pods, deletions (default 300)")
    args = p.parse_args(argv)
    if not args.kubeconfig:
        p.error("no kubeconfig: pass --kubeconfig or set KUBECONFIG")
    return args


def say(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def enforcement_is_off(k: Kubectl, nodes: list[str], image: str, pull_policy: str, wait: float,
                       deadline: float) -> list[str]:
    """New pods, one per node, each reaching the next node's over TCP. A policy table left in the
    kernel would drop them (addresses it never compiled are dropped: fail closed)."""
    ns = "netpol-off"
    names = [f"p{i}" for i in range(len(nodes))]
    pods = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": n, "namespace": ns},
             "spec": {"nodeName": node, "tolerations": [{"operator": "Exists"}], "terminationGracePeriodSeconds": 1,
                      "containers": [{"name": "serve", "image": image, "imagePullPolicy": pull_policy,
                                      "command": ["sh", "-c", f"exec nc -ll -p 80 -e echo {n}"]}]}}
            for n, node in zip(names, nodes)]
    left = k.json("get", "namespace", ns, "--ignore-not-found")
    if left and OWNER not in (left["metadata"].get("annotations") or {}):
        return [f"namespace {ns} exists and was not made by this suite: enforcement-off check not run"]
    if left:                                  # what an interrupted run left
        k("delete", "namespace", ns, "--wait=true", f"--timeout={int(wait)}s", timeout=wait + 30)
    k("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Namespace",
                                            "metadata": {"name": ns, "annotations": {OWNER: "true"}}}))
    problems = []
    try:
        k("-n", ns, "wait", "--for=create", "serviceaccount/default", f"--timeout={int(wait)}s", timeout=wait + 30)
        k("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}))
        k("-n", ns, "wait", "pod", "--all", "--for=condition=Ready", f"--timeout={int(wait)}s", timeout=wait + 30)
        ips = {i["metadata"]["name"]: i["status"]["podIP"] for i in k.json("-n", ns, "get", "pods")["items"]}
        for i, src in enumerate(names):
            dst = names[(i + 1) % len(names)]
            until, answer = time.monotonic() + deadline, ""
            while answer != dst and time.monotonic() < until:      # a success proves it; wait for one
                out = k("-n", ns, "exec", src, "--", "sh", "-c", probe_script([(ips[dst], 80, "TCP")], 2),
                        check=False, timeout=60).stdout.split()
                answer = out[3] if len(out) >= 4 else ""
            if answer == dst:
                print(f"PASS  enforcement off: new pod {src} ({nodes[i]}) -> new pod {dst} ({ips[dst]}) answered")
            else:
                problems.append(f"new pod {src} ({nodes[i]}) -> new pod {dst} ({ips[dst]}): no answer within "
                                f"{deadline:.0f}s after --network-policy was taken out (a policy table left on a "
                                "node?)")
    finally:
        k("delete", "namespace", ns, "--wait=true", f"--timeout={int(wait)}s", timeout=wait + 30, check=False)
    return problems


def run(args) -> int:
    k = Kubectl(args.kubectl, args.kubeconfig)
    nodes = args.nodes.split(",") if args.nodes else sorted(
        i["metadata"]["name"] for i in k.json("get", "nodes")["items"])
    if len(nodes) < 2:
        raise ClusterError(f"the model needs 2 nodes or more (same-node and cross-node pairs); nodes: {nodes}")
    pattern = re.compile(args.cases)
    chosen = [c for c in CASES if pattern.search(c.name)]
    cases = [c for c in chosen if probeable(c)]
    skipped = [c for c in chosen if not probeable(c)]
    model = ClusterModel(k, nodes, args.image, pull_policy=args.pull_policy, deadline=args.deadline)
    flag = PolicyFlag(k, wait=args.wait)
    started = time.monotonic()
    passed, failed = [], []
    problems: list[str] = []
    turned_on = False
    try:
        say(f"turning enforcement on: {flag.container} args += --network-policy (daemonset {flag.ns}/{flag.ds})")
        t = time.monotonic()
        turned_on = flag.enable()
        print("added, rolled out" if turned_on else "it was on already (left as it is)",
              f"in {time.monotonic() - t:.0f}s", flush=True)
        say(f"the model: namespaces x, y, z; pods a, b, c; on {', '.join(nodes)}")
        t = time.monotonic()
        model.deploy(args.wait)
        for key in sorted(model.ips):
            print(f"{key:4} {model.nodes[key]:12} {' '.join(model.ips[key])}")
        print(f"9 pods Ready in {time.monotonic() - t:.0f}s", flush=True)
        say(f"{len(cases)} upstream cases" + (f" ({len(skipped)} skipped: they probe SCTP, which pods here "
                                               f"cannot open)" if skipped else ""))
        for i, case in enumerate(cases):
            t, rounds = time.monotonic(), model.rounds
            try:
                run_case(model, case, first_deadline=args.first_deadline if i == 0 else None)
            except (AssertionError, ClusterError) as err:
                failed.append(case.name)
                print(f"FAIL  {case.name} ({time.monotonic() - t:.0f}s)\n{err}", flush=True)
                continue
            passed.append(case.name)
            print(f"PASS  {case.name} ({time.monotonic() - t:.1f}s, {model.rounds - rounds} rounds)", flush=True)
    finally:
        say("clean-up: the model's namespaces, then the DaemonSet patch")
        for what, step in (("delete namespaces x, y, z", lambda: model.remove(args.wait)),
                           ("revert the DaemonSet patch", flag.revert)):
            try:
                step()
                print(f"done: {what}", flush=True)
            except Exception as err:        # the other steps still run
                problems.append(f"{what}: {err}")
    if turned_on and not problems:
        say("enforcement is off again")
        problems += enforcement_is_off(k, nodes, args.image, args.pull_policy, args.wait, args.deadline)
    say("summary")
    for p in problems:
        print(f"FAIL  {p}")
    for c in skipped:
        print(f"SKIP  {c.name}: probes SCTP")
    print(f"{len(passed)} passed, {len(failed)} failed, {len(skipped)} skipped in {time.monotonic() - started:.0f}s"
          + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed or problems else 0


def main(argv=None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    # SIGTERM (run.sh's trap, a CI timeout) unwinds like Ctrl-C: the clean-up runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return run(args)
    except ClusterError as err:
        print(f"ERROR {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
