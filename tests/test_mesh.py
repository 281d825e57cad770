"""Mesh extraction (facerecon.mesh): the surface ends exactly at the crop sphere, with no
false one along it, and the CPU's narrow band gives the dense grid's mesh from a fraction
of its network queries, on a trained model.

(The grid-spacing check, a sphere of radius 0.5 coming back at 0.5, is
tests/test_training.py::test_marching_cubes_grid_has_no_scale_defect.)
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import trimesh
from conftest import write_sphere_samples
from scipy.spatial import cKDTree

from facerecon import train
from facerecon.geometry.crop import crop_to_sphere
from facerecon.mesh import SdfFn, extract_surface, network_sdf, sdf_volume
from facerecon.models import Conditioning
from facerecon.trained import TrainedModel

#: A tiny one-MLP model, trained on two spheres.
METHOD = {"method": "spheres",
          "model": {"name": "implicit", "id_dim": 8, "exp_dim": 8, "hidden_dim": 32,
                    "hidden_layers": 2, "pe_frequencies": 2, "experts": 1},
          "train": {"epochs": 150, "scans_per_batch": 2, "points_per_scan": 1024,
                    "lr": 0.003, "code_lr": 0.01}}
#: Behind the face: a plane whose back side (z < BACK) is inside reaches the crop sphere.
BACK = -0.7


def behind(points: np.ndarray) -> np.ndarray:
    """(P, 3) -> (P,): signed distance to the plane z = BACK, negative behind it."""
    return points[:, 2] - BACK


def counted(fn: SdfFn) -> tuple[SdfFn, list[int]]:
    """``fn`` and a one-item list that counts the points it is asked for."""
    count = [0]

    def wrapped(points: np.ndarray) -> np.ndarray:
        count[0] += len(points)
        return fn(points)

    return wrapped, count


def components(vertices: np.ndarray, faces: np.ndarray) -> list[np.ndarray]:
    """Vertex indices of each connected piece of a mesh."""
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    return trimesh.graph.connected_components(mesh.edges, nodes=np.arange(len(vertices)))


def hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Hausdorff distance between two vertex sets (V, 3) and (W, 3)."""
    return max(cKDTree(a).query(b)[0].max(), cKDTree(b).query(a)[0].max())


def assert_no_false_shell(vertices: np.ndarray, faces: np.ndarray) -> None:
    """Every vertex within the unit sphere; every piece reaches well inside it; near the
    sphere only the plane's disk (a false shell would cover the back cap, z < BACK)."""
    radius = np.linalg.norm(vertices, axis=1)
    assert radius.max() <= 1.0 + 1e-9
    assert all(radius[piece].min() < 0.9 for piece in components(vertices, faces))
    assert np.abs(vertices[radius > 0.9, 2] - BACK).max() < 1e-4


@pytest.mark.parametrize("coarse", [0, 16])
def test_a_field_negative_behind_the_face_gives_its_disk_and_no_shell(coarse: int) -> None:
    vertices, faces = extract_surface(sdf_volume(behind, 64, coarse))
    assert_no_false_shell(vertices, faces)
    assert np.abs(vertices[:, 2] - BACK).max() < 1e-5
    assert len(components(vertices, faces)) == 1
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.area == pytest.approx(np.pi * (1.0 - BACK**2), rel=1e-3)  # the disk, to its rim
    rim = mesh.edges_sorted[trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1)]
    assert np.abs(np.linalg.norm(vertices[rim], axis=-1) - 1.0).max() < 1e-9


def test_clipping_cuts_triangles_at_the_sphere_and_keeps_their_orientation() -> None:
    """Two triangles sharing an edge that crosses the sphere: one pokes out with one vertex,
    the other with two; the cut pieces share their crossing vertex and face +z as before."""
    vertices = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.5, 0.0],
                         [2.0, -0.5, 0.0]])
    faces = np.array([[0, 1, 2], [0, 3, 1]])
    clipped, cut = crop_to_sphere(vertices, faces, 1.0)
    mesh = trimesh.Trimesh(clipped, cut, process=False)
    assert np.linalg.norm(clipped, axis=1).max() <= 1.0 + 1e-12
    assert np.isclose(clipped, [1.0, 0.0, 0.0]).all(1).sum() == 1  # one shared crossing
    assert (mesh.face_normals[:, 2] > 0.99).all()
    whole = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.area < whole.area
    assert crop_to_sphere(clipped, cut, 1.0)[0].shape == clipped.shape  # inside: kept as is


@pytest.fixture(scope="module")
def trained_sdf(tmp_path_factory: pytest.TempPathFactory) -> SdfFn:
    """The field of a tiny model trained (facerecon.train) on spheres of radius 0.45 and
    0.55, with its first scan's training codes."""
    root = tmp_path_factory.mktemp("mesh_model")
    samples = []
    for i, radius in enumerate([0.45, 0.55]):
        samples.append(root / f"{i}.npz")
        write_sphere_samples(samples[-1], str(i), "1_neutral", radius, i)
    model_path = root / "model.pt"
    train.main(["--samples", *map(str, samples), "--config", json.dumps(METHOD), "--out",
                str(model_path), "--log-csv", str(root / "log.csv"), "--device", "cpu"])
    model, codes = TrainedModel.load(model_path).build(torch.device("cpu"))
    first = torch.zeros(1, dtype=torch.long)
    with torch.no_grad():
        cond = Conditioning(codes(first, first))
    return network_sdf(model, cond, 65_536, torch.device("cpu"))


def test_narrow_band_gives_the_dense_mesh_from_a_fifth_of_the_queries(trained_sdf: SdfFn
                                                                      ) -> None:
    resolution, coarse = 128, 32
    voxel = 2.0 / (resolution - 1)
    dense_fn, dense_queries = counted(trained_sdf)
    band_fn, band_queries = counted(trained_sdf)
    dense = extract_surface(sdf_volume(dense_fn, resolution, 0))
    band = extract_surface(sdf_volume(band_fn, resolution, coarse))
    radius = np.linalg.norm(dense[0], axis=1)
    assert radius.mean() == pytest.approx(0.45, abs=0.05)  # it learned its sphere
    assert dense_queries[0] >= 5 * band_queries[0]
    assert hausdorff(dense[0], band[0]) < 0.01 * voxel
    assert len(band[1]) == len(dense[1])


def test_a_trained_field_negative_behind_the_face_gives_no_shell(trained_sdf: SdfFn) -> None:
    """The trained sphere joined with the inside of the plane z = BACK, so the field is
    negative behind the face out to the crop sphere: dense and narrow band mesh the sphere
    and the disk alone, alike."""
    def field(points: np.ndarray) -> np.ndarray:
        return np.minimum(trained_sdf(points), behind(points))

    meshes = [extract_surface(sdf_volume(field, 96, coarse)) for coarse in (0, 24)]
    for vertices, faces in meshes:
        assert_no_false_shell(vertices, faces)
        assert len(components(vertices, faces)) == 2
    (dense, _), (band, _) = meshes
    assert hausdorff(dense, band) < 0.01 * 2.0 / 95
