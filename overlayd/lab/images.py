"""The lab's container images, made on this machine (no registry, no Docker) and imported with ctr.

    pause    localhost/overlayd-lab/pause:1      a static pause binary compiled here (gcc -static)
    test     localhost/overlayd-lab/test:1       Debian's busybox-static: sh, ip, ping, sleep, nc,
                                                 httpd, wget, ... (every applet, linked in /bin), and
                                                 /bin/udp (UDP_C, compiled here: Debian's busybox
                                                 nc has no -u, and no other applet serves UDP)
    overlayd docker.io/library/overlayd:0.1.0    (the name manifests/overlayd.yaml uses) /opt/overlayd
                                                 as image/assemble.sh makes it, plus the runtime the
                                                 Dockerfile's second stage installs (python3, iproute2,
                                                 iptables, nftables) taken from this Debian 12 machine
                                                 with the shared libraries they link (ldd)

Archives are cached under IMAGE_CACHE keyed by what they are made of (the overlayd image: a hash
of the source files image/assemble.sh copies), so a warm `lab up` only imports them.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from typing import Callable, Iterable

from .netns import LabError
from .oci_archive import Entry, ImageConfig, tree_entries, write_archive

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE_CACHE = os.environ.get("OVERLAYD_IMAGE_CACHE", "/var/cache/overlayd-images")
PAUSE = "localhost/overlayd-lab/pause:1"
TEST = "localhost/overlayd-lab/test:1"
OVERLAYD = "docker.io/library/overlayd:0.1.0"
BUSYBOX = "/bin/busybox"
SHELL_TOOLS = ("dash", "cp", "mv", "rm", "chmod", "mkdir", "cat", "ls", "env", "sleep")
# Bump when runtime_entries() or the archive format changes what the overlayd image holds.
BUILDER_VERSION = 4
# What image/assemble.sh copies from the source tree: a change here means a new overlayd image.
# README.md is copied too (setup.cfg's long_description) but left out of the key: prose changes
# nothing the image runs, and a rebuild costs minutes.
SOURCES = ("setup.cfg", "pyproject.toml", "subnet_lease", "overlayd", "cni_plugin", "image")

PAUSE_C = r"""
/* The pod sandbox's process: sleeps until told to stop, reaps orphans (it is PID 1). */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
    signal(SIGINT, stop);
    signal(SIGTERM, stop);
    signal(SIGCHLD, reap);
    for (;;) pause();
}
"""


UDP_C = r"""
/* udp: a UDP server and client for the test image (Debian's busybox nc cannot do UDP).
 *   udp serve PORT TEXT       answer every datagram with TEXT (IPv4 and IPv6)
 *   udp probe IP PORT SECS    send a datagram every 0.5 s until an answer comes: print it and
 *                             exit 0; exit 1 when none came within SECS (or the port refused) */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int serve(int port, const char *text) {
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_ANY_INIT};
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = INADDR_ANY};
    int off = 0, s = socket(AF_INET6, SOCK_DGRAM, 0);
    if (s >= 0) {
        setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
        if (bind(s, (struct sockaddr *)&a6, sizeof a6) < 0) { close(s); s = -1; }
    }
    if (s < 0 && ((s = socket(AF_INET, SOCK_DGRAM, 0)) < 0 || bind(s, (struct sockaddr *)&a4, sizeof a4) < 0)) {
        perror("udp serve");
        return 2;
    }
    for (;;) {
        char buf[512];
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        if (recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len) >= 0)
            sendto(s, text, strlen(text), 0, (struct sockaddr *)&peer, len);
    }
}

