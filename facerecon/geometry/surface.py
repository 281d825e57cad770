"""Area-uniform surface samples: one sampler for training samples and for metrics."""

from __future__ import annotations

import numpy as np

from facerecon.geometry.topology import triangle_cross


def sample_surface(
    vertices: np.ndarray, faces: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` points uniform by area on a triangle mesh, with unit face normals.

    vertices (V, 3), faces (F, 3) -> points (count, 3) float64 in the mesh's
    units and normals (count, 3). Faces are picked with probability proportional
    to their area, then a point is drawn uniformly inside each (the unit square
    folded onto the triangle). Raises ValueError for a mesh without area.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    cross = triangle_cross(vertices, faces)
    area2 = np.linalg.norm(cross, axis=1)
    total = area2.sum()
    if not total > 0:
        raise ValueError("mesh has zero surface area")
    face = rng.choice(len(area2), size=count, p=area2 / total)
    u, v = rng.random((2, count))
    flip = u + v > 1.0
    u[flip], v[flip] = 1.0 - u[flip], 1.0 - v[flip]
    tri = vertices[np.asarray(faces)[face]]
    points = tri[:, 0] + u[:, None] * (tri[:, 1] - tri[:, 0]) + v[:, None] * (tri[:, 2] - tri[:, 0])
    return points, cross[face] / area2[face, None]
