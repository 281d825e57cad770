"""Face clean-up and boundary loops of triangle meshes."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CleanFaces:
    """Result of :func:`clean_faces`: kept faces and how many were dropped."""

    faces: np.ndarray  #: (F', 3) int64, the kept faces in their input order
    n_degenerate: int  #: faces with a repeated vertex or zero area
    n_duplicate: int  #: faces repeating the vertex set of an earlier face


def triangle_cross(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F, 3) cross products ``(b - a) x (c - a)``: twice the area times the unit normal."""
    tri = vertices[faces]
    return np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])


def clean_faces(vertices: np.ndarray, faces: np.ndarray, rel_area_eps: float = 1e-14) -> CleanFaces:
    """Drop degenerate faces (repeated vertex, or area below ``rel_area_eps`` times the
    squared bounding-box diagonal) and faces that repeat an earlier face's vertex set
    (either orientation), keeping the first. Vertices are left untouched so vertex
    indices such as landmark indices stay valid.
    """
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    vertices = np.asarray(vertices, dtype=np.float64)
    repeated = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (
        faces[:, 0] == faces[:, 2])
    diag2 = float(np.sum(np.ptp(vertices, axis=0) ** 2)) if len(vertices) else 0.0
    flat = np.linalg.norm(triangle_cross(vertices, faces), axis=1) <= rel_area_eps * diag2
    degenerate = repeated | flat
    kept = faces[~degenerate]
    _, first = np.unique(np.sort(kept, axis=1), axis=0, return_index=True)
    first.sort()
    return CleanFaces(kept[first], int(degenerate.sum()), len(kept) - len(first))


def boundary_edges(faces: np.ndarray) -> np.ndarray:
    """(B, 2) directed edges used by exactly one face, oriented as in that face."""
    faces = np.asarray(faces, dtype=np.int64)
    directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    n = int(faces.max()) + 1 if len(faces) else 0
    key = directed.min(axis=1) * n + directed.max(axis=1)
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    return directed[counts[inverse] == 1]


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Closed boundary loops as vertex-index arrays, each ordered along the faces'
    orientation (counter-clockwise around the surface seen from its front).

    A vertex where two loops touch is visited once per loop, so a pinched
    boundary counts as two loops.
    """
    outgoing: dict[int, list[int]] = defaultdict(list)
    for a, b in boundary_edges(faces).tolist():
        outgoing[a].append(b)
    loops = []
    while outgoing:
        start = next(iter(outgoing))
        loop = [start]
        current = start
        while True:
            nxt = outgoing[current].pop()
            if not outgoing[current]:
                del outgoing[current]
            if nxt == start:
                break
            loop.append(nxt)
            current = nxt
            if current not in outgoing:  # open chain: non-manifold input
                break
        loops.append(np.asarray(loop, dtype=np.int64))
    return loops


def remove_unreferenced(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop vertices no face uses; returns (vertices (V', 3), faces re-indexed (F, 3))."""
    used = np.zeros(len(vertices), dtype=bool)
    used[faces.ravel()] = True
    new_index = np.cumsum(used) - 1
    return vertices[used], new_index[faces]
