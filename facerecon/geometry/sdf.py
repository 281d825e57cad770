"""Exact signed distance to a triangle mesh, and its gradient.

Distances come from an AABB tree over the triangles (point-cloud-utils'
``closest_points_on_mesh``, libigl underneath): the distance to the true
surface, not to a sampled point cloud. The sign is that of
``(p - c) . n`` where ``c`` is the closest surface point and ``n`` the
angle-weighted pseudo-normal of the feature ``c`` lies on (face, edge or
vertex; Baerentzen and Aanaes 2005), which gives the right sign next to edges
and vertices too. For a closed, outward-oriented mesh this is negative inside;
for an oriented open sheet it is positive on the side the face normals point
to and negative behind.

Units: whatever the vertices are in (millimetres, or units of the crop
radius); distances are returned in the same unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import point_cloud_utils as pcu

from .topology import triangle_cross

#: Barycentric coordinates at or below this count as zero: the closest point is
#: then taken to lie on an edge (one zero) or a vertex (two zeros). Erring towards
#: the lower-dimensional feature is safe, its pseudo-normal agrees in sign.
BARYCENTRIC_EPS = 1e-7


def _unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; zero rows stay zero."""
    norm = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.divide(vectors, norm, out=np.zeros_like(vectors), where=norm > 0)


@dataclass(frozen=True)
class SDFQuery:
    """Signed distances of N query points to a mesh."""

    sdf: np.ndarray  #: (N,) signed distance, mesh units
    gradient: np.ndarray  #: (N, 3) unit gradient of the SDF
    closest: np.ndarray  #: (N, 3) closest point on the mesh
    face: np.ndarray  #: (N,) int index of the face holding the closest point


class MeshSDF:
    """Exact signed distance to one triangle mesh; pseudo-normals computed once.

    ``vertices`` (V, 3) float, ``faces`` (F, 3) int, consistently oriented.
    Degenerate faces should be removed beforehand (they contribute distances
    but no normal).
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        self.vertices = np.ascontiguousarray(vertices, dtype=np.float64)
        self.faces = np.ascontiguousarray(faces, dtype=np.int64)
        cross = triangle_cross(self.vertices, self.faces)
        self.face_normals = _unit(cross)

        # Vertex pseudo-normals: face normals weighted by the corner angle
        # (|e1 x e2| is twice the face area at every corner).
        tri = self.vertices[self.faces]
        double_area = np.linalg.norm(cross, axis=1)
        corner_angles = np.empty((len(self.faces), 3))
        for i in range(3):
            e1 = tri[:, (i + 1) % 3] - tri[:, i]
            e2 = tri[:, (i + 2) % 3] - tri[:, i]
            corner_angles[:, i] = np.arctan2(double_area, np.einsum("ij,ij->i", e1, e2))
        weighted = corner_angles[:, :, None] * self.face_normals[:, None, :]
        self.vertex_normals = np.zeros_like(self.vertices)
        for k in range(3):
            self.vertex_normals[:, k] = np.bincount(
                self.faces.ravel(), weights=weighted[:, :, k].ravel(), minlength=len(self.vertices))

        # Edge pseudo-normals: sum of the normals of the faces sharing the edge.
        # face_edges[f, i] is the edge of face f opposite its corner i.
        opposite = self.faces[:, [1, 2, 2, 0, 0, 1]].reshape(-1, 2)
        key = opposite.min(axis=1) * len(self.vertices) + opposite.max(axis=1)
        _, inverse = np.unique(key, return_inverse=True)
        self.face_edges = inverse.reshape(-1, 3)
        n_edges = int(inverse.max()) + 1 if len(inverse) else 0
        repeated_normals = np.repeat(self.face_normals, 3, axis=0)
        self.edge_normals = np.stack(
            [np.bincount(inverse, weights=repeated_normals[:, k], minlength=n_edges)
             for k in range(3)], axis=1)
        self.scale = float(np.linalg.norm(np.ptp(self.vertices, axis=0)))

    def pseudo_normals(self, face: np.ndarray, barycentric: np.ndarray) -> np.ndarray:
        """(N, 3) unnormalised pseudo-normal at the feature holding each closest point,
        given its face (N,) and barycentric coordinates (N, 3) in that face."""
        small = barycentric <= BARYCENTRIC_EPS
        n_small = small.sum(axis=1)
        normals = self.face_normals[face].copy()
        on_edge = n_small == 1
        corner = np.argmax(small[on_edge], axis=1)
        normals[on_edge] = self.edge_normals[self.face_edges[face[on_edge], corner]]
        on_vertex = n_small >= 2
        corner = np.argmax(barycentric[on_vertex], axis=1)
        normals[on_vertex] = self.vertex_normals[self.faces[face[on_vertex], corner]]
        return normals

    def query(self, points: np.ndarray) -> SDFQuery:
        """Signed distance, gradient and closest point for (N, 3) query points.

        The gradient is ``sign * (p - c) / |p - c|``, the direction in which the
        SDF grows: away from the surface in front of it, towards it behind.
        For points on the surface (distance below 1e-12 of the mesh size) it
        is the unit pseudo-normal.
        """
        points = np.ascontiguousarray(points, dtype=np.float64).reshape(-1, 3)
        if len(points) == 0:
            return SDFQuery(np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)),
                            np.zeros(0, dtype=np.int64))
        # point-cloud-utils 0.34 answers a one-row query for a wrong point (and squeezes
        # its outputs), so a single point is queried twice.
        padded = points if len(points) > 1 else np.repeat(points, 2, axis=0)
        _, face, barycentric = pcu.closest_points_on_mesh(padded, self.vertices, self.faces)
        face = np.asarray(face, dtype=np.int64)[: len(points)]
        barycentric = np.asarray(barycentric)[: len(points)]
        closest = np.einsum("nk,nkj->nj", barycentric, self.vertices[self.faces[face]])
        offset = points - closest
        distance = np.linalg.norm(offset, axis=1)
        normals = self.pseudo_normals(face, barycentric)
        sign = np.where(np.einsum("ij,ij->i", offset, normals) >= 0, 1.0, -1.0)
        on_surface = distance <= 1e-12 * self.scale
        gradient = np.where(on_surface[:, None], _unit(normals),
                            sign[:, None] * offset / np.where(on_surface, 1.0, distance)[:, None])
        return SDFQuery(sign * distance, gradient, closest, face)


def signed_distance(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N,) exact signed distance of (N, 3) points to the mesh (V, 3) / (F, 3), mesh units."""
    return MeshSDF(vertices, faces).query(points).sdf


def signed_distance_and_gradient(
    vertices: np.ndarray, faces: np.ndarray, points: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(N,) signed distance and (N, 3) unit SDF gradient of (N, 3) points; see MeshSDF.query."""
    result = MeshSDF(vertices, faces).query(points)
    return result.sdf, result.gradient
