"""ImFace's pseudo-watertight sheet: the scan as seen from the front, hole-free.

Input: a mesh already cut by the crop sphere (centre at the origin, radius
``radius``, face looking towards +z). Steps:

1. Hidden-surface removal: cast a ray towards +z from every vertex; a vertex
   whose ray hits the mesh is occluded (mouth interior, nostril insides, eye
   sockets, the back of the ears, under the chin) and is removed, together
   with every face touching it.
2. Refill as a height field, as ImFace does: a 2D Delaunay triangulation of
   the visible vertices in the xy plane, every triangle turned
   counter-clockwise so its normal has n_z > 0. The visible vertices project
   without overlap, so this is one embedded sheet with no holes: the mouth
   opening, the nostrils and any other front-visible gap are bridged.
3. Skirt: the triangulation covers the convex hull of the visible vertices,
   whose boundary lies partly on the sphere (where the scan was cut) and
   partly inside it (the face's silhouette at the sides, where the sphere
   reaches past the head). Long hull edges are subdivided, and every boundary
   vertex inside the sphere is extended straight back along -z to the sphere
   by a vertical wall. The sheet then ends on the sphere all round and splits
   the ball into a front part (SDF > 0) and a back part (SDF < 0).

Why Delaunay and not pymeshlab's hole closing: ImFace's published numbers were
produced with the height-field re-triangulation, which by construction gives
exactly one boundary loop, no interior surfaces and front-facing normals.
Hole closing keeps the original connectivity but fills each hole in 3D
(ear-clipping across a mouth or nostril can fold over itself), cannot fill the
gaps that hidden-surface removal opens at the outer silhouette (they touch the
border), and would still need the height-field check afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from scipy.spatial import Delaunay, QhullError

from .topology import boundary_edges, boundary_loops, remove_unreferenced

#: A boundary vertex counts as on the sphere when ``radius - |v|`` is at most this
#: fraction of the radius (cut points are on it to rounding error).
ON_SPHERE_RTOL = 1e-9


@dataclass(frozen=True)
class Sheet:
    """A pseudo-watertight sheet and what it took to build it."""

    vertices: np.ndarray  #: (V, 3) float64, same unit and frame as the input
    faces: np.ndarray  #: (F, 3) int64, normals towards +z; the skirt's (vertical) come last
    n_hidden: int  #: input vertices removed as occluded from +z
    n_skirt_faces: int  #: vertical faces joining the silhouette to the sphere


def hidden_vertices(
    vertices: np.ndarray, faces: np.ndarray, rel_offset: float = 1e-5
) -> np.ndarray:
    """(V,) bool: True where a ray from the vertex towards +z hits the mesh.

    The ray starts ``rel_offset`` times the mesh size above the vertex, past
    the float32 rounding of Embree, so the vertex's own faces are not hit.
    Unreferenced vertices are reported as not hidden.
    """
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    up = np.array([0.0, 0.0, 1.0])
    origins = np.asarray(vertices, dtype=np.float64) + rel_offset * mesh.scale * up
    hidden = np.zeros(len(vertices), dtype=bool)
    used = np.unique(faces)
    hidden[used] = mesh.ray.intersects_any(origins[used], np.broadcast_to(up, (len(used), 3)))
    return hidden


def height_field_triangulation(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2D Delaunay triangulation of (N, 3) points in xy, counter-clockwise seen from +z.

    Returns (vertices (V, 3), faces (F, 3)); points with a duplicate xy
    position (dropped by Qhull) are removed.
    """
    faces = Delaunay(points[:, :2]).simplices.astype(np.int64)
    xy = points[faces][:, :, :2]
    e1, e2 = xy[:, 1] - xy[:, 0], xy[:, 2] - xy[:, 0]
    area2 = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    faces[area2 < 0] = faces[area2 < 0][:, ::-1]
    return remove_unreferenced(points, faces)


