"""Cut a triangle mesh by a sphere centred at the origin, exactly on the sphere.

One function serves every stage that crops: the ground-truth sheet (preprocess, in mm),
the marching-cubes mesh and the bilinear model's fitted mesh (both in units, radius 1).
"""

from __future__ import annotations

import numpy as np

from .topology import remove_unreferenced


def edge_sphere_points(inner: np.ndarray, outer: np.ndarray, radius: float) -> np.ndarray:
    """(N, 3) points where segments from ``inner`` (N, 3, inside) to ``outer`` (N, 3,
    outside) cross the sphere ``|x| = radius``; projected onto it to rounding error."""
    direction = outer - inner
    a = np.einsum("ij,ij->i", direction, direction)
    b = np.einsum("ij,ij->i", inner, direction)
    c = np.einsum("ij,ij->i", inner, inner) - radius**2  # <= 0
    root = np.sqrt(np.maximum(b * b - a * c, 0.0))
    # The root in [0, 1] of a t^2 + 2 b t + c = 0, in the cancellation-free form.
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(b >= 0, -c / (b + root), (root - b) / a)
    t = np.clip(np.nan_to_num(t), 0.0, 1.0)
    points = inner + t[:, None] * direction
    norm = np.linalg.norm(points, axis=1, keepdims=True)
    return np.divide(points * radius, norm, out=points, where=norm > 0)


def crop_to_sphere(
    vertices: np.ndarray, faces: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the part of the mesh inside ``|x| <= radius``, splitting crossing triangles.

    A triangle with one or two vertices outside is cut where its edges meet the
    sphere (the cut points lie on the sphere, not on a plane), giving one or
    two triangles with the original orientation. Cut points are shared between
    neighbouring triangles, so the result stays manifold and its boundary
    vertices on the cut lie on the sphere. Triangles with all three vertices
    outside are dropped even if the sphere pokes through their middle (which
    needs triangles larger than the sphere's curvature allows on scans).

    Vertices on the sphere to rounding error (such as an earlier cut's) count as inside,
    so cropping a cropped mesh changes nothing.

    Returns (vertices (V', 3), faces (F', 3)) without unreferenced vertices.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    inside = np.einsum("ij,ij->i", vertices, vertices) <= radius**2 * (1.0 + 1e-12)
    n_inside = inside[faces].sum(axis=1)
    kept = faces[n_inside == 3]
    crossing = faces[(n_inside == 1) | (n_inside == 2)]

    # Rotate each crossing face (keeping its orientation) so that corner 0 is the
    # odd one out: the only vertex inside (one in) or the only one outside (two in).
    one_in = inside[crossing].sum(axis=1) == 1
    odd = np.where(one_in[:, None], inside[crossing], ~inside[crossing])
    shift = np.argmax(odd, axis=1)
    rows = np.arange(len(crossing))[:, None]
    crossing = crossing[rows, (shift[:, None] + np.arange(3)) % 3]
    a, b, c = crossing.T

    # One cut point per crossing edge (ab and ac), shared by both faces of the edge.
    edges = np.concatenate([np.stack([a, b], 1), np.stack([a, c], 1)])
    edges = np.where(inside[edges[:, :1]], edges, edges[:, ::-1])  # (inner, outer)
    key = edges[:, 0] * len(vertices) + edges[:, 1]
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    cut = edge_sphere_points(vertices[edges[first, 0]], vertices[edges[first, 1]], radius)
    cut_index = len(vertices) + inverse
    p_ab, p_ac = cut_index[: len(crossing)], cut_index[len(crossing):]

    # One inside (a): triangle (a, p_ab, p_ac). Two inside (b, c): the quad
    # (p_ab, b, c, p_ac), split along its shorter diagonal.
    tri_one = np.stack([a, p_ab, p_ac], 1)[one_in]
    all_vertices = np.concatenate([vertices, cut])
    two = ~one_in
    q0, q1, q2, q3 = p_ab[two], b[two], c[two], p_ac[two]
    diag_02 = np.linalg.norm(all_vertices[q0] - all_vertices[q2], axis=1)
    diag_13 = np.linalg.norm(all_vertices[q1] - all_vertices[q3], axis=1)
    use_02 = (diag_02 <= diag_13)[:, None]
    tri_two = np.concatenate([
        np.where(use_02, np.stack([q0, q1, q2], 1), np.stack([q0, q1, q3], 1)),
        np.where(use_02, np.stack([q0, q2, q3], 1), np.stack([q1, q2, q3], 1)),
    ])
    return remove_unreferenced(all_vertices, np.concatenate([kept, tri_one, tri_two]))
