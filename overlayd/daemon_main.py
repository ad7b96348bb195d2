"""`overlayd [flags]`: parse flanneld's flags into settings, build the parts, run the daemon."""
from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import sys
import threading
from typing import Optional

from .errors import OverlayError, SettingsError
from .settings import DaemonSettings
from .start_up import SERVICES_GRACE, SideServices, once, release_free_memory, start_prefetch

log = logging.getLogger("overlayd")


def build_parser(subcommands: Optional[dict[str, str]] = None) -> argparse.ArgumentParser:
    epilog = None
    if subcommands:
        epilog = "subcommands:\n" + "\n".join(f"  overlayd {n:<12} {h}" for n, h in sorted(subcommands.items()))
    p = argparse.ArgumentParser(
        prog="overlayd", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=epilog,
        description="The overlayd node daemon: leases this node's pod subnet and programs the VXLAN "
                    "overlay to every peer. Flag names are flanneld's.")
    add_daemon_arguments(p)
    return p


def add_daemon_arguments(p: argparse.ArgumentParser) -> None:
    """Every daemon flag (also taken by `overlayd doctor`, which checks a daemon run with them)."""
    from .backend_flags import add_backend_arguments, parse_bool

    add_backend_arguments(p)
    d = DaemonSettings()
    p.add_argument("--iface", action="append", default=[], metavar="NAME|IP",
                   help="underlay interface (name or IP); repeatable, first match wins")
    p.add_argument("--iface-regex", action="append", default=[], metavar="REGEX",
                   help="regex matched against interface names, then IPs; repeatable")
    p.add_argument("--iface-can-reach", metavar="IP", help="use the interface that routes to this IP")
    p.add_argument("--public-ip", metavar="IP", help="IP peers use to reach this node (default: the underlay's)")
    p.add_argument("--public-ipv6", metavar="IP", help="IPv6 peers use to reach this node")
    p.add_argument("--subnet-file", default=d.subnet_file, help="where to write subnet.env (default %(default)s)")
    p.add_argument("--ip-masq", action="store_true", help="masquerade traffic leaving the pod network")
    p.add_argument("--iptables-forward-rules", type=parse_bool, default=d.iptables_forward_rules, metavar="BOOL",
                   help="accept forwarded pod-network traffic in FORWARD (default %(default)s)")
    p.add_argument("--healthz-ip", default=d.healthz_ip, help="health/metrics listen address (default %(default)s)")
    p.add_argument("--healthz-port", type=int, default=d.healthz_port,
                   help="health/metrics port; 0 turns the server off (default %(default)s)")
    p.add_argument("--resync", type=float, default=d.resync, metavar="SECONDS",
                   help="full reconcile period (default %(default)s)")
    p.add_argument("--lease-resync", type=float, default=d.lease_resync, metavar="SECONDS",
                   help="re-read every lease from the store this often, so any drift heals; 0: only "
                        "after a watch failure (default %(default)s)")
    p.add_argument("--peer-removal-grace", type=float, default=d.peer_removal_grace, metavar="SECONDS",
                   help="keep a peer whose lease vanished programmed this long unless it comes back, so a "
                        "lease store away for longer than the lease TTL does not cut pod traffic when it "
                        "returns; 0 removes at once, as flannel does (default %(default)s)")
    p.add_argument("--vxlan-tx-checksum-off", action="store_true",
                   help="turn off tx checksum offload on the vxlan device (flannel #2152)")
    p.add_argument("--cni-socket", default=d.cni_socket, metavar="PATH",
                   help="serve the CNI plugin's ADD/DEL on this unix socket, so no interpreter starts per "
                        "pod; '' turns it off (the plugin then runs on its own) (default %(default)s)")
    p.add_argument("--cni-data-dir", default=d.cni_data_dir, metavar="PATH",
                   help="the CNI plugin's dataDir the service serves; it must be the node's own "
                        "directory (a hostPath at the same path) (default %(default)s)")
    p.add_argument("--network-policy", action="store_true",
                   help="enforce Kubernetes NetworkPolicy on this node's pods with nftables (watches Pods, "
                        "Namespaces and NetworkPolicies; in etcd mode pass --kubeconfig); implies --ip-masq "
                        "(see docs/network-policy.md)")
    p.add_argument("--network-policy-log-group", type=int, default=d.network_policy_log_group, metavar="N",
                   help="log denied packets (rate limited) to nflog group N, read them with "
                        "`overlayd policy log`; 0 turns it off (default %(default)s)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")