static int probe(const char *ip, int port, int secs) {
    struct sockaddr_storage sa = {0};
    struct sockaddr_in *a4 = (struct sockaddr_in *)&sa;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&sa;
    socklen_t len;
    if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET, a4->sin_port = htons(port), len = sizeof *a4;
    } else if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6, a6->sin6_port = htons(port), len = sizeof *a6;
    } else {
        fprintf(stderr, "udp probe: not an address: %s\n", ip);
        return 2;
    }
    int s = socket(sa.ss_family, SOCK_DGRAM, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&sa, len) < 0) {
        perror("udp probe");
        return 2;
    }
    for (int i = 0; i < secs * 2; i++) {
        struct pollfd p = {.fd = s, .events = POLLIN};
        char buf[512];
        send(s, "probe", 5, 0);
        if (poll(&p, 1, 500) == 1) {
            ssize_t n = recv(s, buf, sizeof buf - 1, 0);
            if (n < 0)
                return 1;                 /* refused: ICMP port unreachable */
            buf[n] = 0;
            printf("%s\n", buf);
            return 0;
        }
    }
    return 1;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "serve"))
        return serve(atoi(argv[2]), argv[3]);
    if (argc == 5 && !strcmp(argv[1], "probe"))
        return probe(argv[2], atoi(argv[3]), atoi(argv[4]));
    fprintf(stderr, "usage: udp serve PORT TEXT | udp probe IP PORT SECS\n");
    return 2;
}
"""


@dataclasses.dataclass(frozen=True)
class Image:
    name: str
    archive: str


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise LabError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}): "
                       f"{(proc.stderr or proc.stdout).strip()[-3000:]}")
    return proc


def _cached(key: str, build: Callable[[str], None]) -> str:
    """IMAGE_CACHE/<key>.tar, built by build(path) unless present (write_archive: tmp then rename)."""
    os.makedirs(IMAGE_CACHE, exist_ok=True)
    out = os.path.join(IMAGE_CACHE, f"{key}.tar")
    if not os.path.exists(out):
        build(out)
    return out


def compile_static(source: str, name: str, directory: str) -> str:
    """A C program compiled here (gcc -static): the path of the executable, in `directory`."""
    src, exe = os.path.join(directory, f"{name}.c"), os.path.join(directory, name)
    with open(src, "w") as f:
        f.write(source)
    _run(["gcc", "-static", "-Os", "-s", "-o", exe, src])
    return exe


def pause_image(log=lambda m: None) -> Image:
    key = "pause-" + hashlib.sha256(PAUSE_C.encode()).hexdigest()[:16]

    def build(out: str) -> None:
        log("building the pause image (gcc -static)")
        with tempfile.TemporaryDirectory() as tmp:
            exe = compile_static(PAUSE_C, "pause", tmp)
            write_archive(out, ImageConfig(PAUSE, entrypoint=("/pause",)), [Entry("/pause", source=exe, mode=0o755)])
    return Image(PAUSE, _cached(key, build))


def busybox_entries(applets: Iterable[str] | None = None, where: str = "/bin") -> list[Entry]:
    """<where>/busybox and a symlink per applet (all of them, or only those named)."""
    if not os.access(BUSYBOX, os.X_OK):
        raise LabError(f"{BUSYBOX} is missing: apt-get install busybox-static")
    listed = _run([BUSYBOX, "--list"]).stdout.split()
    wanted = listed if applets is None else [a for a in applets if a in listed]
    return [Entry(f"{where}/busybox", source=os.path.realpath(BUSYBOX), mode=0o755),
            *(Entry(f"{where}/{a}", link="busybox") for a in wanted if a != "busybox")]


def test_image(log=lambda m: None) -> Image:
    version = _run([BUSYBOX, "--help"]).stdout.splitlines()[0] if os.path.exists(BUSYBOX) else ""
    key = "test-" + hashlib.sha256((version + UDP_C).encode()).hexdigest()[:16]

    def build(out: str) -> None:
        log(f"building the test image ({version.strip()}, and /bin/udp)")
        with tempfile.TemporaryDirectory() as tmp:
            udp = compile_static(UDP_C, "udp", tmp)
            entries = busybox_entries() + [Entry("/bin/udp", source=udp, mode=0o755), Entry("/tmp", mode=0o1777),
                                           Entry("/etc/passwd", data=b"root:x:0:0:root:/:/bin/sh\n"),
                                           Entry("/etc/group", data=b"root:x:0:\n")]
            write_archive(out, ImageConfig(TEST, cmd=("sh",), env=("PATH=/bin",)), entries)
    return Image(TEST, _cached(key, build))


# -- the overlayd image ------------------------------------------------------------------------

def source_hash(repo: str = REPO) -> str:
    """What the overlayd image is made of: the sources assemble.sh copies (less the lab, which
    nothing in the image runs)."""
    h = hashlib.sha256()
    for top in SOURCES:
        path = os.path.join(repo, top)
        files = [path] if os.path.isfile(path) else sorted(
            os.path.join(r, f) for r, d, fs in os.walk(path) for f in fs
            if "__pycache__" not in r and "/native/build" not in r and not f.endswith(".pyc")
            and not r.startswith(os.path.join(repo, "overlayd", "lab")))
        for f in files:
            h.update(os.path.relpath(f, repo).encode() + b"\0")
            with open(f, "rb") as fh:
                h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()[:16]


_LDD = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x")


def shared_libraries(paths: Iterable[str]) -> set[str]:
    """Every shared library (and the loader) the given ELF files link, as ldd resolves them."""
    libs: set[str] = set()
    for path in paths:
        proc = subprocess.run(["ldd", path], capture_output=True, text=True)
        if proc.returncode != 0:      # static, or not an ELF file
            continue
        libs.update(m.group(1) for m in map(_LDD.search, proc.stdout.splitlines()) if m)
    return libs


def host_file_entries(path: str) -> list[Entry]:
    """A file of this machine at the same place in the image, following symlinks (each link kept)."""
    out = []
    seen = set()
    while path not in seen:
        seen.add(path)
        where = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
        if os.path.islink(path):
            target = os.readlink(path)
            out.append(Entry(where, link=target))
            path = os.path.normpath(os.path.join(os.path.dirname(where), target))
        else:
            out.append(Entry(where, source=path))
            break
    return out


def runtime_entries() -> list[Entry]:
    """What the Dockerfile's runtime stage installs, from this machine: python3, ip, iptables, nft."""
    py = os.path.realpath("/usr/bin/python3")
    xtables = shutil.which("xtables-nft-multi") or "/usr/sbin/xtables-nft-multi"
    tools = [py, shutil.which("ip") or "/usr/bin/ip", shutil.which("nft") or "/usr/sbin/nft", xtables]
    for t in tools:
        if not os.path.exists(t):
            raise LabError(f"{t} is missing: the overlayd image takes it from this machine "
                           f"(apt-get install python3 iproute2 iptables nftables)")
    stdlib = os.path.join("/usr/lib", os.path.basename(py))
    xt_mods = sorted(glob.glob("/usr/lib/x86_64-linux-gnu/xtables/*.so"))
    dynload = sorted(glob.glob(os.path.join(stdlib, "lib-dynload", "*.so")))
    entries = [Entry("/bin", link="usr/bin"), Entry("/sbin", link="usr/sbin"), Entry("/lib", link="usr/lib"),
               Entry("/lib64", link="usr/lib64"), Entry("/tmp", mode=0o1777), Entry("/run"), Entry("/proc"),
               Entry("/sys"), Entry("/dev")]
    for t in tools:
        entries += host_file_entries(t)
    entries.append(Entry("/usr/bin/python3", link=os.path.basename(py)))
    for name in ("iptables", "iptables-restore", "iptables-save", "ip6tables", "ip6tables-restore", "ip6tables-save"):
        entries.append(Entry(f"/usr/sbin/{name}", link="xtables-nft-multi"))
    # the standard library, less its test suite and the static libraries for embedding
    entries += [e for e in tree_entries(stdlib, stdlib)
                if not e.path.startswith((f"{stdlib}/test/", f"{stdlib}/config-"))]
    entries += tree_entries("/usr/lib/x86_64-linux-gnu/xtables", "/usr/lib/x86_64-linux-gnu/xtables")
    for lib in sorted(shared_libraries(tools + xt_mods + dynload)):
        entries += host_file_entries(lib)
    for etc in ("/etc/protocols", "/etc/services", "/etc/ethertypes", "/etc/nsswitch.conf"):
        if os.path.exists(etc):
            entries.append(Entry(etc, source=etc))
    entries += [Entry("/etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n"), Entry("/etc/group", data=b"root:x:0:\n")]
    # A POSIX shell and the few tools install-reference-plugins uses: dash and coreutils, as in
    # debian:bookworm-slim (busybox's sh would run its own applets, `ip` too, before PATH's).
    shell = [shutil.which(t) or f"/bin/{t}" for t in SHELL_TOOLS]
    for t in shell:
        entries += host_file_entries(t)
    entries.append(Entry("/usr/bin/sh", link="dash"))
    for lib in sorted(shared_libraries(shell)):
        entries += host_file_entries(lib)
    return entries


