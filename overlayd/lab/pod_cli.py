"""`overlayd lab pod add|del`: the argument parsing and output; the work is overlayd.lab.pods."""
from __future__ import annotations

import argparse
import json


def add_arguments(sub) -> None:
    p = sub.add_parser("pod", help="add or delete a Kubernetes pod in a lab (namespace, labels, ports)")
    verbs = p.add_subparsers(dest="pod_action", required=True)
    add = verbs.add_parser("add", help="create the Pod (and Namespace), wire it through the CNI plugin, "
                                       "record its IPs, serve its ports; prints the pod as JSON")
    add.add_argument("--name", help="which lab (default: the only one)")
    add.add_argument("--namespace", required=True)
    add.add_argument("--pod", required=True)
    add.add_argument("--node", required=True, help="node name, e.g. n1")
    add.add_argument("--labels", default="", help="k=v,k2=v2")
    add.add_argument("--port", action="append", default=[], metavar="NAME:PORT/PROTO",
                     help="a containerPort, e.g. http:80/TCP (repeatable)")
    delete = verbs.add_parser("del", help="delete a pod made by `lab pod add`")
    delete.add_argument("--name", help="which lab (default: the only one)")
    delete.add_argument("--namespace", required=True)
    delete.add_argument("--pod", required=True)


def run(args: argparse.Namespace, say) -> int:
    from . import pods
    from .cluster import Lab

    lab = Lab.load(args.name, log=say)
    if args.pod_action == "add":
        spec = pods.PodSpec(args.namespace, args.pod, args.node, pods.parse_labels(args.labels),
                            [pods.parse_port(p) for p in args.port])
        pod = pods.add(lab, spec, log=say)
        print(json.dumps(pods.as_json(pod), indent=1))
        return 0
    pods.delete(lab, args.namespace, args.pod, log=say)
    return 0
