"""`overlayd`: the daemon (flanneld's flags) or one of its subcommands (`overlayd lab ...`)."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional

from . import commands


def _command_module(name: str):
    return importlib.import_module(f"{commands.__name__}.{name.replace('-', '_')}")


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    subcommands = commands.names()
    if argv and argv[0] in subcommands:
        name = argv.pop(0)
        module = _command_module(name)
        parser = argparse.ArgumentParser(prog=f"overlayd {name}", description=module.HELP)
        module.add_arguments(parser)
        args = parser.parse_args(argv)
        return int(module.run(args) or 0)
    if argv and argv[0] in ("-h", "--help"):
        pass
    from . import daemon_main  # the daemon's own flags live there
    return daemon_main.main(argv, subcommands={n: _command_module(n).HELP for n in subcommands})


if __name__ == "__main__":
    sys.exit(main())
