"""Registration of preprocessed scans to one shared topology: a grid template.

A bilinear (Tucker) face model needs every training scan as the same vertices in
correspondence, but scans do not share a topology (the synthetic ones have 87k-97k
vertices each, different per scan). The template is therefore a regular grid over the
crop frame's (x, y) plane (face towards +z), laid out around reference landmarks. For
one scan, a 2D thin-plate spline through the 68 landmarks' (x, y) carries the grid
from the reference landmarks onto the scan's, and each grid vertex then drops along
-z onto the scan's pseudo-watertight sheet: the sheet is what is visible from the
front, so the first hit of a ray from the front is the vertex's one point on it. The
landmarks fix correspondence where the face has features (eyes, nose, mouth, jaw);
between them the spline interpolates smoothly. The same procedure works for every
dataset, whether or not its scans share a topology.

Everything is in millimetres in the crop frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import point_cloud_utils as pcu
import trimesh
from scipy.interpolate import RBFInterpolator
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class GridTemplate:
    """Vertices and triangles of the template, in the reference landmarks' (x, y)."""

    xy_mm: np.ndarray  #: (V, 2) vertex positions
    faces: np.ndarray  #: (F, 3) int64 triangles, counter-clockwise seen from +z
    landmarks_xy_mm: np.ndarray  #: (68, 2) reference landmarks, the spline's source points

    def subset(self, keep: np.ndarray) -> GridTemplate:
        """The template restricted to the vertices where ``keep`` (V,) bool is set: only the
        triangles with all three corners kept survive, vertices renumbered in order."""
        index = np.full(len(self.xy_mm), -1, dtype=np.int64)
        index[keep] = np.arange(int(keep.sum()))
        faces = index[self.faces]
        return GridTemplate(self.xy_mm[keep], faces[(faces >= 0).all(axis=1)],
                            self.landmarks_xy_mm)


def grid_template(landmarks_xy_mm: np.ndarray, radius_mm: float, spacing_mm: float
                  ) -> GridTemplate:
    """A square grid of ``spacing_mm`` over the disk of ``radius_mm`` around the crop
    centre's (x, y) (the crop sphere seen from the front), two triangles per cell, with
    ``landmarks_xy_mm`` (68, 2) as the reference landmarks."""
    steps = int(np.ceil(radius_mm / spacing_mm))
    axis = spacing_mm * np.arange(-steps, steps + 1)
    n = len(axis)
    x, y = np.meshgrid(axis, axis, indexing="xy")  # x along columns, y along rows
    xy = np.stack([x.ravel(), y.ravel()], axis=1)
    corner = (np.arange(n - 1)[:, None] * n + np.arange(n - 1)[None, :]).ravel()
    a, b, c, d = corner, corner + 1, corner + n, corner + n + 1  # (x, y), (x+1, y), (x, y+1), ..
    faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)]).astype(np.int64)
    full = GridTemplate(xy, faces, np.asarray(landmarks_xy_mm, dtype=np.float64)[:, :2])
    return full.subset(np.einsum("ij,ij->i", xy, xy) <= radius_mm**2)


def warp_xy(source_xy_mm: np.ndarray, target_xy_mm: np.ndarray, points_xy_mm: np.ndarray,
            smoothing: float = 0.0) -> np.ndarray:
    """Thin-plate spline taking ``source_xy_mm`` (K, 2) to ``target_xy_mm`` (K, 2), applied
    to ``points_xy_mm`` (N, 2) -> (N, 2). ``smoothing`` 0 interpolates the control points
    exactly; more trades exactness for a smoother warp (scipy's RBFInterpolator, affine
    part included, so an affine motion of the landmarks moves the grid exactly so)."""
    spline = RBFInterpolator(source_xy_mm, target_xy_mm, kernel="thin_plate_spline",
                             smoothing=smoothing, degree=1)
    return spline(points_xy_mm)


