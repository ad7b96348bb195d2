"""`overlayd install-cni`: the init container's step (bundle -> CNI bin dir, conflist -> CNI conf dir)."""
from __future__ import annotations

HELP = "install the overlay CNI plugin bundle and its conflist on this node (only what changed)"


def add_arguments(parser) -> None:
    from cni_plugin import install
    parser.add_argument("--bundle", required=True, metavar="DIR",
                        help="what `python -m cni_plugin.bundle build --out DIR` made")
    parser.add_argument("--cni-conf", required=True, metavar="FILE", help="the conflist to install")
    parser.add_argument("--bin-dir", default=install.DEFAULT_BIN_DIR, help="CNI bin dir (%(default)s)")
    parser.add_argument("--conf-dir", default=install.DEFAULT_CONF_DIR, help="CNI conf dir (%(default)s)")
    parser.add_argument("--conf-name", default=install.DEFAULT_CONF_NAME, help="conflist file name (%(default)s)")


def run(args) -> int:
    import sys

    from cni_plugin import install
    try:
        report = install.install(install.InstallSettings(
            bundle_dir=args.bundle, cni_conf=args.cni_conf, bin_dir=args.bin_dir,
            conf_dir=args.conf_dir, conf_name=args.conf_name))
    except (install.InstallError, OSError) as err:
        print(f"install-cni: {err}", file=sys.stderr)
        return 1
    print(f"{report.executable}: {'installed' if report.bundle_changed else 'unchanged'}")
    print(f"{report.conflist}: {'written' if report.conf_changed else 'unchanged'}")
    return 0
