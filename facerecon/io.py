"""File input and output shared by every stage.

Every writer is atomic (write to a temporary file in the target folder, then
``os.replace``), so an interrupted job never leaves a half-written output that
Snakemake would take as complete. Every reader validates what it reads and
raises :class:`InputError` naming the file and the problem.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from facerecon.errors import InputError, run_cli  # noqa: F401 (run_cli: re-exported for the CLIs)

N_LANDMARKS = 68


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only on success.

    ``suffix`` defaults to the target's own suffix, so writers that pick a
    format from the file name (trimesh, numpy) still see the right one.
    A failure to write (disk full, file too large, no permission, a file where a
    folder should be) becomes an InputError naming ``path``; the previous file at
    ``path``, if any, is left as it was.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                   suffix=suffix or "".join(target.suffixes))
        os.close(fd)
    except OSError as exc:
        raise _write_error(target, exc) from None
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual mode
        os.replace(tmp, target)
    except (OSError, RuntimeError) as exc:
        if not isinstance(exc, OSError) and not _is_write_failure(exc):
            raise
        raise _write_error(target, exc) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _is_write_failure(exc: RuntimeError) -> bool:
    """Whether a library's RuntimeError reports a failed write (torch's zip writer and
    C++ streams do, instead of an OSError, when the disk is full)."""
    text = str(exc).lower()
    return "write" in text or "iostream" in text


def _write_error(target: Path, exc: BaseException) -> InputError:
    """One line naming ``target`` and why it could not be written."""
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror
    else:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1].strip()
    return InputError(f"{target}: cannot write ({reason})")


def _umask() -> int:
    """The process umask (reading it requires setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, naming the file in any error."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except (ValueError, OSError) as exc:  # JSONDecodeError, UnicodeDecodeError, EISDIR ...
        raise InputError(f"{path}: not valid JSON ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def save_npz(path: str | os.PathLike, **arrays: Any) -> None:
    """Save arrays to an uncompressed ``.npz`` atomically."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def load_npz(path: str | os.PathLike, keys: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Load an ``.npz`` into a dict, checking that ``keys`` are present."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(f"{path}: not a readable .npz file, truncated or corrupt "
                         f"({type(exc).__name__})") from None
    except TypeError:  # np.load of a plain .npy gives an array, not an archive
        raise InputError(f"{path}: not an .npz archive (a single .npy array?)") from None
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise InputError(f"{path}: missing arrays {missing}")
    return arrays


def read_obj(path: str | os.PathLike, *, with_faces: bool = True, dtype: type = np.float32
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """Vertices ((V, 3) ``dtype``, file order) and faces of an OBJ, ignoring everything else.

    Unlike a general mesh loader this never splits or reorders vertices at texture
    seams, so vertex indices (landmarks, a shared topology) stay valid. Polygons are
    fan-triangulated from their first corner, in file order; faces are (F, 3) int64,
    0-based (None when ``with_faces`` is False).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: OBJ file not found")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    vertex_lines = [line for line in lines if line.startswith("v ")]
    if not vertex_lines:
        raise InputError(f"{path}: empty mesh (no vertices)")
    try:
        vertices = np.loadtxt(vertex_lines, dtype=dtype, usecols=(1, 2, 3), ndmin=2)
    except ValueError:
        raise InputError(f"{path}: malformed vertex line") from None
    if not with_faces:
        return vertices, None
    faces = _obj_faces(path, lines)
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise InputError(f"{path}: face indices out of range for {len(vertices)} vertices")
    return vertices, faces


def _obj_faces(path: Path, lines: list[str]) -> np.ndarray:
    """(F, 3) 0-based fan triangles of the ``f`` lines (corners ``v``, ``v/vt``, ``v/vt/vn``
    or ``v//vn``), vectorised: a TU or ICT mesh parses in a fraction of a second."""
    polygons: list[list[str]] = []
    n_before: list[int] = []  # vertices defined before each face, for negative indices
    n_vertices = 0
    for line in lines:
        if line.startswith("v "):
            n_vertices += 1
        elif line.startswith("f "):
            polygons.append(line.split()[1:])
            n_before.append(n_vertices)
    sizes = np.array([len(corners) for corners in polygons], dtype=np.int64)
    if not len(sizes):
        raise InputError(f"{path}: empty mesh (no triangles)")
    if sizes.min() < 3:
        raise InputError(f"{path}: a face with fewer than 3 corners")
    tokens = re.sub(r"/\S*", "", " ".join(" ".join(corners) for corners in polygons)).split()
    try:
        corners = np.array(tokens, dtype=np.int64)
    except ValueError:
        raise InputError(f"{path}: malformed face line") from None
    if not corners.all():
        raise InputError(f"{path}: face index 0 (OBJ indices start at 1)")
    # 1-based; negative indices count back from the last vertex defined so far
    corners = np.where(corners > 0, corners - 1, corners + np.repeat(n_before, sizes))
    n_triangles = sizes - 2
    polygon = np.repeat(np.arange(len(sizes)), n_triangles)
    k = np.arange(n_triangles.sum()) - np.repeat(np.cumsum(n_triangles) - n_triangles,
                                                 n_triangles) + 1  # 1 .. size - 2
    first = (np.cumsum(sizes) - sizes)[polygon]  # each triangle's polygon's first corner
    return np.stack([corners[first], corners[first + k], corners[first + k + 1]], axis=1)


def load_mesh(path: str | os.PathLike) -> trimesh.Trimesh:
    """Load a triangle mesh and check that it is usable.

    Raises InputError for a missing or unreadable file, a file without
    triangles, non-finite vertices, or face indices out of range. Vertices are
    returned exactly as stored (no merging, no reordering, no splitting at
    texture seams: OBJs go through :func:`read_obj`), so vertex indices such as
    landmark indices stay valid.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: mesh file not found")
    if path.suffix.lower() == ".obj":
        vertices, faces = read_obj(path, dtype=np.float64)
        return _checked_mesh(path, trimesh.Trimesh(vertices, faces, process=False))
    try:
        mesh = trimesh.load(path, force="mesh", process=False, maintain_order=True)
    except Exception as exc:  # trimesh raises many types for malformed files
        raise InputError(f"{path}: cannot read mesh ({type(exc).__name__}: {exc})") from exc
    return _checked_mesh(path, mesh)


def _checked_mesh(path: Path, mesh: object) -> trimesh.Trimesh:
    """``mesh`` if it has triangles, finite vertices and valid face indices."""
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.vertices) == 0 or len(mesh.faces) == 0:
        raise InputError(f"{path}: empty mesh (no vertices or no triangles)")
    vertices = np.asarray(mesh.vertices)
    bad = ~np.isfinite(vertices).all(axis=1)
    if bad.any():
        raise InputError(
            f"{path}: {int(bad.sum())} vertices are NaN or infinite "
            f"(first at index {int(np.flatnonzero(bad)[0])})"
        )
    faces = np.asarray(mesh.faces)
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise InputError(f"{path}: face indices out of range for {len(vertices)} vertices")
    return mesh


def save_mesh(mesh: trimesh.Trimesh, path: str | os.PathLike) -> None:
    """Write a mesh atomically; the format follows the suffix (.ply, .obj)."""
    with atomic_path(path) as tmp:
        mesh.export(tmp)


def load_landmarks(path: str | os.PathLike, dims: int = 3) -> np.ndarray:
    """Read 68 landmarks, one row of ``dims`` coordinates each -> (68, dims) float64.

    3D landmarks are ``x y z`` in millimetres; 2D ones (``dims=2``) ``x y`` in pixels.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: landmark file not found")
    try:
        points = np.loadtxt(path, ndmin=2)
    except ValueError as exc:
        raise InputError(f"{path}: cannot parse landmarks ({exc})") from exc
    if points.shape != (N_LANDMARKS, dims):
        raise InputError(f"{path}: expected {N_LANDMARKS} rows of {dims} coordinates (landmarks), "
                         f"found an array of shape {points.shape}")
    if not np.isfinite(points).all():
        raise InputError(f"{path}: landmarks contain NaN or infinite values")
    return points


def save_landmarks(path: str | os.PathLike, points: np.ndarray) -> None:
    """Write (68, 3) landmarks in millimetres, one ``x y z`` row each, atomically."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (N_LANDMARKS, 3):
        raise ValueError(f"expected ({N_LANDMARKS}, 3) landmarks, got {points.shape}")
    with atomic_path(path) as tmp:
        np.savetxt(tmp, points, fmt="%.6f", header="68 landmarks, dlib order, x y z in mm")
