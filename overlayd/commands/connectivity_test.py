"""`overlayd connectivity-test --kubeconfig K`: probe pods on every node, print the reachability matrix."""
from __future__ import annotations

import argparse
import json
import os
import sys

HELP = "probe pods on every node of a cluster: pod to pod across nodes, pod to Service, node to pod"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..connectivity import plan
    parser.description = (HELP + ". Creates a namespace with one probe pod and one host-network pod per "
                          "node and a Service, probes over HTTP through the API's exec, prints the matrix "
                          "and deletes the namespace. Exit status: 0 every probe answered, 1 some did not, "
                          "2 the test could not run.")
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"),
                        help="kubeconfig of the cluster (default $KUBECONFIG, else ~/.kube/config)")
    parser.add_argument("--namespace", default=plan.DEFAULT_NAMESPACE, help="namespace to create (default %(default)s)")
    parser.add_argument("--image", default=plan.DEFAULT_IMAGE,
                        help="probe image with sh, httpd and nc (busybox has them) (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=180, metavar="SECONDS",
                        help="how long to wait for the probe pods to run (default %(default)s)")
    parser.add_argument("--keep", action="store_true", help="leave the namespace and its pods in place")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    from ..connectivity import kube, matrix, plan

    try:
        cluster = kube.Cluster(args.kubeconfig)
        nodes = cluster.nodes()
        if not nodes:
            raise kube.SetupError("the cluster has no nodes")
    except Exception as err:
        print(f"overlayd connectivity-test: cannot use the cluster: {err}", file=sys.stderr)
        return 2
    print(f"[connectivity] {len(nodes)} nodes: {', '.join(nodes)}; namespace {args.namespace}", file=sys.stderr)
    try:
        cluster.create(args.namespace, nodes, args.image)
        ips = cluster.wait_running(args.namespace, [e.name for e in plan.endpoints(nodes)], args.timeout)
        results = kube.run_checks(plan.checks(nodes), ips, cluster.service_ip(args.namespace),
                                  cluster.exec_prober(args.namespace))
    except Exception as err:
        print(f"overlayd connectivity-test: {err}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            try:
                cluster.delete(args.namespace)
            except Exception as err:
                print(f"overlayd connectivity-test: could not delete namespace {args.namespace}: {err}",
                      file=sys.stderr)
    doc = matrix.summary(results)
    print(json.dumps(doc, indent=1) if args.json else matrix.render(doc))
    return 0 if doc["ok"] else 1
