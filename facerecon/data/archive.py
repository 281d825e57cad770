"""Safe extraction of zip and tar archives (and copying from extracted folders).

Archives come from outside (licensed downloads), so every extraction goes
through :func:`extract`, which:

1. lists and checks EVERY member first: no absolute paths, no ``..``
   components, no symlinks, hard links, devices, FIFOs or other special
   members (zip external attributes carry the unix mode), a declared total
   uncompressed size within the limit (zip and tar readers never return more
   than a member's declared size, so this bounds the output), no path stored
   twice with different contents (identical copies are accepted and extracted
   once) and no file whose path is also a folder of another member;
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

import hashlib
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections import Counter
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
    index: int = -1  # position among the archive's entries (-1: a file of a folder)
    crc: int | None = None  # CRC-32 of a zip entry's data (None in tars and folders)


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
                return [Member(i.filename, i.file_size, _zip_kind(i), n, i.CRC)
                        for n, i in enumerate(zf.infolist())]
        with tarfile.open(source, "r:*") as tf:
            return [Member(i.name, i.size, _tar_kind(i), n)
                    for n, i in enumerate(tf.getmembers())]
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


def target_path(name: str) -> str:
    """The path a member name lands on under the destination, as pathlib reads it on POSIX:
    empty and '.' components dropped ('./a//b/' -> 'a/b'; '' for the destination itself).

    Only '/' separates: a backslash is an ordinary character of a Linux file name. Case
    and Unicode form are kept as stored: Linux file names are case-sensitive, so 'A/b' and
    'a/b' are two different files, not a duplicate (on a case-insensitive file system such
    as macOS's or Windows' default they would collide; this code targets Linux).
    """
    return "/".join(part for part in name.split("/") if part not in ("", "."))


def _clashes(entries: list[tuple[str, str, bool]]) -> dict[str, tuple[str, str]]:
    """File/folder clashes among (name, target path, is a file) entries: target path of each
    clashing file -> (the file's name, the name of one entry needing that path as a folder:
    an entry below it, or a directory entry of the same path)."""
    files = {path: name for name, path, is_file in entries if is_file}
    found: dict[str, tuple[str, str]] = {}
    for name, path, is_file in entries:
        if not is_file and path in files:  # directory entry 'a/b/' beside a file 'a/b'
            found.setdefault(path, (files[path], name))
        parts = path.split("/")
        for depth in range(1, len(parts)):  # every proper ancestor folder of the entry
            ancestor = "/".join(parts[:depth])
            if ancestor in files:
                found.setdefault(ancestor, (files[ancestor], name))
    return found


def _sha256(stream: BinaryIO) -> bytes:
    digest = hashlib.sha256()
    for chunk in iter(lambda: stream.read(1 << 20), b""):
        digest.update(chunk)
    return digest.digest()


def _digests(source: Path, members: list[Member]) -> dict[int, bytes]:
    """SHA-256 of the data of the given archive entries, by entry index (reads only these)."""
    digests = {}
    try:
        if _format(source) == "zip":
            with zipfile.ZipFile(source) as zf:
                infos = zf.infolist()
                for member in members:
                    with zf.open(infos[member.index]) as stream:
                        digests[member.index] = _sha256(stream)
        else:
            with tarfile.open(source, "r:*") as tf:
                infos = tf.getmembers()
                for member in members:
                    stream = tf.extractfile(infos[member.index])
                    assert stream is not None  # a regular file: only those are compared
                    with stream:
                        digests[member.index] = _sha256(stream)
    except _ARCHIVE_ERRORS as exc:
        raise InputError(f"{source}: unreadable archive ({type(exc).__name__}: {exc})") from None
    return digests


def _conflicts(source: Path, members: list[Member]) -> list[str]:
    """Duplicated files with different contents and file/folder clashes, over all members.

    Copies of one path (as :func:`target_path` resolves it) are identical when their sizes
    and zip CRCs agree and then their SHA-256 digests too: only such candidates are read.
    """
    copies: dict[str, list[Member]] = {}
    for member in members:
        if member.kind == "file":
            copies.setdefault(target_path(member.name), []).append(member)
    duplicated = {path: group for path, group in copies.items() if len(group) > 1}
    candidates = [m for group in duplicated.values()
                  if len({(m.size_bytes, m.crc) for m in group}) == 1 for m in group]
    digests = _digests(source, candidates) if candidates else {}
    problems = []
    for group in duplicated.values():
        if len({(m.size_bytes, m.crc, digests.get(m.index)) for m in group}) > 1:
            names = " and ".join(f"'{n}'" for n in dict.fromkeys(m.name for m in group))
            problems.append(f"{names} ({len(group)} copies with different contents)")
    clashes = _clashes([(m.name, target_path(m.name), m.kind == "file") for m in members])
    problems.extend(f"file '{file}' vs '{other}' (a path cannot be both a file and a folder)"
                    for file, other in clashes.values())
    return problems


def check_members(source: str | os.PathLike, members: list[Member],
                  max_uncompressed_bytes: int | None) -> None:
    """Refuse the whole archive if any member is unsafe, the total is too large, a path is
    stored twice with different contents or a file's path is also a folder of another member.

    Pass every member of the archive (:func:`list_members`): the checks compare each member
    with all the others, whatever selection is extracted afterwards. The contents of
    duplicated members of equal size (and zip CRC) are read to prove them identical.
    """
    problems = []
    for member in members:
        reason = unsafe_reason(member.name)
        if reason is None and member.kind not in ("file", "dir"):
            reason = f"{member.kind} member"
        if reason is None and member.kind == "file" and not target_path(member.name):
            reason = "file without a name"
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
    conflicts = _conflicts(Path(source), members)
    if conflicts:
        shown = ", ".join(conflicts[:_SHOWN]) + (" ..." if len(conflicts) > _SHOWN else "")
        raise InputError(f"{source}: refused, {len(conflicts)} conflicting member(s): {shown}")


def inventory(source: str | os.PathLike, max_uncompressed_bytes: int | None) -> list[str]:
    """Names of the regular files of a checked archive or folder (see :func:`check_members`),
    each path once: of identical copies, only the first name is listed.

    Folders have no size limit: they are already on disk.
    """
    members = list_members(source)
    limit = None if Path(source).is_dir() else max_uncompressed_bytes
    check_members(source, members, limit)
    first = {}
    for member in members:
        if member.kind == "file":
            first.setdefault(target_path(member.name), member.name)
    return list(first.values())


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

    The checks (:func:`check_members`) cover every member of the archive, not only the
    selected ones, and all run before anything is written.
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
    targets = Counter(target_path(t) for t in selection.values())
    shared = sorted(t for t, count in targets.items() if count > 1 or not t)
    clashes = _clashes([(t, t, True) for t in targets])
    if shared or clashes:
        raise ValueError(f"extraction targets collide: {shared or list(clashes.values())}")

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