def split_long_boundary_edges(
    vertices: np.ndarray, faces: np.ndarray, max_edge: float
) -> tuple[np.ndarray, np.ndarray]:
    """Subdivide boundary edges longer than ``max_edge`` so a skirt hung from them
    follows the sphere. Each face with such an edge is replaced by a fan around
    its centroid (in the face's plane), keeping the orientation."""
    edges = boundary_edges(faces)
    lengths = np.linalg.norm(vertices[edges[:, 1]] - vertices[edges[:, 0]], axis=1)
    edges = edges[lengths > max_edge]
    face_edge_keys = faces * len(vertices) + np.roll(faces, -1, axis=1)  # (F, 3) a -> b
    has_long = np.isin(face_edge_keys, edges[:, 0] * len(vertices) + edges[:, 1]).any(axis=1)
    long_edges = {(int(a), int(b)) for a, b in edges}
    new_points: list[np.ndarray] = [vertices]
    next_index = len(vertices)
    fans: list[list[int]] = []
    for face in faces[has_long].tolist():
        corners = [(face[i], face[(i + 1) % 3]) for i in range(3)]
        polygon: list[int] = []
        for a, b in corners:
            polygon.append(a)
            if (a, b) in long_edges:
                n_seg = int(np.ceil(np.linalg.norm(vertices[b] - vertices[a]) / max_edge))
                t = np.arange(1, n_seg)[:, None] / n_seg
                new_points.append(vertices[a] + t * (vertices[b] - vertices[a]))
                polygon.extend(range(next_index, next_index + n_seg - 1))
                next_index += n_seg - 1
        new_points.append(vertices[face].mean(axis=0, keepdims=True))
        centre = next_index
        next_index += 1
        fans.extend([centre, polygon[i], polygon[(i + 1) % len(polygon)]]
                    for i in range(len(polygon)))
    fan_faces = np.asarray(fans, dtype=np.int64).reshape(-1, 3)
    return np.concatenate(new_points), np.concatenate([faces[~has_long], fan_faces])


def add_skirt(
    vertices: np.ndarray, faces: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Extend the single boundary loop of a +z-facing sheet along -z to the sphere.

    Every boundary vertex strictly inside the sphere gets a foot
    ``(x, y, -sqrt(radius^2 - x^2 - y^2))`` on the sphere's back; each boundary
    edge becomes a vertical quad (or a triangle where one end is already on
    the sphere) oriented like the sheet, facing away from it.
    Returns (vertices, faces, number of skirt faces).
    """
    loops = boundary_loops(faces)
    if len(loops) != 1:
        raise ValueError(f"expected one boundary loop before the skirt, found {len(loops)}")
    loop = loops[0]
    ring = vertices[loop]
    needs_foot = radius - np.linalg.norm(ring, axis=1) > ON_SPHERE_RTOL * radius
    feet = ring[needs_foot].copy()
    feet[:, 2] = -np.sqrt(np.maximum(radius**2 - feet[:, 0] ** 2 - feet[:, 1] ** 2, 0.0))
    foot = np.full(len(loop), -1, dtype=np.int64)
    foot[needs_foot] = len(vertices) + np.arange(len(feet))

    # Boundary edge a -> b (as in the sheet's faces): the skirt runs b -> a.
    a, b = loop, np.roll(loop, -1)
    fa, fb = foot, np.roll(foot, -1)
    upper = np.stack([b, a, fa], 1)[fa >= 0]  # (b, a, a')
    lower = np.stack([b, fa, fb], 1)[(fa >= 0) & (fb >= 0)]  # (b, a', b')
    only_b = np.stack([b, a, fb], 1)[(fa < 0) & (fb >= 0)]  # (b, a, b')
    skirt = np.concatenate([upper, lower, only_b])
    return np.concatenate([vertices, feet]), np.concatenate([faces, skirt]), len(skirt)


def pseudo_watertight(
    vertices: np.ndarray, faces: np.ndarray, radius: float, max_boundary_edge: float | None = None
) -> Sheet:
    """Build the pseudo-watertight sheet of a sphere-cropped mesh (see module doc).

    ``vertices`` (V, 3) inside the sphere ``|x| <= radius`` centred at the
    origin, ``faces`` (F, 3). ``max_boundary_edge`` (default: twice the median
    edge length of the input) bounds the hull edges the skirt hangs from.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    hidden = hidden_vertices(vertices, faces)
    visible = np.zeros(len(vertices), dtype=bool)
    visible[np.unique(faces)] = True
    visible &= ~hidden
    if visible.sum() < 3:
        raise ValueError(f"only {int(visible.sum())} vertices are visible from the front")
    try:
        sheet_v, sheet_f = height_field_triangulation(vertices[visible])
    except QhullError as exc:
        raise ValueError("the visible vertices do not span an area seen from the front") from exc
    if max_boundary_edge is None:
        tri = vertices[faces]
        edge_lengths = np.linalg.norm(tri - np.roll(tri, 1, axis=1), axis=2)
        max_boundary_edge = 2.0 * float(np.median(edge_lengths))
    sheet_v, sheet_f = split_long_boundary_edges(sheet_v, sheet_f, max_boundary_edge)
    sheet_v, sheet_f, n_skirt = add_skirt(sheet_v, sheet_f, radius)
    return Sheet(sheet_v, sheet_f, int(hidden.sum()), n_skirt)