def drop_onto_sheet(sheet: trimesh.Trimesh, xy_mm: np.ndarray) -> np.ndarray:
    """z (N,) where a ray along -z through each (x, y) of ``xy_mm`` (N, 2) first meets
    ``sheet`` (from the front), NaN where it misses. The hit triangle comes from
    point-cloud-utils' ray caster (Embree, float32; 3x faster to set up than trimesh's
    for a 95k-face sheet); z is then that triangle's plane at (x, y), in float64."""
    vertices = np.asarray(sheet.vertices, dtype=np.float64)
    faces = np.asarray(sheet.faces, dtype=np.int64)
    xy_mm = np.asarray(xy_mm, dtype=np.float64)
    top = vertices[:, 2].max() + 1.0
    origins = np.column_stack([xy_mm, np.full(len(xy_mm), top)]).astype(np.float32)
    directions = np.broadcast_to(np.float32([0.0, 0.0, -1.0]), origins.shape)
    hit, _, _ = pcu.ray_mesh_intersection(vertices.astype(np.float32), faces.astype(np.int32),
                                          origins, np.ascontiguousarray(directions))
    z = np.full(len(xy_mm), np.nan)
    found = np.flatnonzero(hit >= 0)
    tri = vertices[faces[hit[found]]]  # (H, 3, 3)
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    facing = np.abs(normal[:, 2]) > 1e-9 * np.linalg.norm(normal, axis=1)  # not edge-on
    delta = xy_mm[found[facing]] - tri[facing, 0, :2]
    n = normal[facing]
    z[found[facing]] = tri[facing, 0, 2] - (n[:, 0] * delta[:, 0] + n[:, 1] * delta[:, 1]) / n[:, 2]
    return z


def register_scan(template: GridTemplate, sheet: trimesh.Trimesh, landmarks_mm: np.ndarray,
                  smoothing: float = 0.0) -> np.ndarray:
    """The template's vertices on one scan -> (V, 3) mm: (x, y) warped through the scan's
    landmarks ``landmarks_mm`` (68, 3), z on the sheet, NaN where the vertex's ray misses
    it (the vertex lies outside the sheet's outline seen from the front)."""
    xy = warp_xy(template.landmarks_xy_mm, np.asarray(landmarks_mm)[:, :2], template.xy_mm,
                 smoothing)
    return np.column_stack([xy, drop_onto_sheet(sheet, xy)])


def fill_misses(template: GridTemplate, registered_mm: np.ndarray) -> np.ndarray:
    """``registered_mm`` (V, 3) with each missing z (NaN) replaced by the z of the nearest
    (in the template's (x, y)) vertex that hit the sheet.

    Vertices miss where the warp carries them past the sheet's outline (a jaw dropped by an
    open mouth pulls the chin's vertices below the crop). Where that outline is the crop
    sphere's rim, continuing the rim's depth outwards puts them outside the sphere, so they
    add no surface once a fitted mesh is clipped to it; where it is the face's own
    silhouette (below the jaw's corners, where no surface lies inside the crop) they stay
    inside and add a little. Either way every scan keeps every vertex: a Tucker model
    needs complete data."""
    missing = np.isnan(registered_mm[:, 2])
    if not missing.any():
        return registered_mm
    if missing.all():
        raise ValueError("no template vertex hits the sheet")
    _, nearest = cKDTree(template.xy_mm[~missing]).query(template.xy_mm[missing])
    out = registered_mm.copy()
    out[missing, 2] = registered_mm[~missing, 2][nearest]
    return out


def landmark_barycentrics(template: GridTemplate) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the reference landmarks lie on the template: the landmarks (L,) int64 whose
    (x, y) some template triangle covers, the corners (L, 3) int64 of that triangle and their
    barycentric weights (L, 3), so that a registered scan's landmark is the weighted sum of
    those vertices. Landmarks outside every triangle (outside the region the training scans
    cover) are left out."""
    tri = template.xy_mm[template.faces]  # (F, 3, 2)
    origin, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    ids, corners, weights = [], [], []
    for k, point in enumerate(template.landmarks_xy_mm):
        d = point - origin
        u = (d[:, 0] * e2[:, 1] - d[:, 1] * e2[:, 0]) / det
        v = (e1[:, 0] * d[:, 1] - e1[:, 1] * d[:, 0]) / det
        inside = np.flatnonzero((u >= -1e-9) & (v >= -1e-9) & (u + v <= 1 + 1e-9))
        if len(inside):
            f = inside[0]
            ids.append(k)
            corners.append(template.faces[f])
            weights.append([1.0 - u[f] - v[f], u[f], v[f]])
    return (np.array(ids, dtype=np.int64), np.array(corners, dtype=np.int64).reshape(-1, 3),
            np.array(weights, dtype=np.float64).reshape(-1, 3))
