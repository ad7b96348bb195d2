"""Build the self-contained plugin: `python -m cni_plugin.bundle build --out DIR`.

Result: DIR/overlay (an ELF executable, PyInstaller's bootloader) and DIR/overlay.d/ (the
interpreter library, the frozen stdlib subset the plugin imports, and our package). Nothing
from the host's Python is used at run time; the host needs only glibc, which every kubelet
node has. Why PyInstaller one-dir and not a copied interpreter: see docs/cni.md.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

CONTENTS = "overlay.d"
ID_FILE = ".bundle-id"
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ENTRY = "import sys\nfrom cni_plugin.main import main\nsys.exit(main())\n"
# The plugin's lazy imports (dispatch by CNI_COMMAND) and the one C-level helper CHECK needs.
HIDDEN = ["cni_plugin.commands.add", "cni_plugin.commands.delete", "cni_plugin.commands.check",
          "cni_plugin.commands.status", "cni_plugin.commands.gc", "cni_plugin.commands.version",
          "ctypes", "json", "traceback"]
EXCLUDE = ["tkinter", "unittest", "pydoc", "doctest", "email", "http", "xml", "sqlite3", "asyncio",
           "multiprocessing", "lib2to3", "distutils", "setuptools", "pip", "pyroute2", "yaml",
           "kubernetes", "grpc", "pyetcd", "overlayd", "subnet_lease"]


class BundleError(RuntimeError):
    pass


def build(out_dir: str, pyinstaller: list[str] | None = None) -> str:
    """Build into out_dir (replacing a previous bundle there); returns the executable's path."""
    pyinstaller = pyinstaller or [sys.executable, "-m", "PyInstaller"]
    with tempfile.TemporaryDirectory(prefix="overlay-bundle-") as work:
        entry = os.path.join(work, "overlay_entry.py")
        with open(entry, "w") as f:
            f.write(_ENTRY)
        cmd = [*pyinstaller, "--noconfirm", "--clean", "--log-level", "WARN", "--onedir",
               "--name", "overlay", "--contents-directory", CONTENTS,
               "--distpath", os.path.join(work, "dist"), "--workpath", os.path.join(work, "build"),
               "--specpath", work, "--paths", _ROOT]
        for module in HIDDEN:
            cmd += ["--hidden-import", module]
        for module in EXCLUDE:
            cmd += ["--exclude-module", module]
        proc = subprocess.run([*cmd, entry], capture_output=True, text=True)
        if proc.returncode != 0:
            raise BundleError(f"PyInstaller failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        built = os.path.join(work, "dist", "overlay")
        _write_id(built)
        os.makedirs(out_dir, exist_ok=True)
        for name in ("overlay", CONTENTS):
            target = os.path.join(out_dir, name)
            if os.path.isdir(target):
                shutil.rmtree(target)
            elif os.path.exists(target):
                os.unlink(target)
            shutil.move(os.path.join(built, name), target)
    return os.path.join(out_dir, "overlay")


def bundle_id(bundle_dir: str) -> str:
    with open(os.path.join(bundle_dir, CONTENTS, ID_FILE)) as f:
        return f.read().strip()


def _write_id(built: str) -> None:
    """A content hash of the whole bundle, so the installer can tell 'unchanged' cheaply."""
    digest = hashlib.sha256()
    for base, dirs, files in os.walk(built):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(base, name)
            digest.update(os.path.relpath(path, built).encode() + b"\0")
            with open(path, "rb") as f:
                digest.update(hashlib.sha256(f.read()).digest())
    with open(os.path.join(built, CONTENTS, ID_FILE), "w") as f:
        f.write(digest.hexdigest() + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cni_plugin.bundle", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="build DIR/overlay and DIR/overlay.d/")
    b.add_argument("--out", required=True, help="output directory")
    args = parser.parse_args(argv)
    try:
        print(build(args.out))
    except BundleError as err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
