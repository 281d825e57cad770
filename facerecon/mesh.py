"""Extract the reconstructed surface: marching cubes on the fitted SDF, in millimetres.

    python -m facerecon.mesh --config JSON --model model.pt --codes codes.pt --out mesh.ply \
        [--resolution N] [--coarse-resolution N] [--chunk-points N] [--device auto]

``--config`` holds the method's name and the ``mesh`` section (the flags override it).

The grid has ``resolution`` points per axis over [-1, 1]^3 (spacing 2/(N-1),
passed as such to marching cubes: the reference code's 256/255 scale defect is
not copied) and is masked to the unit sphere. A coarse pass first finds where
the zero level can be; only grid points near it are evaluated at full
resolution, the others take the interpolated coarse value (their sign is all
marching cubes needs).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import trimesh
from scipy.interpolate import RegularGridInterpolator
from skimage.measure import marching_cubes

from facerecon.batches import add_device_arguments, add_view_arguments, setup_torch
from facerecon.config import add_config_arguments, parse_config_arguments
from facerecon.images.view import read_view
from facerecon.io import InputError, run_cli, save_mesh
from facerecon.models import Conditioning, Model, Query
from facerecon.trained import FittedCodes, TrainedModel

#: What the mesh stage reads.
MESH_STAGE = ("method", "mesh")

SdfFn = Callable[[np.ndarray], np.ndarray]


def grid_axis(resolution: int) -> np.ndarray:
    """Grid coordinates of one axis: (resolution,) over [-1, 1]."""
    return np.linspace(-1.0, 1.0, resolution)


def grid_points(axis: np.ndarray) -> np.ndarray:
    """All grid points, 'ij' order: (R^3, 3)."""
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)


def sdf_volume(fn: SdfFn, resolution: int, coarse_resolution: int = 0) -> np.ndarray:
    """Evaluate ``fn`` ((P,3) -> (P,)) on the grid, coarse-to-fine. Returns (R, R, R).

    With ``coarse_resolution`` in (0, resolution), points farther from the coarse
    zero level than twice the coarse cell diagonal keep the interpolated coarse value.
    """
    axis = grid_axis(resolution)
    points = grid_points(axis)
    inside = np.linalg.norm(points, axis=1) <= 1.0 + 2.0 / (resolution - 1)
    values = np.ones(len(points))
    if 0 < coarse_resolution < resolution:
        coarse_axis = grid_axis(coarse_resolution)
        coarse = fn(grid_points(coarse_axis)).reshape((coarse_resolution,) * 3)
        values = RegularGridInterpolator((coarse_axis,) * 3, coarse)(points)
        band = 2.0 * np.sqrt(3.0) * (coarse_axis[1] - coarse_axis[0])
        refine = inside & (np.abs(values) < band)
    else:
        refine = inside
    values[refine] = fn(points[refine])
    return values.reshape((resolution,) * 3)


def extract_surface(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero level of a (R,R,R) SDF volume over [-1,1]^3, masked to the unit sphere.

    Returns vertices (V, 3) in grid units and faces (F, 3), oriented so that
    normals point towards positive SDF (out of the face).
    """
    resolution = volume.shape[0]
    axis = grid_axis(resolution)
    spacing = axis[1] - axis[0]
    mask = np.linalg.norm(grid_points(axis), axis=1).reshape(volume.shape) <= 1.0
    if not (volume[mask].min() < 0.0 < volume[mask].max()):
        raise ValueError("the SDF has no zero crossing inside the unit sphere")
    vertices, faces, _, _ = marching_cubes(volume, level=0.0, spacing=(spacing,) * 3,
                                           mask=mask, gradient_direction="descent")
    return vertices - 1.0, faces


def network_sdf(model: Model, cond: Conditioning, chunk_points: int,
                device: torch.device) -> SdfFn:
    """Wrap a network and one scan's conditioning (batch of 1) as a numpy SDF function of
    (P, 3) points; the model's per-scan work (:meth:`Model.prepare`) is done once."""
    with torch.no_grad():
        cond = model.prepare(cond)

    def fn(points: np.ndarray) -> np.ndarray:
        out = np.empty(len(points))
        with torch.no_grad():
            for start in range(0, len(points), chunk_points):
                chunk = torch.as_tensor(points[start:start + chunk_points],
                                        dtype=torch.float32, device=device)
                out[start:start + len(chunk)] = model(Query(chunk[None], cond))["sdf"][0].cpu()
        return out

    return fn


def main(argv: list[str] | None = None) -> None:
    """Command line: fitted codes -> mesh (PLY, millimetres, crop frame)."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, MESH_STAGE, flags=("mesh",))
    parser.add_argument("--model", type=Path, required=True, help="trained model (.pt)")
    parser.add_argument("--codes", type=Path, required=True, help="fitted codes (.pt)")
    parser.add_argument("--out", type=Path, required=True, help="output mesh (.ply)")
    add_view_arguments(parser)
    add_device_arguments(parser)
    args = parser.parse_args(argv)
    sections = parse_config_arguments(args, MESH_STAGE)
    m = sections["mesh"]
    device = setup_torch(args.device, args.threads, 0)
    trained = TrainedModel.load(args.model, sections["method"] or None)
    fitted = FittedCodes.load(args.codes, args.model)
    model, _ = trained.build(device)
    cond = Conditioning({name: code[None].to(device) for name, code in fitted.codes.items()})
    if args.views or args.transforms:
        if len(args.views) != 1 or len(args.transforms) != 1:
            raise InputError("--views and --transforms: give the scan's one folder and record")
        image, camera = read_view(args.views[0], args.transforms[0], trained.radius_mm)
        cond = dataclasses.replace(cond, image=torch.from_numpy(image)[None].to(device),
                                   camera=torch.from_numpy(camera)[None].to(device))
    fn = network_sdf(model, cond, m.chunk_points, device)
    volume = sdf_volume(fn, m.resolution, m.coarse_resolution)
    try:
        vertices, faces = extract_surface(volume)
    except ValueError as exc:
        raise InputError(f"{args.codes}: {exc}") from exc
    mesh = trimesh.Trimesh(vertices * trained.radius_mm, faces, process=False)
    save_mesh(mesh, args.out)
    print(f"{args.out}: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces")


if __name__ == "__main__":
    run_cli(main)