def settings_from_args(args: argparse.Namespace) -> DaemonSettings:
    if args.peer_removal_grace < 0:
        raise SettingsError(f"--peer-removal-grace {args.peer_removal_grace}: use 0 (remove at once) or more seconds")
    return DaemonSettings(
        subnet_file=args.subnet_file, ifaces=tuple(args.iface), iface_regex=tuple(args.iface_regex),
        iface_can_reach=args.iface_can_reach, public_ip=args.public_ip, public_ipv6=args.public_ipv6,
        # With policy on, pod sources must survive pod-to-pod traffic: overlayd masquerades (it
        # keeps pod -> pod sources) and subnet.env tells the bridge not to (its ipMasq would not).
        ip_masq=args.ip_masq or args.network_policy, iptables_forward_rules=args.iptables_forward_rules,
        healthz_ip=args.healthz_ip, healthz_port=args.healthz_port, resync=args.resync,
        lease_resync=args.lease_resync, peer_removal_grace=args.peer_removal_grace,
        vxlan_tx_checksum_off=args.vxlan_tx_checksum_off, cni_socket=args.cni_socket,
        cni_data_dir=args.cni_data_dir, network_policy=args.network_policy,
        network_policy_log_group=args.network_policy_log_group,
        node_name=args.node_name or os.environ.get("NODE_NAME") or None,
        kube_api_url=args.kube_api_url or None, kubeconfig=args.kubeconfig_file or None)


def main(argv: list[str], subcommands: Optional[dict[str, str]] = None) -> int:
    args = build_parser(subcommands).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose > 1 else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from .backend_flags import make_backend
    try:
        backend = make_backend(args)
    except (OverlayError, ValueError) as err:
        log.error("%s", err)
        return 2
    # The store's first reads overlap the imports below and the device's creation (start_up.py).
    prefetch = start_prefetch(backend)
    from .daemon import Daemon
    from .health import Heartbeat, HealthError, Readiness, Status, listen
    from .metrics import Metrics
    from .rules import RulesKeeper

    try:
        settings = settings_from_args(args)
        rules = RulesKeeper(ip_masq=settings.ip_masq, forward_rules=settings.iptables_forward_rules)
        conditions = ["subnet file written", "datapath programmed"] + (["rules in place"] if rules.enabled else [])
        readiness, metrics = Readiness(*conditions), Metrics()
        heartbeat = Heartbeat(max_age=max(30.0, 3 * settings.resync))
        policy = _policy_agent(settings, backend, metrics) if settings.network_policy else None
        # Policy off: a table a previous run left goes before subnet.env lets pods be wired.
        before_subnet_file = policy.on_lease if policy is not None else once(_remove_left_over_policy_table)
        daemon = Daemon(settings, backend, metrics=metrics, readiness=readiness, rules=rules, heartbeat=heartbeat,
                        before_subnet_file=before_subnet_file)

        def liveness():
            # While start-up waits (for etcd, for a podCIDR) the daemon is alive but not ready.
            return heartbeat() if daemon.started else Status(True, "starting")

        def ready():
            status = readiness()
            if not status.ok and not daemon.started:
                waiting = _waiting_for(backend)
                if waiting:
                    status = Status(False, f"{status.reason}; {waiting}")
            if policy is not None:
                status = _with_policy(status, policy.status())
            return status

        metrics.ready.set_function(lambda: float(ready().ok))
        # The port is taken now (in use: exit 2, naming the flag); serving starts later.
        listener = listen(settings.healthz_ip, settings.healthz_port) if settings.healthz_port else None
    except (OverlayError, HealthError, ValueError) as err:
        log.error("%s", err)
        return 2
    services = SideServices(settings, listener, liveness, ready, metrics, policy)
    services.start_when(daemon.programming, within=SERVICES_GRACE)

    def on_stop_signal(signum: int) -> None:
        log.info("signal %d: stopping; the datapath stays in place", signum)
        daemon.request_stop()
        if not daemon.started:
            backend.close()       # unblocks a start-up that waits for the store or a podCIDR

    handle_signals({signal.SIGTERM: on_stop_signal, signal.SIGINT: on_stop_signal})
    # `kill -USR1 <pid>` writes every thread's stack to the log: for a daemon that seems stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        prefetch.join(10)
        daemon.start_with_retry()
        release_free_memory()
        if policy is not None and not daemon.stop.is_set():
            policy.start()
        if not daemon.stop.is_set():
            daemon.run()
    except Exception as err:
        if daemon.stop.is_set():
            return 0
        log.error("%s", err, exc_info=not isinstance(err, (OverlayError, ValueError, RuntimeError)))
        return 1
    finally:
        daemon.shutdown()
        if policy is not None:
            policy.close()          # the table stays: pods stay policed while overlayd restarts
        services.close()
    return 0


