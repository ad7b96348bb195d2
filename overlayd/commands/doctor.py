"""`overlayd doctor [--json]`: check this node's overlay against its lease, with evidence and fixes."""
from __future__ import annotations

import argparse
import json
import os
import sys

HELP = "check this node's overlay (CNI files, lease, device, kernel entries, MTU, VXLAN reachability, ...)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..daemon_main import add_daemon_arguments

    parser.description = (HELP + ". Takes the daemon's own flags (or --daemon-pid to read them from the "
                          "running daemon). Exit status: 0 ok, 1 a warning, 2 an error.")
    add_daemon_arguments(parser)       # -v/--verbose among them: with doctor, evidence for passed checks too
    g = parser.add_argument_group("doctor")
    g.add_argument("--json", action="store_true", help="print the report as JSON (docs/operations.md)")
    g.add_argument("--cni-conf-dir", default="/etc/cni/net.d", metavar="DIR",
                   help="the runtime's CNI conf dir (default %(default)s)")
    g.add_argument("--cni-bin-dir", action="append", metavar="DIR",
                   help="the runtime's CNI bin dir; repeatable, searched in order like CNI_PATH "
                        "(default /opt/cni/bin)")
    g.add_argument("--probe-timeout", type=float, default=2.0, metavar="SECONDS",
                   help="how long to wait for the VXLAN probes' replies (default %(default)s)")
    g.add_argument("--store-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="how long the lease store may take to answer (default %(default)s; importing "
                        "its client library is not counted)")
    g.add_argument("--daemon-pid", type=int, metavar="PID",
                   help="take the daemon's flags and NODE_NAME from this running overlayd "
                        "(in the DaemonSet's container: 1) instead of this command line")


def _from_daemon(pid: int, parser_args: argparse.Namespace) -> tuple[argparse.Namespace, dict]:
    """The daemon's flags (from /proc/PID/cmdline) with doctor's own flags from this command line."""
    from ..daemon_main import build_parser
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = [a.decode() for a in f.read().split(b"\0") if a]
    with open(f"/proc/{pid}/environ", "rb") as f:
        env = dict(e.decode("utf-8", "replace").partition("=")[::2] for e in f.read().split(b"\0") if e)
    start = next((i + 1 for i, a in enumerate(argv) if os.path.basename(a) == "overlayd"), 1)
    daemon_args = build_parser().parse_args(argv[start:])
    for name in ("json", "cni_conf_dir", "cni_bin_dir", "probe_timeout", "store_timeout", "daemon_pid", "verbose"):
        setattr(daemon_args, name, getattr(parser_args, name))
    return daemon_args, {**os.environ, **{k: v for k, v in env.items() if k in ("NODE_NAME", "POD_NAME",
                                                                              "POD_NAMESPACE")}}


def run(args: argparse.Namespace) -> int:
    from ..doctor.core import diagnose
    from ..doctor.gather import gather
    from ..doctor.report import render_text

    environ = dict(os.environ)
    if args.daemon_pid:
        try:
            args, environ = _from_daemon(args.daemon_pid, args)
        except (OSError, SystemExit) as err:
            print(f"overlayd doctor: cannot read the flags of pid {args.daemon_pid}: {err}", file=sys.stderr)
            return 2
    report = diagnose(gather(args, environ))
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        print(render_text(report, verbose=bool(args.verbose)))
    return report.exit_code
