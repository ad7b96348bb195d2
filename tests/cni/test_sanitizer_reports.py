"""The sanitized front end's reports reach fuzz/check.sh even from a clean environment.

A runtime starts the front end with its own environment, so ASAN_OPTIONS/UBSAN_OPTIONS never
reach it: fuzz/sanitizer_options.c compiles them in. These positive controls build a small
program with a real bug the same way (fuzz/build.sh's flags plus that file) and check that the
report lands in the log directory with exit code 86, which is what check.sh looks for.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPTIONS = os.path.join(REPO, "fuzz", "sanitizer_options.c")

BUGS = {
    "heap-buffer-overflow": "#include <stdlib.h>\nint main(int c, char **v) { char *p = malloc(4);"
                            " p[c + 4] = 1; return p[0]; }\n",
    "signed integer overflow": "#include <limits.h>\nint main(int c, char **v) { int x = INT_MAX;"
                               " x += c; return x == 0; }\n",
}


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_a_bug_in_a_sanitized_build_is_reported_to_the_log_directory(tmp_path, bug):
    clang = shutil.which("clang")
    assert clang, "clang is missing: `make deb` installs it (DEB_PACKAGES)"
    logs = tmp_path / "logs"
    logs.mkdir()
    src = tmp_path / "bug.c"
    src.write_text(BUGS[bug])
    exe = tmp_path / "bug"
    subprocess.run([clang, "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                    f'-DSANITIZER_LOG="{logs}"', "-o", str(exe), str(src), OPTIONS], check=True)
    proc = subprocess.run([str(exe)], env={}, capture_output=True, text=True)
    assert proc.returncode == 86, (proc.returncode, proc.stderr)
    reports = list(logs.iterdir())
    assert len(reports) == 1 and bug in reports[0].read_text(), [r.read_text() for r in reports]
    assert bug not in proc.stderr                   # the report went to the file, not the runtime