def handle_signals(actions: dict) -> None:
    """Run actions[signum](signum) in a thread of their own, never inside a signal handler.

    A Python signal handler runs in the main thread between two bytecodes, possibly while that
    thread holds a lock (a queue's, an Event's) the action needs: a second SIGTERM during
    shutdown deadlocked the daemon that way. Here the handler does nothing; the interpreter
    writes the signal number to a pipe (set_wakeup_fd) and a thread reads it and acts.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    for signum in actions:
        signal.signal(signum, lambda *_: None)

    def loop() -> None:
        while True:
            for signum in os.read(read_fd, 64):
                action = actions.get(signum)
                if action is not None:
                    action(signum)

    threading.Thread(target=loop, name="signals", daemon=True).start()


def _policy_agent(settings: DaemonSettings, backend, metrics):
    """--network-policy: the watcher/engine (overlayd.policy), with the API credentials we have."""
    from .policy.agent import PolicyAgent
    from .policy.watch import make_api_client

    def node_name() -> str:
        if settings.node_name:
            return settings.node_name
        if hasattr(backend, "node_name"):      # kube mode knows its node
            return backend.node_name()
        raise ValueError("--network-policy needs this node's Kubernetes name: pass --node-name or set NODE_NAME")

    if not settings.node_name and not hasattr(backend, "node_name"):
        node_name()     # fail now, with the flag to set, not after the lease is taken
    return PolicyAgent(node_name=node_name, registry=metrics.registry, log_group=settings.network_policy_log_group,
                       resync=settings.resync,
                       api_client_factory=lambda: make_api_client(settings.kube_api_url, settings.kubeconfig))


def _remove_left_over_policy_table() -> None:
    """Turning --network-policy off turns enforcement off: a table a previous run left goes (as
    --ip-masq off removes the masquerade table), before any pod is wired."""
    import shutil
    from .masquerade import RulesError
    from .policy.apply import remove_left_over
    try:
        if shutil.which("nft") and remove_left_over():
            log.info("--network-policy is off: removed the policy table a previous run left")
    except RulesError as err:        # the daemon still runs; the old table keeps enforcing
        log.warning("--network-policy is off, but the policy table a previous run left stays: %s", err)


def _with_policy(status, policy):
    if status.ok and not policy.ok:
        status = type(status)(False, f"not ready: {policy.reason}")
    elif not status.ok and not policy.ok:
        status = type(status)(False, f"{status.reason}; {policy.reason}")
    if policy.warnings:
        status = type(status)(status.ok, f"{status.reason}; ignored: {' | '.join(policy.warnings[:5])}"
                              + (f" (+{len(policy.warnings) - 5} more)" if len(policy.warnings) > 5 else ""))
    return status


def _waiting_for(backend) -> Optional[str]:
    try:
        return backend.health().waiting_for
    except Exception:
        return None
