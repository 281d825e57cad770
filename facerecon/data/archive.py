"""Safe extraction of zip and tar archives (and copying from extracted folders).

Archives come from outside (licensed downloads), so every extraction goes
through :func:`extract`, which:

1. lists and checks EVERY member first: no absolute paths, no ``..``
   components, no symlinks, hard links, devices, FIFOs or other special
   members (zip external attributes carry the unix mode), and a declared total
   uncompressed size within the limit (zip and tar readers never return more
   than a member's declared size, so this bounds the output);
2. only then extracts the selected members into a temporary sibling of the
   destination and moves them into place (one rename when the destination is
   new, one ``os.replace`` per file otherwise).

A refused archive therefore leaves nothing behind, and nothing is ever written
outside the destination. Errors are :class:`facerecon.io.InputError` naming the
archive and the offending members. An already-extracted folder can stand in for
an archive: its files are listed and copied the same way (symlinks inside it are
followed, since it is the user's own tree, and no size limit applies).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from facerecon.io import InputError

_SHOWN = 10  # offending members named per error
_ARCHIVE_ERRORS = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, RuntimeError,
                   NotImplementedError)


@dataclass(frozen=True)
class Member:
    """One archive entry: name as stored, declared size, and kind."""

    name: str
    size_bytes: int
    kind: str  # file, dir, symlink, hard link, device, fifo or special


def _zip_kind(info: zipfile.ZipInfo) -> str:
    """Kind of a zip entry from its name and the unix mode in the external attributes."""
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "special"
    if info.is_dir() or stat.S_ISDIR(mode):
        return "dir"
    return "file"  # regular mode, or no unix mode at all (zips made on Windows)


def _tar_kind(info: tarfile.TarInfo) -> str:
    """Kind of a tar entry."""
    if info.isreg():
        return "file"
    if info.isdir():
        return "dir"
    if info.issym():
        return "symlink"
    if info.islnk():
        return "hard link"
    if info.ischr() or info.isblk():
        return "device"
    if info.isfifo():
        return "fifo"
    return "special"


def _format(source: Path) -> str:
    """'dir', 'tar' or 'zip'; InputError if the source is none of them."""
    if source.is_dir():
        return "dir"
    if not source.is_file():
        raise InputError(f"{source}: archive not found")
    if tarfile.is_tarfile(source):  # tested first: a tar may end with an embedded zip
        return "tar"
    if zipfile.is_zipfile(source):
        return "zip"
    raise InputError(f"{source}: neither a zip nor a tar archive")


def list_members(source: str | os.PathLike) -> list[Member]:
    """Every entry of a zip or tar archive, or every regular file of a folder (relative
    '/'-joined names; symlinks followed)."""
    source = Path(source)
    kind = _format(source)
    if kind == "dir":
        return sorted((Member(path.relative_to(source).as_posix(), path.stat().st_size, "file")
                       for folder, _, files in os.walk(source)
                       for path in (Path(folder, name) for name in files) if path.is_file()),
                      key=lambda m: m.name)
    try:
        if kind == "zip":
            with zipfile.ZipFile(source) as zf:
                return [Member(i.filename, i.file_size, _zip_kind(i)) for i in zf.infolist()]
        with tarfile.open(source, "r:*") as tf:
            return [Member(i.name, i.size, _tar_kind(i)) for i in tf.getmembers()]
    except _ARCHIVE_ERRORS as exc:
        raise InputError(f"{source}: unreadable archive ({type(exc).__name__}: {exc})") from None


def unsafe_reason(name: str) -> str | None:
    """Why a member name could escape the destination, or None if it cannot."""
    parts = re.split(r"[/\\]", name)
    if not name or "\x00" in name:
        return "empty name or NUL byte"
    if name[0] in "/\\" or re.match(r"[A-Za-z]:", name):
        return "absolute path"
    if ".." in parts:
        return "'..' path component"
    return None


def check_members(source: str | os.PathLike, members: list[Member],
                  max_uncompressed_bytes: int | None) -> None:
    """Refuse the whole archive if any member is unsafe or the total is too large."""
    problems = []
    for member in members:
        reason = unsafe_reason(member.name)
        if reason is None and member.kind not in ("file", "dir"):
            reason = f"{member.kind} member"
        if reason:
            problems.append(f"'{member.name}' ({reason})")
    if problems:
        shown = ", ".join(problems[:_SHOWN]) + (" ..." if len(problems) > _SHOWN else "")
        raise InputError(f"{source}: refused, {len(problems)} unsafe member(s): {shown}")
    total = sum(m.size_bytes for m in members)
    if max_uncompressed_bytes is not None and total > max_uncompressed_bytes:
        largest = max(members, key=lambda m: m.size_bytes)
        raise InputError(f"{source}: refused, declared uncompressed size {total:,} bytes exceeds "
                         f"the limit of {max_uncompressed_bytes:,} bytes (largest member "
                         f"'{largest.name}', {largest.size_bytes:,} bytes)")


def inventory(source: str | os.PathLike, max_uncompressed_bytes: int | None) -> list[str]:
    """Names of the regular files of a checked archive or folder (see :func:`check_members`).

    Folders have no size limit: they are already on disk.
    """
    members = list_members(source)
    limit = None if Path(source).is_dir() else max_uncompressed_bytes
    check_members(source, members, limit)
    return [m.name for m in members if m.kind == "file"]


@contextmanager
def _reader(source: Path) -> Iterator[Callable[[str], BinaryIO]]:
    """Yield ``open_member(name) -> binary stream`` for an archive or a folder."""
    kind = _format(source)
    if kind == "dir":
        yield lambda name: open(source / name, "rb")
    elif kind == "zip":
        with zipfile.ZipFile(source) as zf:
            yield zf.open
    else:
        with tarfile.open(source, "r:*") as tf:
            yield tf.extractfile


def move_tree(staging: Path, dest: Path) -> None:
    """Move the files under ``staging`` into ``dest``: one rename if ``dest`` does not
    exist yet, else an ``os.replace`` per file (each atomic); ``staging`` is then removed."""
    if not dest.exists():
        try:
            os.rename(staging, dest)
            return
        except OSError:  # another job created dest meanwhile: merge below
            if not dest.is_dir():
                raise
    for folder, _, files in os.walk(staging):
        target_folder = dest / Path(folder).relative_to(staging)
        target_folder.mkdir(parents=True, exist_ok=True)
        for name in files:
            os.replace(Path(folder, name), target_folder / name)
    shutil.rmtree(staging)


def extract(source: str | os.PathLike, dest: str | os.PathLike,
            members: Mapping[str, str] | None = None, *,
            max_uncompressed_bytes: int | None) -> list[Path]:
    """Check the whole archive, then extract ``members`` (member name -> path relative to
    ``dest``; default: every file under its own name) atomically; returns the paths written.
    """
    source, dest = Path(source), Path(dest)
    names = inventory(source, max_uncompressed_bytes)
    selection = dict(members) if members is not None else {n: n for n in names}
    absent = sorted(set(selection) - set(names))
    if absent:
        raise InputError(f"{source}: no file member(s) {', '.join(absent[:_SHOWN])}")
    bad_targets = [t for t in selection.values() if unsafe_reason(t)]
    if bad_targets:
        raise ValueError(f"extraction targets would leave the destination: {bad_targets}")

    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.extract-"))
    try:
        with _reader(source) as open_member:
            for name, target in selection.items():
                path = staging / target
                path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with open_member(name) as src, open(path, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                except _ARCHIVE_ERRORS as exc:
                    raise InputError(f"{source}: cannot extract member '{name}' "
                                     f"({type(exc).__name__}: {exc})") from None
        move_tree(staging, dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return [dest / target for target in selection.values()]

