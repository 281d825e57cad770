"""Exact signed distance: against analytic shapes, on closed meshes and open sheets."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy.spatial import Delaunay

from facerecon.geometry.sdf import MeshSDF, signed_distance, signed_distance_and_gradient

RNG = np.random.default_rng(1234)


def random_directions(n: int) -> np.ndarray:
    d = RNG.standard_normal((n, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def sheet_mesh(height, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Height field z = height(x, y) over [-1, 1]^2, faces counter-clockwise from +z."""
    x, y = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n))
    xy = np.c_[x.ravel(), y.ravel()]
    faces = Delaunay(xy).simplices
    e1, e2 = xy[faces[:, 1]] - xy[faces[:, 0]], xy[faces[:, 2]] - xy[faces[:, 0]]
    ccw = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0] > 0
    faces = np.where(ccw[:, None], faces, faces[:, ::-1])
    return np.c_[xy, height(xy[:, 0], xy[:, 1])], faces


def test_sphere_matches_analytic_distance_and_sign():
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=1.0)
    # The inscribed polyhedron lies between its smallest face-plane distance and 1.
    plane_distance = np.einsum("ij,ij->i", sphere.face_normals, sphere.triangles[:, 0])
    tessellation_error = 1.0 - plane_distance.min()
    assert tessellation_error < 1e-3

    radii = RNG.uniform(0.3, 1.7, 20_000)
    points = random_directions(len(radii)) * radii[:, None]
    sdf, grad = signed_distance_and_gradient(sphere.vertices, sphere.faces, points)
    analytic = radii - 1.0
    assert np.abs(sdf - analytic).max() <= tessellation_error + 1e-12
    clear = np.abs(analytic) > tessellation_error
    np.testing.assert_array_equal(np.sign(sdf[clear]), np.sign(analytic[clear]))
    # The SDF gradient is the unit radial direction inside and outside.
    np.testing.assert_allclose(np.linalg.norm(grad, axis=1), 1.0, atol=1e-12)
    assert np.einsum("ij,ij->i", grad, points / radii[:, None]).min() > 0.99


def test_sign_next_to_vertices_and_edges_of_a_sphere():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    v = sphere.vertices
    midpoints = v[sphere.edges_unique].mean(axis=1)
    for anchor in (v, midpoints):  # closest feature is the vertex / the edge
        outward = anchor / np.linalg.norm(anchor, axis=1, keepdims=True)
        out = signed_distance(v, sphere.faces, anchor + 1e-6 * outward)
        inside = signed_distance(v, sphere.faces, anchor - 1e-6 * outward)
        assert (out > 0).all() and (inside < 0).all()


def test_cube_is_exact_including_edges_and_corners():
    """A box is its own triangulation, so the mesh SDF equals the analytic one."""
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    points = RNG.uniform(-0.8, 0.8, (30_000, 3))
    # Add points hugging the 8 corners and 12 edges, inside and outside.
    corners = np.array(np.meshgrid([-0.5, 0.5], [-0.5, 0.5], [-0.5, 0.5])).reshape(3, -1).T
    points = np.concatenate([points, corners[RNG.integers(0, 8, 5000)]
                             + RNG.normal(scale=1e-4, size=(5000, 3))])
    q = np.abs(points) - 0.5
    analytic = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)
    result = MeshSDF(box.vertices, box.faces).query(points)
    np.testing.assert_allclose(result.sdf, analytic, atol=1e-12)
    nonzero = np.abs(analytic) > 1e-12
    np.testing.assert_array_equal(np.sign(result.sdf[nonzero]), np.sign(analytic[nonzero]))
    # The gradient is the direction of steepest increase: sdf(p + h g) ~ sdf(p) + h.
    h = 1e-7
    far = np.abs(analytic) > 1e-3
    stepped = signed_distance(box.vertices, box.faces, points[far] + h * result.gradient[far])
    np.testing.assert_allclose((stepped - result.sdf[far]) / h, 1.0, atol=1e-3)


def test_open_sheet_front_positive_back_negative():
    vertices, faces = sheet_mesh(lambda x, y: 0.15 * np.sin(2 * x) * np.cos(3 * y))
    n = 5000
    xy = RNG.uniform(-0.98, 0.98, (n, 2))
    height = 0.15 * np.sin(2 * xy[:, 0]) * np.cos(3 * xy[:, 1])
    offset = RNG.uniform(0.002, 0.3, n)
    sdf_front = signed_distance(vertices, faces, np.c_[xy, height + offset])
    sdf_back = signed_distance(vertices, faces, np.c_[xy, height - offset])
    assert (sdf_front > 0).all() and (sdf_back < 0).all()


def test_open_sheet_sign_beyond_edges_and_corners():
    """Past the boundary of a flat sheet facing +z, the sign is that of z."""
    vertices, faces = sheet_mesh(lambda x, y: np.zeros_like(x), n=21)
    n = 4000
    # Points just past an edge or a corner: |x| or |y| slightly above 1.
    xy = RNG.uniform(-1.0, 1.0, (n, 2))
    side = RNG.integers(0, 2, n)
    xy[np.arange(n), side] = np.sign(xy[np.arange(n), side]) * RNG.uniform(1.0, 1.05, n)
    corners = RNG.random(n) < 0.25
    xy[corners] = np.sign(xy[corners]) * RNG.uniform(1.0, 1.05, (corners.sum(), 2))
    z = RNG.uniform(0.001, 0.05, n) * RNG.choice([-1.0, 1.0], n)
    sdf, grad = signed_distance_and_gradient(vertices, faces, np.c_[xy, z])
    np.testing.assert_array_equal(np.sign(sdf), np.sign(z))
    assert (grad[:, 2] > 0).all()  # the SDF grows towards the front everywhere


@pytest.mark.parametrize("offset", [0.0, 1e-3])
def test_gradient_points_away_from_surface(offset):
    """Unit gradient; along the normal on the surface, away from the closest point in front."""
    vertices, faces = sheet_mesh(lambda x, y: 0.2 * x * y)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    points, face = trimesh.sample.sample_surface(mesh, 2000, seed=3)
    normals = mesh.face_normals[face]
    result = MeshSDF(vertices, faces).query(points + offset * normals)
    np.testing.assert_allclose(np.linalg.norm(result.gradient, axis=1), 1.0, atol=1e-12)
    if offset == 0.0:
        assert np.abs(result.sdf).max() < 1e-12
        assert np.einsum("ij,ij->i", result.gradient, normals).min() > 0.5
    else:
        away = points + offset * normals - result.closest
        assert (result.sdf > 0).all()
        assert np.einsum("ij,ij->i", result.gradient, away).min() > 0


@pytest.mark.parametrize("count", [0, 1, 2])
def test_few_points(count):
    """Shapes hold for tiny queries (point-cloud-utils squeezes a single point's outputs)."""
    sphere = trimesh.creation.icosphere(subdivisions=2)
    points = np.tile([[0.0, 0.0, 2.0]], (count, 1))
    result = MeshSDF(sphere.vertices, sphere.faces).query(points)
    assert result.sdf.shape == (count,) and result.gradient.shape == (count, 3)
    np.testing.assert_allclose(result.sdf, 1.0, atol=1e-12)
