"""Build the self-contained plugin: `python -m cni_plugin.bundle build --out DIR`.

Result, the same layout as the source-tree launcher (cni_plugin.launcher):

    DIR/overlay              the native front end (cni_plugin/native/overlay.c, static when the
                             C library allows): kubelet runs it; it hands ADD and DEL to overlayd's
                             CNI service and execs overlay.d/overlay for everything else, and
                             whenever no service answers
    DIR/overlay.d/overlay    the full Python plugin, a PyInstaller one-dir build: its bootloader,
    DIR/overlay.d/...        with the interpreter library, the frozen stdlib subset the plugin
                             imports and our package beside it (`--contents-directory .`)
    DIR/overlay.d/.bundle-id a content hash of all of the above, front end included, so the
                             installer (cni_plugin.install) can tell "unchanged" cheaply

Nothing from the host's Python is used at run time; the host needs only glibc for overlay.d
(which every kubelet node has) and nothing at all for the front end. Why a native front end and
PyInstaller one-dir rather than a copied interpreter: see docs/install.md, "Self-contained install".
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

from . import frontend

CONTENTS = "overlay.d"
EXECUTABLE = "overlay"          # both the front end's name and the Python plugin's inside CONTENTS
ID_FILE = ".bundle-id"
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ENTRY = "import sys\nfrom cni_plugin.main import main\nsys.exit(main())\n"
# The plugin's lazy imports (dispatch by CNI_COMMAND) and the one C-level helper CHECK needs.
HIDDEN = ["cni_plugin.commands.add", "cni_plugin.commands.delete", "cni_plugin.commands.check",
          "cni_plugin.commands.status", "cni_plugin.commands.gc", "cni_plugin.commands.version",
          "ctypes", "json", "traceback"]
EXCLUDE = ["tkinter", "unittest", "pydoc", "doctest", "email", "http", "xml", "sqlite3", "asyncio",
           "multiprocessing", "lib2to3", "distutils", "setuptools", "pip", "pyroute2", "yaml",
           "kubernetes", "grpc", "pyetcd", "overlayd", "subnet_lease",
           # Never on the plugin's path, but reachable in the stdlib's import graph; _hashlib alone
           # brings OpenSSL's libcrypto (4.7 MB, a quarter of the bundle).
           "hashlib", "_hashlib", "ssl", "_ssl", "bz2", "_bz2", "lzma", "_lzma", "decimal", "_decimal"]


class BundleError(RuntimeError):
    pass


def build(out_dir: str, pyinstaller: list[str] | None = None, cc: str | None = None) -> str:
    """Build into out_dir (replacing a previous bundle there); returns the path of DIR/overlay."""
    pyinstaller = pyinstaller or [sys.executable, "-m", "PyInstaller"]
    with tempfile.TemporaryDirectory(prefix="overlay-bundle-") as work:
        entry = os.path.join(work, "overlay_entry.py")
        with open(entry, "w") as f:
            f.write(_ENTRY)
        # `--contents-directory .`: the bootloader's files sit beside it, so the whole one-dir
        # build is one directory whose executable is overlay.d/overlay.
        cmd = [*pyinstaller, "--noconfirm", "--clean", "--log-level", "WARN", "--onedir",
               "--name", EXECUTABLE, "--contents-directory", ".",
               "--distpath", os.path.join(work, "dist"), "--workpath", os.path.join(work, "build"),
               "--specpath", work, "--paths", _ROOT]
        for module in HIDDEN:
            cmd += ["--hidden-import", module]
        for module in EXCLUDE:
            cmd += ["--exclude-module", module]
        try:
            proc = subprocess.run([*cmd, entry], capture_output=True, text=True)
        except OSError as err:
            raise BundleError(f"cannot run PyInstaller ({' '.join(pyinstaller)}): {err.strerror}; "
                              "install it with `pip install 'pyinstaller>=6.0,<7'`") from None
        if proc.returncode != 0:
            raise BundleError(f"PyInstaller failed ({proc.returncode}):\n{proc.stderr[-3000:]}")

        staged = os.path.join(work, "bundle")
        os.makedirs(staged)
        os.rename(os.path.join(work, "dist", EXECUTABLE), os.path.join(staged, CONTENTS))
        if not os.access(os.path.join(staged, CONTENTS, EXECUTABLE), os.X_OK):
            raise BundleError(f"PyInstaller left no executable {CONTENTS}/{EXECUTABLE}; it must be "
                              "PyInstaller 6 or newer (`--contents-directory`)")
        try:
            frontend.build(os.path.join(staged, EXECUTABLE), cc=cc)
        except (frontend.FrontendError, OSError) as err:
            raise BundleError(f"cannot build the native front end: {err}") from None
        _write_id(staged)

        os.makedirs(out_dir, exist_ok=True)
        for name in (EXECUTABLE, CONTENTS):
            target = os.path.join(out_dir, name)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            elif os.path.lexists(target):
                os.unlink(target)
            shutil.move(os.path.join(staged, name), target)
    return os.path.join(out_dir, EXECUTABLE)


def bundle_id(bundle_dir: str) -> str:
    """The content hash build() recorded; OSError when bundle_dir holds no bundle."""
    with open(os.path.join(bundle_dir, CONTENTS, ID_FILE)) as f:
        return f.read().strip()


def content_hash(bundle_dir: str) -> str:
    """sha256 over DIR/overlay and every file under DIR/overlay.d/ (names and contents), .bundle-id aside."""
    digest = hashlib.sha256()
    paths = [os.path.join(bundle_dir, EXECUTABLE)]
    for base, dirs, files in os.walk(os.path.join(bundle_dir, CONTENTS)):
        dirs.sort()
        paths += [os.path.join(base, name) for name in sorted(files)]
    for path in paths:
        rel = os.path.relpath(path, bundle_dir)
        if rel == os.path.join(CONTENTS, ID_FILE):
            continue
        digest.update(rel.encode() + b"\0")
        if os.path.islink(path):
            digest.update(b"link:" + os.readlink(path).encode())
        else:
            with open(path, "rb") as f:
                digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


def _write_id(bundle_dir: str) -> None:
    with open(os.path.join(bundle_dir, CONTENTS, ID_FILE), "w") as f:
        f.write(content_hash(bundle_dir) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cni_plugin.bundle", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="build DIR/overlay (native front end) and DIR/overlay.d/ (the Python plugin)")
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
