"""The layering, as an import contract (.importlinter, checked by import-linter) plus two rules
an import contract cannot say. No root, no kernel: `make test` runs it everywhere.

docs/development.md ("Layering") says why each rule exists.
"""
import ast
import os
import subprocess
import sys

import grimp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("subnet_lease", "overlayd", "cni_plugin")
# Known exceptions, listed in docs/development.md: a new netlink user must go through
# overlayd/netlink* or be added here on purpose. (None now: the policy engine's netfilter
# netlink lives in overlayd/netlink_conntrack.py and overlayd/netlink_nflog.py.)
NETLINK_EXCEPTIONS: set = set()


def test_the_import_contracts_hold():
    proc = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports; "
                           "raise SystemExit(lint_imports(no_cache=True))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_the_plugins_add_check_del_path_imports_the_standard_library_only():
    """Everything cni_plugin.main can import, at any depth: our plugin modules and the stdlib."""
    graph = grimp.build_graph(*PACKAGES, include_external_packages=True, cache_dir=None)
    reached = graph.find_upstream_modules("cni_plugin.main")
    foreign = sorted(m for m in reached if m.split(".")[0] not in sys.stdlib_module_names
                     and m.split(".")[0] != "cni_plugin")
    assert not foreign, f"the plugin's start-up path reaches non-stdlib modules: {foreign}"


def test_only_the_netlink_modules_open_netlink_sockets():
    """A raw AF_NETLINK socket is netlink too, without pyroute2: only overlayd/netlink*.py may."""
    offenders = []
    for package in PACKAGES:
        for dirpath, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, ROOT)
                if rel.startswith("overlayd/netlink") or rel in NETLINK_EXCEPTIONS:
                    continue
                tree = ast.parse(open(path, encoding="utf-8").read(), path)
                for node in ast.walk(tree):
                    if isinstance(node, (ast.Attribute, ast.Name)) and \
                            (getattr(node, "attr", None) or getattr(node, "id", None)) in ("AF_NETLINK", "NETLINK_ROUTE"):
                        offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, f"netlink outside overlayd/netlink*.py: {offenders}"
