"""OCI image archives written locally, without a registry or a container engine.

An archive is what `ctr images import` reads: a tar holding `oci-layout`, `index.json` and
`blobs/sha256/<digest>`, one image of one uncompressed layer. The layer is made from plain
data: a list of Entry values (a file copied from this machine, bytes, a directory or a
symlink). Everything is written with uid/gid 0 and mtime 0, except a file copied from this
machine, which keeps its mtime (a .pyc names its source's mtime), so the same entries give the
same digests; `ctr` then finds the image already present and imports nothing twice.

The image's name travels as the `io.containerd.image.name` annotation of the manifest in
index.json (what containerd's importer reads) and as `org.opencontainers.image.ref.name`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import stat
import tarfile
from typing import Iterable, Optional

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One path of the image: exactly one of source (a file on this machine), data, link; or a dir."""
    path: str                       # absolute path in the image
    source: Optional[str] = None
    data: Optional[bytes] = None
    link: Optional[str] = None      # symlink target
    mode: Optional[int] = None      # default: the source's mode, 0o755 for dirs, 0o644 for data


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    name: str                               # e.g. docker.io/library/overlayd:0.1.0
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    workdir: str = "/"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _info(path: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(path.lstrip("/"))
    ti.type, ti.mode, ti.size, ti.mtime, ti.uid, ti.gid = kind, mode, size, 0, 0, 0
    ti.uname = ti.gname = "root"
    return ti


def _parents(path: str) -> list[str]:
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[:i + 1]) for i in range(len(parts))]


def layer_tar(entries: Iterable[Entry]) -> bytes:
    """The layer: every entry, its parent directories first, in a stable order."""
    entries = sorted(entries, key=lambda e: e.path)
    seen: set[str] = set()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            for parent in _parents(e.path):
                if parent not in seen:
                    seen.add(parent)
                    tar.addfile(_info(parent, tarfile.DIRTYPE, 0o755))
            if e.path in seen:
                continue
            seen.add(e.path)
            if e.link is not None:
                ti = _info(e.path, tarfile.SYMTYPE, 0o777)
                ti.linkname = e.link
                tar.addfile(ti)
            elif e.data is not None:
                tar.addfile(_info(e.path, tarfile.REGTYPE, e.mode or 0o644, len(e.data)), io.BytesIO(e.data))
            elif e.source is not None:
                st = os.stat(e.source)
                ti = _info(e.path, tarfile.REGTYPE, e.mode or stat.S_IMODE(st.st_mode), st.st_size)
                ti.mtime = int(st.st_mtime)      # Python's .pyc files name their source's mtime
                with open(e.source, "rb") as f:
                    tar.addfile(ti, f)
            else:
                tar.addfile(_info(e.path, tarfile.DIRTYPE, e.mode or 0o755))
    return buf.getvalue()


def tree_entries(src: str, dest: str) -> list[Entry]:
    """Entries for a whole directory tree of this machine, placed at dest in the image."""
    out = [Entry(dest)]
    for root, dirs, files in os.walk(src):
        rel = os.path.relpath(root, src)
        base = dest if rel == "." else os.path.join(dest, rel)
        for name in sorted(dirs + files):
            full = os.path.join(root, name)
            path = os.path.join(base, name)
            if os.path.islink(full):
                out.append(Entry(path, link=os.readlink(full)))
            elif os.path.isdir(full):
                out.append(Entry(path, mode=stat.S_IMODE(os.stat(full).st_mode)))
            elif os.path.isfile(full):
                out.append(Entry(path, source=full))
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
    return out


def write_archive(out: str, config: ImageConfig, entries: Iterable[Entry]) -> str:
    """Write the archive to out (atomically); returns the manifest digest."""
    layer = layer_tar(entries)
    layer_digest = _digest(layer)
    cfg = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": list(config.entrypoint) or None, "Cmd": list(config.cmd) or None,
                   "Env": list(config.env), "WorkingDir": config.workdir},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": "overlayd.lab.oci_archive"}],
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": _digest(cfg), "size": len(cfg)},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": layer_digest, "size": len(layer)}],
    }, sort_keys=True).encode()
    index = json.dumps({
        "schemaVersion": 2, "mediaType": MEDIA_INDEX,
        "manifests": [{"mediaType": MEDIA_MANIFEST, "digest": _digest(manifest), "size": len(manifest),
                       "platform": {"architecture": "amd64", "os": "linux"},
                       "annotations": {"io.containerd.image.name": config.name,
                                       "org.opencontainers.image.ref.name": config.name}}],
    }, sort_keys=True).encode()
    tmp = out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(path: str, data: bytes) -> None:
            tar.addfile(_info(path, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
        tar.addfile(_info("blobs", tarfile.DIRTYPE, 0o755))
        tar.addfile(_info("blobs/sha256", tarfile.DIRTYPE, 0o755))
        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", index)
        for blob in (layer, cfg, manifest):
            add("blobs/sha256/" + _digest(blob).split(":", 1)[1], blob)
    os.rename(tmp, out)
    return _digest(manifest)
