"""`overlayd policy explain` as an operator runs it (the installed command, against an API over
HTTP), and what --network-policy does to the daemon's settings."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from overlayd.daemon_main import build_parser, settings_from_args

from .fake_api import FakeApi
from .objects import namespace, pod, policy

OVERLAYD = os.path.join(os.path.dirname(sys.executable), "overlayd")


@pytest.fixture
def api():
    a = FakeApi().start()
    a.put("namespaces", namespace("default"))
    a.put("pods", pod("default", "web", "10.244.1.5", labels={"app": "web"}, ports=[("http", 80, "TCP")]))
    a.put("pods", pod("default", "frontend", "10.244.2.5", node="n2", labels={"role": "frontend"}))
    a.put("pods", pod("default", "other", "10.244.3.5", node="n3", labels={"role": "other"}))
    a.put("networkpolicies", policy("default", "allow-http", {"matchLabels": {"app": "web"}},
                                    ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}],
                                              "ports": [{"protocol": "TCP", "port": "http"}]}]))
    yield a
    a.close()


def explain(api, *args, capsys=None):
    """In-process (the kubernetes client's import costs seconds per process), or the real entry point."""
    argv = ["policy", "explain", "--kube-api-url", api.url, *args]
    if capsys is None:
        return subprocess.run([OVERLAYD, *argv], capture_output=True, text=True, timeout=120)
    from overlayd.cli import main
    code = main(argv)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out.out, out.err)


def test_explain_names_the_policies_behind_a_verdict(api, capsys):
    """(The installed command runs against the real API server in test_e2e.)"""
    def explain_(*args):
        return explain(api, *args, capsys=capsys)
    ok = explain_("--from", "default/frontend", "--to", "default/web", "--port", "80/tcp")
    assert ok.returncode == 0, ok.stderr
    assert "ALLOWED" in ok.stdout and "allowed by default/allow-http" in ok.stdout
    no = explain_("--from", "default/other", "--to", "default/web", "--port", "80/tcp")
    assert no.returncode == 1
    assert "DENIED" in no.stdout and "isolated by default/allow-http" in no.stdout
    as_json = json.loads(explain_("--from", "default/frontend", "--to", "default/web", "--port", "81/tcp",
                                 "--json").stdout)
    assert as_json["allowed"] is False and as_json["egress"]["isolated"] is False


def test_explain_says_what_is_wrong_with_its_input(api, capsys):
    def explain_(*args):
        return explain(api, *args, capsys=capsys)
    bad = explain_("--from", "frontend", "--to", "default/web", "--port", "80/tcp")
    assert bad.returncode == 2 and "--from 'frontend' must be NAMESPACE/POD" in bad.stderr
    bad = explain_("--from", "default/frontend", "--to", "default/web", "--port", "80/icmp")
    assert bad.returncode == 2 and "PORT/PROTO" in bad.stderr
    missing = explain_("--from", "default/nobody", "--to", "default/web", "--port", "80/tcp")
    assert missing.returncode == 2 and "pod default/nobody not found" in missing.stderr


def test_network_policy_turns_on_overlayds_masquerade_so_the_bridge_keeps_pod_sources():
    args = build_parser().parse_args(["--network-policy", "--kubeconfig", "/k", "--node-name", "n1"])
    s = settings_from_args(args)
    assert s.network_policy and s.ip_masq and s.kubeconfig == "/k" and s.node_name == "n1"
    assert not settings_from_args(build_parser().parse_args([])).ip_masq
