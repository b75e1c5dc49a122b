"""Extract an untrusted model archive (.tar, .tar.gz/.bz2/.xz, .zip) without letting it write outside its
folder: no absolute or ``..`` paths, links, devices or FIFOs, and caps on members and uncompressed bytes."""

from __future__ import annotations

import os
import re
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from .errors import ModelInstallError

DEFAULT_MAX_ARCHIVE_BYTES = 1 << 30      # 1 GiB uncompressed; the official archives are ~20-30 MB
DEFAULT_MAX_MEMBERS = 1000
_CHUNK = 1 << 20


def _member_target(dest: Path, name: str) -> Path:
    """Map an archive member name to a path inside ``dest`` or refuse it."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or re.match(r"^[A-Za-z]:", name):
        raise ModelInstallError(f"archive member {name!r} has an absolute or non-POSIX path")
    parts = [part for part in PurePosixPath(name).parts if part not in ("", ".")]
    if any(part == ".." for part in parts):
        raise ModelInstallError(f"archive member {name!r} escapes the archive with '..'")
    target = dest.joinpath(*parts) if parts else dest
    resolved_dest = dest.resolve()
    if os.path.commonpath([resolved_dest, target.resolve()]) != str(resolved_dest):
        raise ModelInstallError(f"archive member {name!r} resolves outside the archive")
    return target


def _stream_to(source, target: Path, budget: list[int], member: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        for chunk in iter(lambda: source.read(_CHUNK), b""):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise ModelInstallError(f"archive is larger than allowed (stopped at {member!r})")
            out.write(chunk)


def safe_extract(archive: str | Path, dest: str | Path, *,
                 max_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES,
                 max_members: int = DEFAULT_MAX_MEMBERS) -> Path:
    """Extract a .tar(.gz/.bz2/.xz) or .zip into ``dest``, refusing anything unsafe.

    Only regular files and directories are accepted; absolute paths, ``..``, symlinks,
    hard links and device/FIFO members abort the whole extraction, as does exceeding
    ``max_bytes`` of uncompressed data (counted while writing) or ``max_members`` entries.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    budget = [max_bytes]
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            if len(members) > max_members:
                raise ModelInstallError(f"archive has {len(members)} entries (limit {max_members})")
            for info in members:
                file_type = stat.S_IFMT(info.external_attr >> 16)  # 0 when no Unix mode stored
                if file_type == stat.S_IFLNK:
                    raise ModelInstallError(f"archive member {info.filename!r} is a symbolic link")
                if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise ModelInstallError(f"archive member {info.filename!r} is not a regular file")
                target = _member_target(dest, info.filename)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                with bundle.open(info) as handle:
                    _stream_to(handle, target, budget, info.filename)
        return dest
    try:
        bundle = tarfile.open(archive, mode="r:*")
    except (tarfile.TarError, OSError) as exc:
        raise ModelInstallError(f"{archive.name} is not a .tar, .tar.gz or .zip archive") from exc
    with bundle:
        count = 0
        for member in bundle:
            count += 1
            if count > max_members:
                raise ModelInstallError(f"archive has more than {max_members} entries")
            if member.issym() or member.islnk():
                raise ModelInstallError(f"archive member {member.name!r} is a link")
            if not (member.isreg() or member.isdir()):
                raise ModelInstallError(f"archive member {member.name!r} is not a regular file")
            target = _member_target(dest, member.name)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            if member.size > budget[0]:
                raise ModelInstallError(f"archive is larger than allowed (at {member.name!r})")
            handle = bundle.extractfile(member)
            if handle is None:
                raise ModelInstallError(f"cannot read archive member {member.name!r}")
            with handle:
                _stream_to(handle, target, budget, member.name)
    return dest


__all__ = ["DEFAULT_MAX_ARCHIVE_BYTES", "DEFAULT_MAX_MEMBERS", "safe_extract"]