def assemble(root: str, log=lambda m: None) -> None:
    """image/assemble.sh ROOT (the Dockerfile's build step), run from this repository."""
    log("assembling /opt/overlayd with image/assemble.sh (pip installs and a PyInstaller build: a few minutes)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_NO_COMPILE"] = "1"
    _run(["bash", os.path.join(REPO, "image", "assemble.sh"), root], env=env, cwd="/", timeout=900)


_SHEBANG = re.compile(rb"^#!\S*?(/opt/overlayd/venv/bin/)")


def _relocated(e: Entry) -> Entry:
    """pip wrote the venv's scripts with the assembly ROOT in their #! line; in the image ROOT is /."""
    if e.source and "/venv/bin/" in e.source:
        with open(e.source, "rb") as f:
            data = f.read()
        fixed = _SHEBANG.sub(rb"#!\1", data, count=1)
        if fixed != data:
            return Entry(e.path, data=fixed, mode=os.stat(e.source).st_mode & 0o7777)
    return e


def assembled_root(src: str, log=lambda m: None) -> str:
    """IMAGE_CACHE/assembled-<src>: the ROOT image/assemble.sh filled (kept: it takes minutes)."""
    root = os.path.join(IMAGE_CACHE, f"assembled-{src}")
    if not os.path.isdir(root):
        os.makedirs(IMAGE_CACHE, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=IMAGE_CACHE, prefix=".assembling-")
        try:
            assemble(tmp, log)
            # The Dockerfile's pip compiles .pyc files; assemble.sh here ran with PIP_NO_COMPILE.
            # Without them the daemon spends minutes of its CPU limit importing its libraries.
            log("compiling the venv's .pyc files")
            _run([os.path.join(tmp, "opt/overlayd/venv/bin/python"), "-m", "compileall", "-q", "-j", "0",
                  os.path.join(tmp, "opt/overlayd/venv/lib")], timeout=900)
            os.rename(tmp, root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return root


def _prune(pattern: str, keep: str) -> None:
    """Older source trees' images and roots (hundreds of MB each) are not kept."""
    for stale in glob.glob(os.path.join(IMAGE_CACHE, pattern)):
        if stale != keep:
            if os.path.isdir(stale):
                shutil.rmtree(stale, ignore_errors=True)
            else:
                try:
                    os.unlink(stale)
                except FileNotFoundError:
                    pass


def overlayd_image(log=lambda m: None) -> Image:
    src = source_hash()
    root = assembled_root(src, log)
    _prune("assembled-*", root)

    def build(out: str) -> None:
        prefix = os.path.join(root, "opt", "overlayd")
        entries = runtime_entries() + [_relocated(e) for e in tree_entries(prefix, "/opt/overlayd")]
        so = [e.source for e in entries if e.source and e.source.startswith(prefix) and ".so" in e.source]
        for lib in sorted(shared_libraries(so)):
            entries += host_file_entries(lib)
        log("writing the overlayd image archive")
        write_archive(out, ImageConfig(OVERLAYD, entrypoint=("/opt/overlayd/bin/overlayd",),
                                       env=("PATH=/opt/overlayd/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                                            "/usr/bin:/sbin:/bin", "PYTHONUNBUFFERED=1")), entries)
    archive = _cached(f"overlayd-{src}-b{BUILDER_VERSION}", build)
    _prune("overlayd-*.tar", archive)
    return Image(OVERLAYD, archive)


def all_images(log=lambda m: None) -> dict[str, Image]:
    return {"pause": pause_image(log), "test": test_image(log), "overlayd": overlayd_image(log)}
