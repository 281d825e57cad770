"""ImFace's pseudo-watertight sheet: the scan as seen from the front, hole-free.

Input: a mesh in millimetres already cut by the crop sphere (centre at the
origin, radius ``radius``, face looking towards +z). Steps:

1. Hidden-surface removal: cast a ray towards +z from every vertex; a vertex
   whose ray hits the mesh is occluded (mouth interior, nostril insides, eye
   sockets, the back of the ears, under the chin) and is removed, together
   with every face touching it.
2. Thin gaps and the open mouth: a ray from deep in the mouth can escape
   through the slit between closed lips (or eyelids), and the sheet would dip
   to it (ICT neutral: to z = -62 mm). Slits narrower than ``GAP_MM`` are
   closed on a front depth map (a morphological closing) and vertices far
   below the bridge are removed too; so are the mouth socket's vertices seen
   through open lips (behind the inner-lip landmarks), which FaceScape's TU
   meshes do not have.
3. Refill as a height field, as ImFace does: a 2D Delaunay triangulation of
   the visible vertices in the xy plane, every triangle turned
   counter-clockwise so its normal has n_z > 0. The visible vertices project
   without overlap, so this is one embedded sheet with no holes: the mouth
   opening, the nostrils and any other front-visible gap are bridged. Holes
   wider than the mesh's edge length (eyes without eyeballs, an open mouth)
   get grid points inside, whose heights are the harmonic fill of the rim, so
   they are covered by a regular mesh rather than fans of long thin triangles.
   Edges are then flipped towards a Delaunay mesh in 3D (keeping the height
   field), which removes the slivers that xy Delaunay makes on steep slopes.
4. Skirt: the triangulation covers the convex hull of the visible vertices,
   whose boundary lies partly on the sphere (where the scan was cut) and
   partly inside it (the face's silhouette at the sides, where the sphere
   reaches past the head). Long hull edges are subdivided, and every boundary
   vertex inside the sphere is extended straight back along -z to the sphere
   by a vertical wall. The sheet then ends on the sphere all round and splits
   the ball into a front part (SDF > 0) and a back part (SDF < 0). The skirt is
   for signed distances only: it is not part of the evaluation ground truth.

Why a height field and not pymeshlab's hole closing: ImFace's published numbers
were produced with the height-field re-triangulation, which by construction gives
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
from matplotlib.path import Path as MplPath
from scipy import ndimage, sparse
from scipy.sparse.linalg import spsolve
from scipy.spatial import ConvexHull, Delaunay, QhullError, cKDTree

from .topology import boundary_edges, boundary_loops, remove_unreferenced, triangle_cross

#: A boundary vertex counts as on the sphere when ``radius - |v|`` is at most this
#: fraction of the radius (cut points are on it to rounding error).
ON_SPHERE_RTOL = 1e-9
#: Front-visible slits narrower than this (closed lips, closed eyelids) are bridged.
GAP_MM = 2.0
#: Pixel of the front depth map used to find those slits.
PIXEL_MM = 0.5
#: A vertex counts as at the bottom of a slit when this far below its bridge.
GAP_DEPTH_TOL_MM = 1.0
#: Inside the open mouth, what lies this far behind the lips is the mouth socket.
MOUTH_DEPTH_MM = 10.0


@dataclass(frozen=True)
class Sheet:
    """A pseudo-watertight sheet and what it took to build it."""

    vertices: np.ndarray  #: (V, 3) float64, same unit and frame as the input
    faces: np.ndarray  #: (F, 3) int64, normals towards +z; the skirt's (vertical) come last
    n_hidden: int  #: input vertices removed as occluded from +z
    n_gap: int  #: further input vertices removed in thin front-visible gaps or the open mouth
    n_fill: int  #: vertices added inside holes (eyes, nostrils, open mouth), z faired
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


def depth_map(
    vertices: np.ndarray, faces: np.ndarray, pixel_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Height of the front-most surface on an xy grid: ((2,) xy of pixel (0, 0), (H, W) z).

    One ray per pixel centre cast along -z from above the mesh; pixels no ray
    hits get ``-inf``. Pixel (i, j) sits at ``origin + (i, j) * pixel_mm``.
    """
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    used = vertices[np.unique(faces)]
    origin = used[:, :2].min(axis=0) - pixel_mm
    shape = np.ceil((used[:, :2].max(axis=0) + pixel_mm - origin) / pixel_mm).astype(int) + 1
    ij = np.stack(np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij"), -1)
    xy = origin + pixel_mm * ij.reshape(-1, 2)
    rays = np.column_stack([xy, np.full(len(xy), used[:, 2].max() + 1.0)])
    hits, ray_index, _ = mesh.ray.intersects_location(
        rays, np.broadcast_to([0.0, 0.0, -1.0], rays.shape), multiple_hits=False)
    height = np.full(len(rays), -np.inf)
    np.maximum.at(height, ray_index, hits[:, 2])
    return origin, height.reshape(shape)


def gap_hidden_vertices(
    vertices: np.ndarray, faces: np.ndarray, gap_mm: float, pixel_mm: float, depth_tol_mm: float
) -> np.ndarray:
    """(V,) bool: vertices at the bottom of front-visible gaps narrower than ``gap_mm``.

    A ray from a vertex deep in the mouth can escape through the slit between
    closed lips (or eyelids, or into a nostril), so the ray test keeps it and
    the height field dips to it. A morphological closing of the front depth
    map (a flat disc of diameter ``gap_mm``) bridges such slits; a vertex
    lying more than ``depth_tol_mm`` below the bridge is reported. Slopes and
    open areas are left unchanged by the closing, so no other vertex is.
    """
    origin, height = depth_map(vertices, faces, pixel_mm)
    floor = height[np.isfinite(height)].min() - 10.0 * gap_mm
    height = np.where(np.isfinite(height), height, floor)
    r = gap_mm / (2.0 * pixel_mm)
    k = np.arange(-int(r), int(r) + 1)
    disc = k[:, None] ** 2 + k[None, :] ** 2 <= r**2
    closed = ndimage.grey_closing(height, footprint=disc)
    raised = closed - height > depth_tol_mm
    cell = (vertices[:, :2] - origin) / pixel_mm
    low = np.clip(np.floor(cell).astype(int), 0, np.array(height.shape) - 2)
    corners = [(low[:, 0] + di, low[:, 1] + dj) for di in (0, 1) for dj in (0, 1)]
    bridge = np.min([closed[c] for c in corners], axis=0)
    in_gap = np.all([raised[c] for c in corners], axis=0)
    return in_gap & (vertices[:, 2] < bridge - depth_tol_mm)


def inside_mouth(
    vertices: np.ndarray, inner_lips_mm: np.ndarray, depth_mm: float = MOUTH_DEPTH_MM
) -> np.ndarray:
    """(V,) bool: vertices within the inner-lip contour (K, 3), widened by half about
    its centre in xy (the landmarks sit inside the mouth corners), and more than
    ``depth_mm`` behind its rearmost point: the mouth socket seen through open lips.
    FaceScape's TU meshes have a hole there, which ImFace's height field bridges
    from lip to lip; scans with a mouth socket get the same bridge."""
    centre = inner_lips_mm[:, :2].mean(axis=0)
    contour = MplPath(centre + 1.5 * (inner_lips_mm[:, :2] - centre))
    deep = vertices[:, 2] < inner_lips_mm[:, 2].min() - depth_mm
    return deep & contour.contains_points(vertices[:, :2])


def hole_points(points: np.ndarray, spacing: float) -> np.ndarray:
    """(H, 2) xy grid points (pitch ``spacing``) inside the xy convex hull of (N, 3)
    ``points`` and farther than ``spacing`` from all of them: the inside of holes
    (eyes, nostrils, an open mouth), so the triangulation fills them with a
    regular mesh instead of fans of long thin triangles from the hole's rim."""
    low, high = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    axes = [np.arange(lo + spacing / 2, hi, spacing) for lo, hi in zip(low, high, strict=True)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    grid = grid[cKDTree(points[:, :2]).query(grid, distance_upper_bound=spacing)[0] > spacing]
    hull = ConvexHull(points[:, :2]).equations  # (K, 3): inside where n . xy + d < 0
    return grid[(grid @ hull[:, :2].T + hull[:, 2]).max(axis=1, initial=-np.inf) < -spacing / 2]


def uniform_laplacian(n_vertices: int, faces: np.ndarray) -> sparse.csr_matrix:
    """(V, V) graph Laplacian D - A of the mesh's edges (uniform weights)."""
    edges = np.unique(np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1), axis=0)
    ones = np.ones(len(edges))
    adjacency = sparse.coo_matrix((ones, (edges[:, 0], edges[:, 1])), (n_vertices,) * 2)
    adjacency = (adjacency + adjacency.T).tocsr()
    return (sparse.diags(np.asarray(adjacency.sum(axis=1)).ravel()) - adjacency).tocsr()


def fair_heights(vertices: np.ndarray, faces: np.ndarray, free: np.ndarray) -> np.ndarray:
    """(V, 3) ``vertices`` with the z of the ``free`` (V,) bool vertices replaced by the
    harmonic fill (L z = 0, uniform Laplacian) of the fixed ones: a smooth membrane
    across holes. Harmonic rather than biharmonic because it obeys the maximum
    principle: the fill never leaves the height range of the hole's rim, even in
    the wide bays between the head's silhouette and the convex hull."""
    laplacian = uniform_laplacian(len(vertices), faces)
    fixed = ~free
    rhs = -laplacian[free][:, fixed] @ vertices[fixed, 2]
    out = vertices.copy()
    out[free, 2] = spsolve(laplacian[free][:, free].tocsc(), rhs)
    return out


def _steep_enough(vertices: np.ndarray, faces: np.ndarray, min_nz: float) -> np.ndarray:
    """(F,) bool: the face's unit normal has n_z >= ``min_nz`` (so it faces +z)."""
    cross = triangle_cross(vertices, faces)
    return cross[:, 2] >= min_nz * np.linalg.norm(cross, axis=1) + 1e-300


def _angle(at: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(N,) angle at ``at`` (N, 3) between the directions to ``p`` and ``q``, in radians."""
    u, w = p - at, q - at
    return np.arctan2(np.linalg.norm(np.cross(u, w), axis=1), np.einsum("ij,ij->i", u, w))


def _contains_sorted(sorted_keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(Q,) bool: which ``queries`` occur in the ascending array ``sorted_keys``."""
    at = np.minimum(np.searchsorted(sorted_keys, queries), len(sorted_keys) - 1)
    return sorted_keys[at] == queries


def interior_edges(faces: np.ndarray, n_vertices: int) -> tuple[np.ndarray, ...]:
    """Interior edges of an oriented manifold mesh, one row each: (a, b, c1, c2, f1, f2,
    keys), each (E,), where face ``f1`` = (a, b, c1) up to rotation and ``f2`` =
    (b, a, c2); ``keys`` (3F,) sorted: every edge's ``min * V + max``."""
    a, b, c = faces.T[[0, 1, 2, 1, 2, 0, 2, 0, 1]].reshape(3, -1)  # half-edge a->b, opposite c
    face_of = np.tile(np.arange(len(faces)), 3)
    key = np.minimum(a, b) * n_vertices + np.maximum(a, b)
    order = np.argsort(key, kind="stable")
    pair = np.flatnonzero(key[order][1:] == key[order][:-1])
    h1, h2 = order[pair], order[pair + 1]
    return a[h1], b[h1], c[h1], c[h2], face_of[h1], face_of[h2], key[order]


def disjoint_pairs(
    f1: np.ndarray, f2: np.ndarray, priority: np.ndarray, n_faces: int
) -> np.ndarray:
    """Indices of face pairs (f1, f2), each (E,), that share no face with a pair of
    higher ``priority`` (E,): edges that can all be changed at once."""
    rank = np.empty(len(priority), dtype=np.int64)
    rank[np.argsort(-priority, kind="stable")] = np.arange(len(priority))
    first = np.full(n_faces, len(priority))
    np.minimum.at(first, f1, rank)
    np.minimum.at(first, f2, rank)
    return np.flatnonzero((first[f1] == rank) & (first[f2] == rank))


def flip_to_surface_delaunay(
    vertices: np.ndarray, faces: np.ndarray, max_rounds: int = 10, min_nz: float = 0.01
) -> np.ndarray:
    """(F, 3) faces after flipping interior edges towards a Delaunay mesh in 3D.

    A Delaunay triangulation in xy joins far-apart points across steep slopes
    (nose sides, eye sockets), giving slivers in 3D. An edge is flipped when its
    two opposite 3D angles sum to more than pi, provided both new faces keep a
    unit normal with n_z >= ``min_nz`` (the sheet stays a height field, with no
    face so close to vertical that a ray test grazes it) and the new edge does
    not exist yet. Each round flips a set of edges sharing no face.
    """
    faces = faces.copy()
    n = len(vertices)
    changed = np.ones(len(faces), dtype=bool)  # only edges of changed faces can become flippable
    for _ in range(max_rounds):
        edges = interior_edges(faces, n)
        keys = edges[-1]
        va, vb, c1, c2, f1, f2 = (e[changed[edges[4]] | changed[edges[5]]] for e in edges[:-1])
        excess = (_angle(vertices[c1], vertices[va], vertices[vb])
                  + _angle(vertices[c2], vertices[va], vertices[vb]) - np.pi)
        cand = np.flatnonzero((excess > 1e-9) & (c1 != c2))
        new1 = np.stack([c1[cand], va[cand], c2[cand]], 1)
        new2 = np.stack([c2[cand], vb[cand], c1[cand]], 1)
        ok = (_steep_enough(vertices, new1, min_nz) & _steep_enough(vertices, new2, min_nz)
              & ~_contains_sorted(keys, np.minimum(c1, c2)[cand] * n + np.maximum(c1, c2)[cand]))
        cand, new1, new2 = cand[ok], new1[ok], new2[ok]
        if len(cand) == 0:
            break
        take = disjoint_pairs(f1[cand], f2[cand], excess[cand], len(faces))
        changed[:] = False
        for face_index, new in ((f1[cand[take]], new1[take]), (f2[cand[take]], new2[take])):
            faces[face_index] = new
            changed[face_index] = True
    return faces


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


def into_ball(vertices: np.ndarray, moved: np.ndarray, radius: float) -> np.ndarray:
    """(V, 3) ``vertices`` with the z of the ``moved`` (V,) bool ones limited to the
    sphere's ``|z| <= sqrt(radius^2 - x^2 - y^2)``: a fill point in a bay near the sphere's
    rim can get a rim height (the chin's) that lies outside the ball there. x and y stay,
    so the sheet stays a height field."""
    out = vertices.copy()
    limit = np.sqrt(np.maximum(radius**2 - (out[moved, :2] ** 2).sum(axis=1), 0.0))
    out[moved, 2] = np.clip(out[moved, 2], -limit, limit)
    return out


def pseudo_watertight(
    vertices: np.ndarray, faces: np.ndarray, radius: float, max_boundary_edge: float | None = None,
    gap_mm: float = GAP_MM, inner_lips_mm: np.ndarray | None = None,
) -> Sheet:
    """Build the pseudo-watertight sheet of a sphere-cropped mesh (see module doc).

    ``vertices`` (V, 3) in mm inside the sphere ``|x| <= radius`` centred at the
    origin, ``faces`` (F, 3). ``max_boundary_edge`` (default: twice the median
    edge length of the input) bounds the hull edges the skirt hangs from;
    front-visible slits narrower than ``gap_mm`` are bridged, and so is the
    mouth opening inside the inner-lip contour ``inner_lips_mm`` (K, 3) if given.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    tri = vertices[faces]
    median_edge = float(np.median(np.linalg.norm(tri - np.roll(tri, 1, axis=1), axis=2)))
    hidden = hidden_vertices(vertices, faces)
    visible = np.zeros(len(vertices), dtype=bool)
    visible[np.unique(faces)] = True
    visible &= ~hidden
    if visible.sum() < 3:
        raise ValueError(f"only {int(visible.sum())} vertices are visible from the front")
    in_gap = visible & gap_hidden_vertices(vertices, faces, gap_mm, PIXEL_MM, GAP_DEPTH_TOL_MM)
    if inner_lips_mm is not None:
        in_gap |= visible & inside_mouth(vertices, inner_lips_mm)
    visible &= ~in_gap
    points = vertices[visible]
    try:
        fill_xy = hole_points(points, median_edge)
        fill = np.column_stack([fill_xy, np.zeros(len(fill_xy))])
        sheet_v, sheet_f = height_field_triangulation(np.concatenate([points, fill]))
    except QhullError as exc:
        raise ValueError("the visible vertices do not span an area seen from the front") from exc
    if len(fill):  # Qhull keeps the input order and the fill points are unique: they come last
        is_fill = np.arange(len(sheet_v)) >= len(sheet_v) - len(fill)
        sheet_v = into_ball(fair_heights(sheet_v, sheet_f, is_fill), is_fill, radius)
    sheet_f = flip_to_surface_delaunay(sheet_v, sheet_f)
    if max_boundary_edge is None:
        max_boundary_edge = 2.0 * median_edge
    sheet_v, sheet_f = split_long_boundary_edges(sheet_v, sheet_f, max_boundary_edge)
    sheet_v, sheet_f, n_skirt = add_skirt(sheet_v, sheet_f, radius)
    return Sheet(sheet_v, sheet_f, int(hidden.sum()), int(in_gap.sum()), len(fill), n_skirt)
