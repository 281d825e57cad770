"""Training samples of one preprocessed scan: surface points and exact SDF samples.

Works in units of the crop radius (mm / radius_mm): the crop sphere is the
unit sphere, 1 unit = 10 cm for the default radius. Writes one ``.npz``:

- ``surface_points`` (S, 3) float32: area-uniform points on the sheet (SDF 0);
- ``surface_normals`` (S, 3) float32: unit face normal at each surface point;
- ``space_points`` (M, 3) float32: uniform in the unit ball, then the Gaussian
  near-surface samples (kept inside the unit ball);
- ``space_sdf`` (M,) float32: exact signed distance, > 0 in front of the sheet;
- ``space_grad`` (M, 3) float32: unit SDF gradient;
- ``landmarks`` (68, 3) float32;
- ``subject``, ``expression``: 0-d strings; ``radius_mm``: 0-d float64, what
  1 unit stands for.

ImFace's defaults: 235,000 surface points and 15,000 uniform points. The same
inputs and ``--seed`` give the same file, byte for byte. ``--backend mesh_to_sdf``
recomputes the SDF of the same points with the mesh-to-sdf package (its
``sample`` surface method with normal-vote signs) for comparison only.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Literal

import numpy as np

from facerecon import io
from facerecon.config import (
    PreprocessConfig,
    SamplingConfig,
    add_config_arguments,
    parse_config_arguments,
)
from facerecon.geometry.sdf import MeshSDF
from facerecon.geometry.surface import sample_surface

Backend = Literal["exact", "mesh_to_sdf"]
BACKENDS: tuple[str, ...] = ("exact", "mesh_to_sdf")

#: mesh-to-sdf's default number of surface samples for its ``sample`` method.
MESH_TO_SDF_SAMPLE_POINTS = 10_000_000


def sample_unit_ball(count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 3) points uniform in the unit ball."""
    direction = rng.standard_normal((count, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return direction * rng.random((count, 1)) ** (1.0 / 3.0)


def sample_near_surface(
    vertices: np.ndarray, faces: np.ndarray, count: int, sigma: float, rng: np.random.Generator
) -> np.ndarray:
    """(count, 3) surface points plus N(0, sigma^2) noise, redrawn until inside the unit ball."""
    kept = np.zeros((0, 3))
    while len(kept) < count:
        need = count - len(kept)
        points, _ = sample_surface(vertices, faces, need, rng)
        points += sigma * rng.standard_normal((need, 3))
        kept = np.concatenate([kept, points[np.einsum("ij,ij->i", points, points) <= 1.0]])
    return kept


def mesh_to_sdf_query(
    vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, rng: np.random.Generator,
    surface_points: int = MESH_TO_SDF_SAMPLE_POINTS,
) -> tuple[np.ndarray, np.ndarray]:
    """SDF (N,) and gradient (N, 3) from mesh-to-sdf's ``sample`` method: nearest of
    ``surface_points`` area-uniform samples, sign by a vote of the 11 nearest normals.

    The surface samples are drawn from ``rng`` (mesh-to-sdf's own draw is unseeded).
    Imported lazily: mesh-to-sdf pulls in pyrender and OpenGL (EGL headless).
    """
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    import trimesh
    from mesh_to_sdf.surface_point_cloud import SurfacePointCloud

    cloud_points, cloud_normals = sample_surface(vertices, faces, surface_points, rng)
    cloud = SurfacePointCloud(trimesh.Trimesh(vertices, faces, process=False),
                              cloud_points, cloud_normals)
    return cloud.get_sdf_in_batches(points, use_depth_buffer=False, return_gradients=True)


def sample_scan(
    vertices_mm: np.ndarray,
    faces: np.ndarray,
    landmarks_mm: np.ndarray,
    *,
    radius_mm: float = PreprocessConfig.radius_mm,
    surface_points: int = SamplingConfig.surface_points,
    uniform_points: int = SamplingConfig.uniform_points,
    near_surface_points: int = SamplingConfig.near_surface_points,
    near_sigmas_mm: tuple[float, ...] = tuple(SamplingConfig().near_sigma_mm),
    seed: int = SamplingConfig.seed,
    backend: Backend = SamplingConfig.backend,
) -> dict[str, np.ndarray]:
    """Sample one sheet given in crop-frame mm; returns the float arrays of the npz
    (see the module docstring; the caller adds ``subject`` and ``expression``).

    ``near_surface_points`` are split evenly over ``near_sigmas_mm`` (Gaussian
    standard deviations in mm, DeepSDF-style), and kept inside the unit ball.
    """
    rng = np.random.default_rng(seed)
    vertices = np.asarray(vertices_mm, dtype=np.float64) / radius_mm
    faces = np.asarray(faces, dtype=np.int64)
    surface, normals = sample_surface(vertices, faces, surface_points, rng)
    space = [sample_unit_ball(uniform_points, rng)]
    counts = np.diff(np.linspace(0, near_surface_points, len(near_sigmas_mm) + 1).astype(int))
    for count, sigma_mm in zip(counts, near_sigmas_mm, strict=True):
        space.append(sample_near_surface(vertices, faces, int(count), sigma_mm / radius_mm, rng))
    space_points = np.concatenate(space)
    if backend == "exact":
        query = MeshSDF(vertices, faces).query(space_points)
        sdf, grad = query.sdf, query.gradient
    elif backend == "mesh_to_sdf":
        sdf, grad = mesh_to_sdf_query(vertices, faces, space_points, rng)
    else:
        raise ValueError(f"unknown backend {backend!r} (valid: {', '.join(BACKENDS)})")
    f4 = np.float32
    return {
        "surface_points": surface.astype(f4),
        "surface_normals": normals.astype(f4),
        "space_points": space_points.astype(f4),
        "space_sdf": np.asarray(sdf, dtype=f4),
        "space_grad": np.asarray(grad, dtype=f4),
        "landmarks": (np.asarray(landmarks_mm) / radius_mm).astype(f4),
        "radius_mm": np.float64(radius_mm),
    }


def sphere_samples(radius: float, surface_points: int, uniform_points: int, seed: int
                   ) -> dict[str, np.ndarray]:
    """The arrays of a sample file (less subject and expression) for a sphere of ``radius``
    units with its exact SDF |p| - r, uniform points in the unit ball and zero landmarks: a
    shape with a known answer, to check the model stages apart from the geometry stages."""
    rng = np.random.default_rng(seed)
    normals = rng.normal(size=(surface_points, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    space = rng.normal(size=(uniform_points, 3))
    space *= (rng.uniform(0, 1, (uniform_points, 1)) ** (1 / 3)
              / np.linalg.norm(space, axis=1, keepdims=True))
    norm = np.linalg.norm(space, axis=1)
    f4 = np.float32
    return {"surface_points": (normals * radius).astype(f4), "surface_normals": normals.astype(f4),
            "space_points": space.astype(f4), "space_sdf": (norm - radius).astype(f4),
            "space_grad": (space / norm[:, None]).astype(f4), "landmarks": np.zeros((68, 3), f4),
            "radius_mm": np.float64(PreprocessConfig.radius_mm)}


#: What the sample stage reads (the crop radius from preprocess: 1 unit of the samples).
SAMPLE_STAGE = ("preprocess", "sampling")


def main(argv: list[str] | None = None) -> None:
    """Command line: one preprocessed sheet -> its sample file."""
    parser = argparse.ArgumentParser(
        prog="python -m facerecon.sample", description=__doc__.split("\n\n")[0])
    add_config_arguments(parser, SAMPLE_STAGE, flags=SAMPLE_STAGE)
    parser.add_argument("--mesh", required=True, type=Path, help="sheet from preprocess (PLY, mm)")
    parser.add_argument("--landmarks", required=True, type=Path, help="crop-frame landmarks (mm)")
    parser.add_argument("--out", required=True, type=Path, help="output .npz")
    parser.add_argument("--subject", required=True)
    parser.add_argument("--expression", required=True)
    args = parser.parse_args(argv)
    sections = parse_config_arguments(args, SAMPLE_STAGE)
    s: SamplingConfig = sections["sampling"]
    radius_mm = sections["preprocess"].radius_mm
    mesh = io.load_mesh(args.mesh)
    landmarks = io.load_landmarks(args.landmarks)
    radii = np.linalg.norm(np.asarray(mesh.vertices), axis=1)
    if radii.max() > radius_mm * (1 + 1e-6):
        raise io.InputError(
            f"{args.mesh}: vertices reach {radii.max():.3f} mm from the origin, outside the "
            f"{radius_mm:g} mm crop sphere; is it a preprocessed sheet in the crop frame?")
    arrays = sample_scan(
        np.asarray(mesh.vertices), np.asarray(mesh.faces), landmarks,
        radius_mm=radius_mm, surface_points=s.surface_points,
        uniform_points=s.uniform_points, near_surface_points=s.near_surface_points,
        near_sigmas_mm=tuple(s.near_sigma_mm), seed=s.seed, backend=s.backend)
    io.save_npz(args.out, subject=np.array(args.subject), expression=np.array(args.expression),
                **arrays)


if __name__ == "__main__":
    io.run_cli(main)
