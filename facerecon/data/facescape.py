"""Import FaceScape TU scans (and optionally multi-view images) into FaceScape's layout.

FaceScape is licensed per researcher, so the pipeline only takes archives the
user already has (``facescape_trainset_*.zip``, members
``<id>/models_reg/<k>_<expression>.obj``, possibly under leading folders) or
folders where they were extracted, and takes from them ONLY the configured
(subject, expression) scans:

- every source is listed and checked first (:mod:`facerecon.data.archive`);
  if a configured scan is in none of them, the import fails before writing
  anything, with one error naming every missing subject/expression;
- the selected OBJs are extracted safely into a work folder beside the
  destination, re-written geometry only (``v`` and ``f`` lines, the TU vertex
  order kept; texture coordinates dropped so that no mesh loader splits
  vertices at UV seams), and each gets its 68-landmark sidecar from the TU
  landmark vertex indices (PROTOCOL.md);
- the finished files are then moved into the destination.

Vertex count: the landmark indices are only meaningful on the TU topology, so a
scan without exactly 26,317 vertices is an error (not a warning): wrong
landmarks would silently corrupt alignment and the landmark losses.

Multi-view images (``fsmview_trainset_images_XXX-YYY.zip``, members
``<id>/<k>_<expression>/<view>.jpg`` and ``params.json``), given with
``--images``, go to ``<dest>/<id>/images/<k>_<expression>/``; a configured scan
without images in any image source is an error too.

Command line::

    python -m facerecon.data.facescape import ARCHIVE [ARCHIVE ...] --dest DIR \
        --subjects ID [ID ...] --expressions K [K ...] [--images ARCHIVE ...] \
        [--max-uncompressed-gb 100]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import trimesh

from facerecon import io, layout
from facerecon.data import archive

#: Vertices of a FaceScape topologically uniformed (TU) mesh.
TU_VERTEX_COUNT = 26317

#: The 68 dlib-order landmarks as 0-based TU vertex indices (PROTOCOL.md, toolkit v1.0).
TU_LANDMARKS: tuple[int, ...] = (
    23404, 4607, 4615, 4655, 20356, 4643, 5022, 5013, 1681, 1692, 11470, 10441, 1336, 1343,
    1303, 1295, 2372, 6143, 6141, 6126, 6113, 6109, 2844, 2762, 2765, 2774, 2789, 6053, 6041,
    1870, 1855, 4728, 4870, 1807, 1551, 1419, 3434, 3414, 3447, 3457, 3309, 3373, 3179, 151,
    127, 143, 3236, 47, 21018, 4985, 4898, 6571, 1575, 1663, 1599, 1899, 12138, 5231, 21978,
    5101, 21067, 21239, 11378, 11369, 11553, 12048, 5212, 21892,
)

_SCAN_MEMBER = re.compile(r"(?:.*/)?(\d+)/models_reg/(\d+_[a-z_]+)\.obj")
_IMAGE_MEMBER = re.compile(r"(?:.*/)?(\d+)/(\d+_[a-z_]+)/([^/]+\.jpg|params\.json)")

Key = tuple[int, int]  # (subject, expression)


def _locate(sources: Sequence[Path], pattern: re.Pattern[str], wanted: set[Key], what: str,
            max_uncompressed_bytes: int | None) -> dict[Path, dict[str, tuple[Key, str]]]:
    """Per source, the members to take: member name -> (scan, the member's file name).

    Every source is checked in full (:func:`archive.inventory`); a scan found in
    several sources is taken from the first. If a wanted scan is in none of them,
    one InputError names every missing one.
    """
    located: dict[Path, dict[str, tuple[Key, str]]] = {}
    owner: dict[Key, Path] = {}
    for source in sources:
        located[source] = {}
        for name in archive.inventory(source, max_uncompressed_bytes):
            match = pattern.fullmatch(name)
            if not match:
                continue
            try:
                key = (int(match[1]), layout.expression_number(match[2]))
            except ValueError:
                continue
            if key in wanted and owner.setdefault(key, source) == source:
                located[source][name] = (key, name.rsplit("/", 1)[-1])
    missing = sorted(wanted - set(owner))
    if missing:
        raise io.InputError(_missing_message(missing, wanted, what, sources))
    return located


def _missing_message(missing: list[Key], wanted: set[Key], what: str,
                     sources: Sequence[Path]) -> str:
    """One line naming every missing scan: '3/5_jaw_left' or '7/* (all 15 expressions)'."""
    per_subject: dict[int, list[int]] = {}
    for subject, expression in missing:
        per_subject.setdefault(subject, []).append(expression)
    names = []
    for subject, expressions in per_subject.items():
        if len(expressions) == sum(1 for s, _ in wanted if s == subject) > 1:
            names.append(f"{subject}/* (all {len(expressions)} configured expressions)")
        else:
            names.extend(f"{subject}/{layout.scan_name(e)}" for e in expressions)
    return (f"{len(missing)} {what} missing from {', '.join(str(s) for s in sources)}: "
            f"{', '.join(names)}")


def convert_scan(raw_obj: Path, out_obj: Path, out_landmarks: Path, *,
                 landmark_indices: Sequence[int] = TU_LANDMARKS,
                 vertex_count: int | None = TU_VERTEX_COUNT) -> None:
    """Write a TU OBJ geometry only (vertex order kept) and its (68, 3) landmark sidecar.

    ``vertex_count`` None skips the topology check (for meshes other than TU ones,
    with their own ``landmark_indices``).
    """
    vertices, faces = io.read_obj(raw_obj, dtype=np.float64)
    if vertex_count is not None and len(vertices) != vertex_count:
        raise io.InputError(f"{raw_obj}: {len(vertices):,} vertices, but FaceScape TU meshes "
                            f"have {vertex_count:,}; the landmark vertex indices only fit the "
                            f"TU topology")
    indices = np.asarray(landmark_indices)
    if indices.shape != (io.N_LANDMARKS,) or indices.max() >= len(vertices):
        raise io.InputError(f"{raw_obj}: landmark indices do not fit a mesh of "
                            f"{len(vertices):,} vertices")
    io.save_mesh(trimesh.Trimesh(vertices, faces, process=False), out_obj)
    io.save_landmarks(out_landmarks, vertices[indices])


def import_scans(sources: Sequence[str | os.PathLike], dest: str | os.PathLike,
                 subjects: Sequence[int], expressions: Sequence[int], *,
                 images: Sequence[str | os.PathLike] = (),
                 max_uncompressed_bytes: int | None = 100 * 10**9,
                 landmark_indices: Sequence[int] = TU_LANDMARKS,
                 vertex_count: int | None = TU_VERTEX_COUNT) -> list[Path]:
    """Import the configured scans (and images) into ``dest``; returns the OBJ paths.

    All sources are checked and the configured scans located before anything is
    written; the output is assembled in a work folder beside ``dest`` and moved in
    only once every scan has converted.
    """
    dest = Path(dest)
    wanted = {(int(s), int(e)) for s in subjects for e in expressions}
    scans = _locate([Path(s) for s in sources], _SCAN_MEMBER, wanted, "scan(s)",
                    max_uncompressed_bytes)
    views = _locate([Path(s) for s in images], _IMAGE_MEMBER, wanted, "image folder(s)",
                    max_uncompressed_bytes) if images else {}

    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.import-"))
    try:
        out, raw = work / "out", work / "raw"
        for source, members in scans.items():
            if not members:
                continue
            archive.extract(source, raw, {name: layout.scan_path("", *key).as_posix()
                                          for name, (key, _) in members.items()},
                            max_uncompressed_bytes=max_uncompressed_bytes)
            for key, _ in members.values():
                start = time.perf_counter()
                convert_scan(layout.scan_path(raw, *key), layout.scan_path(out, *key),
                             layout.landmarks_path(out, *key),
                             landmark_indices=landmark_indices, vertex_count=vertex_count)
                print(f"subject {key[0]} {layout.scan_name(key[1])}: from {source}, "
                      f"{time.perf_counter() - start:.2f} s", flush=True)
            shutil.rmtree(raw)
        for source, members in views.items():
            if not members:
                continue
            archive.extract(source, out, {
                name: f"{s}/images/{layout.scan_name(e)}/{file}"
                for name, ((s, e), file) in members.items()
            }, max_uncompressed_bytes=max_uncompressed_bytes)
            print(f"{len(members)} image file(s) from {source}", flush=True)
        archive.move_tree(out, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return sorted(layout.scan_path(dest, s, e) for s, e in wanted)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m facerecon.data.facescape",
        description="Import FaceScape TU scans from the user's archives into FaceScape's layout.")
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("import", help="extract, convert and landmark the configured scans")
    cmd.add_argument("sources", type=Path, nargs="+", metavar="ARCHIVE",
                     help="facescape_trainset_*.zip archives (zip or tar) or extracted folders")
    cmd.add_argument("--dest", type=Path, required=True, help="dataset root folder")
    cmd.add_argument("--subjects", type=int, nargs="+", required=True, metavar="ID",
                     help="FaceScape subject ids")
    cmd.add_argument("--expressions", type=int, nargs="+", required=True, metavar="K",
                     help="FaceScape expression numbers (1..20)")
    cmd.add_argument("--images", type=Path, nargs="+", default=[], metavar="ARCHIVE",
                     help="fsmview_trainset_images_*.zip archives or extracted folders")
    cmd.add_argument("--max-uncompressed-gb", type=float, default=100.0,
                     help="refuse an archive declaring more than this (default 100)")
    args = parser.parse_args(argv)
    unknown = [k for k in args.expressions if k not in layout.EXPRESSIONS]
    if unknown:
        parser.error(f"--expressions {unknown} are not FaceScape expression numbers (1..20)")
    if min(args.subjects) < 1:
        parser.error(f"--subjects must be positive ids, got {args.subjects}")
    if args.max_uncompressed_gb <= 0:
        parser.error("--max-uncompressed-gb must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the import subcommand."""
    args = _parse_args(argv)
    written = import_scans(args.sources, args.dest, args.subjects, args.expressions,
                           images=args.images,
                           max_uncompressed_bytes=int(args.max_uncompressed_gb * 10**9))
    print(f"{args.dest}: {len(written)} scan(s) imported", flush=True)


if __name__ == "__main__":
    io.run_cli(main)
