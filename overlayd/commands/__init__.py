"""Subcommands of `overlayd`: every module here is one, named after its file.

A module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`.
`overlayd` with no subcommand (just flanneld-style flags) runs the daemon.
"""
import pkgutil


def names() -> list[str]:
    return sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
