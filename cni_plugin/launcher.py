"""Install the plugin from this source tree: `python -m cni_plugin.launcher --out DIR`.

DIR/overlay is the native front end (cni_plugin/native/overlay.c): it hands ADD and DEL to the
overlayd CNI service, and runs DIR/overlay.d/overlay, the full Python plugin, for everything
else and whenever the service is not there. That script starts the system interpreter isolated
(-I) and without site (-S), and imports the plugin straight from the tree (pip's console-script
wrapper imports `re` and the site machinery: ~15 ms more per call). Nodes without Python use
the bundle (cni_plugin.bundle), which has the same layout.
"""
from __future__ import annotations

import argparse
import os
import sys

from .bundle import CONTENTS  # the same layout as the bundle's

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def interpreter() -> str:
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def write(out_dir: str, name: str = "overlay", python: str | None = None, frontend: bool = True) -> str:
    """Write DIR/overlay (+ DIR/overlay.d/overlay); returns DIR/overlay.

    frontend=False writes the Python plugin itself as DIR/overlay (no service, no compiler needed).
    """
    from . import frontend as native
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name)
    if not frontend:
        return _write_script(path, python)
    os.makedirs(os.path.join(out_dir, CONTENTS), exist_ok=True)
    _write_script(os.path.join(out_dir, CONTENTS, "overlay"), python)
    return native.build(path)


def _write_script(path: str, python: str | None) -> str:
    text = (f"#!{python or interpreter()} -IS\n"
            "import sys\n"
            f"sys.path.insert(0, {_ROOT!r})\n"
            "from cni_plugin.main import main\n"
            "sys.exit(main())\n")
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.rename(tmp, path)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cni_plugin.launcher", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory to write the `overlay` executable into")
    parser.add_argument("--python-only", action="store_true",
                        help="write the Python plugin as DIR/overlay, without the native front end")
    args = parser.parse_args(argv)
    print(write(args.out, frontend=not args.python_only))
    return 0


if __name__ == "__main__":
    sys.exit(main())
