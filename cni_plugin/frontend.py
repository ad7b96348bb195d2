"""Compile the native front end (native/*.c, main in overlay.c) into an `overlay` executable.

Static when the C library allows it (Debian's libc6-dev does), so the binary runs on any
x86-64 Linux node whatever its libc; dynamic otherwise. Built once per source version and
kept beside the source when that directory is writable.
"""
from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading

NATIVE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "native")
SOURCE = os.path.join(NATIVE, "overlay.c")          # main(), and the compiled-in defaults
CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror", "-D_FORTIFY_SOURCE=2"]


def sources() -> list[str]:
    """The C files of the front end; the headers beside them are part of its identity too."""
    return sorted(glob.glob(os.path.join(NATIVE, "*.c")))


class FrontendError(RuntimeError):
    pass


def source_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(NATIVE, "*.[ch]"))):
        digest.update(os.path.basename(path).encode() + b"\0")
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


def build(out_path: str, cc: str | None = None) -> str:
    """Write the executable to out_path (atomically); returns out_path."""
    cached = _cached()
    if cached is None:
        cached = _compile(cc)
    tmp = f"{out_path}.{os.getpid()}.{threading.get_ident()}.tmp"
    shutil.copyfile(cached, tmp)
    os.chmod(tmp, 0o755)
    os.rename(tmp, out_path)
    return out_path


def _cache_path() -> str:
    return os.path.join(os.path.dirname(SOURCE), "build", f"overlay-{source_digest()}")


def _cached() -> str | None:
    path = _cache_path()
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def _compile(cc: str | None) -> str:
    cc = cc or os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise FrontendError("no C compiler (cc) to build the native front end; install gcc and libc6-dev")
    cache = _cache_path()
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        target_dir = os.path.dirname(cache)
    except OSError:
        target_dir = tempfile.mkdtemp(prefix="overlay-frontend-")
    out = os.path.join(target_dir, os.path.basename(cache))
    tmp = f"{out}.{os.getpid()}.{threading.get_ident()}.tmp"
    errors = []
    for extra in (["-static"], []):
        proc = subprocess.run([cc, *CFLAGS, *extra, "-o", tmp, *sources()], capture_output=True, text=True)
        if proc.returncode == 0:
            os.rename(tmp, out)
            return out
        errors.append(proc.stderr.strip())
    raise FrontendError(f"cannot compile {NATIVE} with {cc}:\n" + "\n".join(errors)[-3000:])


def main(argv=None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m cni_plugin.frontend", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="path of the executable to write")
    args = parser.parse_args(argv)
    try:
        print(build(args.out))
    except FrontendError as err:
        print(err)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
