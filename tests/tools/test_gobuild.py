"""tools/gobuild/build.sh: the cache of Go-built binaries (Kubernetes, etcd, flanneld, ...).

A real `go build` of a tiny module into a temporary cache: an entry appears only whole, a warm run
builds nothing, a failed or interrupted build leaves no entry and no scratch directory, and a
machine without Go (or with an old one) is told what to install.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(REPO, "tools", "gobuild", "build.sh")
GO = shutil.which("go") or "/usr/local/go/bin/go"

pytestmark = pytest.mark.skipif(not os.access(GO, os.X_OK), reason="needs Go (make kube-bins needs it too)")


def module(tmp_path, body='package main\nfunc main() { println("hi") }\n'):
    mod = tmp_path / "mod"
    (mod / "hello").mkdir(parents=True)
    (mod / "go.mod").write_text("module example.test/mod\n\ngo 1.21\n")
    (mod / "hello" / "main.go").write_text(body)
    return mod


def build(mod, cache, *pkgs, path=None, release="v1.0.0"):
    env = dict(os.environ, OVERLAYD_BIN_CACHE=str(cache), GOFLAGS="-mod=mod")
    if path is not None:
        env["PATH"] = path
    return subprocess.run([BUILD, str(mod), release, "-s -w", *pkgs], capture_output=True, text=True,
                          env=env, timeout=300)


def leftovers(cache):
    return [p for p in (cache / "mod").iterdir() if p.name.startswith(".")] if (cache / "mod").exists() else []


def test_builds_into_an_entry_keyed_by_release_and_a_warm_run_builds_nothing(tmp_path):
    mod, cache = module(tmp_path), tmp_path / "cache"
    first = build(mod, cache, "example.test/mod/hello", "greeter=example.test/mod/hello")
    assert first.returncode == 0, first.stderr
    entry = cache / "mod" / "v1.0.0"
    assert subprocess.run([entry / "hello"], capture_output=True, text=True).stderr == "hi\n"
    assert os.access(entry / "greeter", os.X_OK)           # name=pkg names the binary
    mtime = (entry / "hello").stat().st_mtime_ns
    warm = build(mod, cache, "example.test/mod/hello", "greeter=example.test/mod/hello")
    assert warm.returncode == 0 and warm.stderr == ""       # nothing to do, nothing said
    assert (entry / "hello").stat().st_mtime_ns == mtime
    assert not leftovers(cache)


def test_a_failed_build_leaves_no_entry_and_keeps_the_old_one_whole(tmp_path):
    mod, cache = module(tmp_path), tmp_path / "cache"
    assert build(mod, cache, "example.test/mod/hello").returncode == 0
    (mod / "broken").mkdir()
    (mod / "broken" / "main.go").write_text("package main\nfunc main() { nope }\n")
    failed = build(mod, cache, "example.test/mod/hello", "example.test/mod/broken")
    assert failed.returncode != 0 and "undefined: nope" in failed.stderr
    assert sorted(p.name for p in (cache / "mod" / "v1.0.0").iterdir()) == ["hello"]
    fresh = build(mod, cache, "example.test/mod/broken", release="v2.0.0")
    assert fresh.returncode != 0 and not (cache / "mod" / "v2.0.0").exists()
    assert not leftovers(cache)


def test_an_interrupted_build_leaves_no_entry(tmp_path):
    mod, cache = module(tmp_path), tmp_path / "cache"
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    # A `go` that answers the version check and then builds forever, like a cold Kubernetes build.
    (fakebin / "go").write_text(f'#!/bin/sh\n[ "$1" = env ] && exec {GO} "$@"\ntouch {tmp_path}/started\nexec sleep 60\n')
    (fakebin / "go").chmod(0o755)
    env = dict(os.environ, OVERLAYD_BIN_CACHE=str(cache), PATH=f"{fakebin}:{os.environ['PATH']}")
    proc = subprocess.Popen([BUILD, str(mod), "v1.0.0", "", "example.test/mod/hello"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert leftovers(cache), "the build works in a scratch directory beside the entry"
        os.killpg(proc.pid, signal.SIGTERM)                  # Ctrl-C / CI's timeout
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not (cache / "mod" / "v1.0.0").exists()
    assert not leftovers(cache)


def test_without_go_or_with_an_old_go_it_says_what_to_install(tmp_path):
    mod, cache = module(tmp_path), tmp_path / "cache"
    nogo = tmp_path / "nogo"
    nogo.mkdir()
    for tool in ("bash", "basename", "dirname", "mktemp", "sed", "sort", "head", "rm", "mkdir", "cp", "env"):
        if shutil.which(tool):
            (nogo / tool).symlink_to(shutil.which(tool))
    missing = build(mod, cache, "example.test/mod/hello", path=str(nogo))
    assert missing.returncode == 1 and "needs Go 1.26 or newer" in missing.stderr and "install" in missing.stderr
    (nogo / "go").write_text('#!/bin/sh\necho go1.20.1\n')
    (nogo / "go").chmod(0o755)
    old = build(mod, cache, "example.test/mod/hello", path=str(nogo))
    assert old.returncode == 1 and "'go' is 1.20.1" in old.stderr and "Go 1.26+" in old.stderr
    assert not (cache / "mod").exists() or not any((cache / "mod").iterdir())
