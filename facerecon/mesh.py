"""Extract the reconstructed surface: marching cubes on the fitted SDF, in millimetres.

    python -m facerecon.mesh --config JSON --model model.pt --codes A.pt B.pt ... \
        --out A.ply B.ply ... [--resolution N] [--coarse-resolution N] [--chunk-points N] \
        [--device auto]

``--config`` holds the method's name and the ``mesh`` section (the flags override it).

The grid has ``resolution`` points per axis over [-1, 1]^3 (spacing h = 2/(N-1), passed
as such to marching cubes: the reference code's 256/255 scale defect is not copied). The
mesh is the field's zero level inside the crop sphere (the unit ball, radius_mm), and
nothing else:

* Every corner of every grid cell that meets the unit ball holds the field's value (in
  the narrow band below, far from the surface, its sign), so each triangle that marching
  cubes makes in such a cell is the field's own. No corner gets a stand-in value whose
  sign could fake a surface (a +1 fill beyond the sphere made a shell of fragments there
  wherever the field behind the face is negative).
* The mesh is then clipped to the unit ball exactly (:func:`crop_to_sphere`): triangles
  with every vertex inside are kept, those with none are dropped, and the others are cut
  where their edges cross the sphere. So every vertex lies within radius 1 and the rim
  lies on the sphere, as the ground truth's crop does; only the rim's chords (at most
  h^2/8 deep) stand for its arcs. This is why clipping and not masking: marching cubes
  over the cells inside the sphere ends the surface up to a cell diagonal short of it,
  and dropping the triangles that stick out ends it up to a triangle short.

Where the field is evaluated:

* densely on a GPU (whatever ``coarse_resolution`` says) or with ``coarse_resolution``
  0 (or 1): every corner above, ``chunk_points`` at a time on the device. On a GPU the
  network is cheap (all 16.7 M points of 256^3 in 0.19 s on an H100) and the narrow
  band's CPU-side bookkeeping (about 0.7 s at 256^3) would cost more than it saves.
* by a narrow band on a CPU (2 <= ``coarse_resolution`` < ``resolution``): the field is
  first evaluated on the coarse grid (spacing H). An SDF changes no faster than the
  distance (slope :data:`SLOPE`), so at a fine point p, |f(p)| >= |f(q)| - SLOPE |p - q|
  for each corner q of its coarse cell, and f(p) has the sign of f(q) where that bound is
  positive. Where the best of the 8 bounds exceeds SLOPE sqrt(3) h, p is no corner of a
  fine cell that the surface crosses (whose corners all lie within a cell diagonal of
  it): p takes that corner's sign unevaluated; the other fine points are evaluated.
  (Coarse cells whose corners all lie farther than SLOPE sqrt(3) (H/2 + h) from zero are
  skipped whole without computing the bounds.) A learned field can be steeper, so
  wherever a fine cell changes sign and has an unevaluated corner, every fine point of
  the coarse cells of those corners is evaluated, until no such cell is left. Every cell
  with a sign change then has the dense grid's values: the mesh is the dense one's unless
  the field turns sign unseen, inside a coarse cell away from the band.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import trimesh
from skimage.measure import marching_cubes

from facerecon.batches import add_device_arguments, add_view_arguments, setup_torch
from facerecon.config import MeshConfig, add_config_arguments, parse_config_arguments
from facerecon.geometry.crop import crop_to_sphere
from facerecon.images.view import read_view
from facerecon.io import InputError, run_cli, save_mesh
from facerecon.models import Conditioning, Model, Query
from facerecon.trained import FittedCodes, TrainedModel

#: What the mesh stage reads.
MESH_STAGE = ("method", "mesh")

#: Bound on the field's slope |grad f| that the narrow band assumes (an exact SDF's is 1;
#: steeper spots next to the band are caught by its closure, see the module docstring).
SLOPE = 1.0

SdfFn = Callable[[np.ndarray], np.ndarray]


def grid_axis(resolution: int) -> np.ndarray:
    """Grid coordinates of one axis: (resolution,) over [-1, 1]."""
    return np.linspace(-1.0, 1.0, resolution)


def _ends(axis: int) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Index tuples of a 3-d array without its last, and without its first, entry along
    ``axis``."""
    lower, upper = [slice(None)] * 3, [slice(None)] * 3
    lower[axis], upper[axis] = slice(None, -1), slice(1, None)
    return tuple(lower), tuple(upper)


def ball_cells(axis: np.ndarray, radius: float = 1.0) -> np.ndarray:
    """(R-1, R-1, R-1) bool: the cells of the grid (indexed by their lowest corner) that meet
    the ball of ``radius`` units about the origin."""
    gap = np.maximum(np.maximum(axis[:-1], -axis[1:]), 0.0) ** 2  # 0 to each interval, squared
    return gap[:, None, None] + gap[None, :, None] + gap[None, None, :] <= radius**2 + 1e-9


def cell_corners(cells: np.ndarray) -> np.ndarray:
    """(R-1, R-1, R-1) bool cells -> (R, R, R) bool: the grid points that are a corner of
    one of them."""
    points = cells
    for axis in range(3):
        shape = list(points.shape)
        shape[axis] += 1
        grown = np.zeros(shape, bool)
        lower, upper = _ends(axis)
        grown[lower] |= points
        grown[upper] |= points
        points = grown
    return points


def corner_reduce(values: np.ndarray, op: np.ufunc) -> np.ndarray:
    """(R, R, R) grid values -> (R-1, R-1, R-1): ``op`` over each cell's 8 corners."""
    for axis in range(3):
        lower, upper = _ends(axis)
        values = op(values[lower], values[upper])
    return values


def _evaluate(fn: SdfFn, volume: np.ndarray, axis: np.ndarray, mask: np.ndarray) -> None:
    """Set ``volume`` (R, R, R) to ``fn`` at the grid points where ``mask`` holds."""
    if mask.any():
        volume[mask] = fn(axis[np.stack(np.nonzero(mask), axis=1)])


def _corner_bound(coarse: np.ndarray, coarse_axis: np.ndarray, axis: np.ndarray,
                  owner: np.ndarray, index: tuple[np.ndarray, ...]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Lower bounds on |f| at P fine grid points (``index``: their 3 index arrays) from the
    8 corners q of the coarse cells that hold them (``owner``: each fine index's coarse
    cell): max over q of |f(q)| - SLOPE |p - q|, and the sign of f at the q that gives it
    (f's sign at p where the bound is positive). Returns (P,), (P,)."""
    bound, sign = np.full(len(index[0]), -np.inf), np.zeros(len(index[0]), np.float32)
    for offset in itertools.product((0, 1), repeat=3):
        corner = tuple(owner[i] + o for i, o in zip(index, offset, strict=True))
        value = coarse[corner]
        distance = np.sqrt(sum((axis[i] - coarse_axis[c]) ** 2
                               for i, c in zip(index, corner, strict=True)))
        candidate = np.abs(value) - SLOPE * distance
        better = candidate > bound
        bound[better], sign[better] = candidate[better], np.sign(value[better])
    return bound, sign


def sdf_volume(fn: SdfFn, resolution: int, coarse_resolution: int = 0) -> np.ndarray:
    """Evaluate ``fn`` ((P,3) -> (P,)) on the grid, densely or by the narrow band (module
    docstring). Returns (R, R, R) float32: the field at every corner of every cell that
    meets the unit ball (in the narrow band, its sign where far from zero); elsewhere any
    value."""
    axis = grid_axis(resolution)
    cells = ball_cells(axis)
    needed = cell_corners(cells)
    volume = np.ones((resolution,) * 3, np.float32)
    if not 2 <= coarse_resolution < resolution:
        _evaluate(fn, volume, axis, needed)
        return volume
    coarse_axis = grid_axis(coarse_resolution)
    step, coarse_step = axis[1] - axis[0], coarse_axis[1] - coarse_axis[0]
    coarse = np.ones((coarse_resolution,) * 3, np.float32)
    # the coarse cells that hold a needed fine point meet the ball grown by sqrt(3) h
    _evaluate(fn, coarse, coarse_axis, cell_corners(ball_cells(coarse_axis, 1.0 + 2.0 * step)))
    low, high = corner_reduce(coarse, np.minimum), corner_reduce(coarse, np.maximum)
    far = np.maximum(low, -high) > SLOPE * np.sqrt(3.0) * (coarse_step / 2 + step)
    # the coarse cell that holds each fine index (exact integer arithmetic), and its counts
    owner = np.minimum(np.arange(resolution) * (coarse_resolution - 1) // (resolution - 1),
                       coarse_resolution - 2)
    counts = np.bincount(owner)

    def fine(coarse_cells: np.ndarray) -> np.ndarray:
        """(C-1, C-1, C-1) per coarse cell -> (R, R, R) per fine point."""
        return coarse_cells.repeat(counts, 0).repeat(counts, 1).repeat(counts, 2)

    volume[...] = fine(np.where(low > 0, 1.0, -1.0).astype(np.float32))
    fresh = needed & fine(~far)
    near = np.nonzero(fresh)
    bound, sign = _corner_bound(coarse, coarse_axis, axis, owner, near)
    volume[near] = sign
    fresh[near] = bound <= SLOPE * np.sqrt(3.0) * step
    evaluated = np.zeros(volume.shape, bool)
    while True:
        _evaluate(fn, volume, axis, fresh)
        evaluated |= fresh
        # bit 0: negative, bit 1: unevaluated; a cell is open if it changes sign (its OR and
        # AND differ in bit 0) and has an unevaluated corner (bit 1 in its OR)
        code = (volume < 0).view(np.uint8) | ((~evaluated).view(np.uint8) << 1)
        any_bits = corner_reduce(code, np.bitwise_or)
        all_bits = corner_reduce(code, np.bitwise_and)
        open_cells = cells & (((any_bits ^ all_bits) & 1) == 1) & ((any_bits & 2) == 2)
        if not open_cells.any():
            return volume
        missing = np.nonzero(cell_corners(open_cells) & ~evaluated)
        todo = np.zeros_like(far)
        todo[owner[missing[0]], owner[missing[1]], owner[missing[2]]] = True
        fresh = needed & fine(todo) & ~evaluated


def extract_surface(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero level of a :func:`sdf_volume` (R, R, R) over [-1, 1]^3, clipped to the unit ball.

    Returns vertices (V, 3) in grid units and faces (F, 3), oriented so that normals point
    towards positive SDF (out of the face). ValueError if the field has no zero there.
    """
    axis = grid_axis(volume.shape[0])
    needed = cell_corners(ball_cells(axis))
    values = volume[needed]
    if values.min() < 0.0 < values.max():
        # marching cubes visits a cell where the mask holds at one corner (skimage: its
        # highest), so the ball's cells and some beyond, whose triangles are clipped away
        vertices, faces, _, _ = marching_cubes(volume, level=0.0,
                                               spacing=(axis[1] - axis[0],) * 3,
                                               mask=needed, gradient_direction="descent")
        vertices, faces = crop_to_sphere(vertices.astype(np.float64) - 1.0, faces, 1.0)
        if len(faces):
            return vertices, faces
    raise ValueError("the SDF has no zero crossing inside the unit sphere")


def network_sdf(model: Model, cond: Conditioning, chunk_points: int,
                device: torch.device) -> SdfFn:
    """Wrap a network and one scan's conditioning (batch of 1) as a numpy SDF function of
    (P, 3) points, evaluated ``chunk_points`` at a time on ``device`` and copied back once;
    the model's per-scan work (:meth:`Model.prepare`) is done once."""
    with torch.no_grad():
        cond = model.prepare(cond)

    def fn(points: np.ndarray) -> np.ndarray:
        points = torch.as_tensor(points, dtype=torch.float32).to(device)
        out = torch.empty(len(points), device=device)
        with torch.no_grad():
            for start in range(0, len(points), chunk_points):
                chunk = points[start:start + chunk_points]
                out[start:start + len(chunk)] = model(Query(chunk[None], cond))["sdf"][0]
        return out.cpu().numpy()

    return fn


def scan_mesh(model: Model, trained: TrainedModel, codes_path: Path, model_path: Path,
              view: tuple[Path, Path] | None, m: MeshConfig, device: torch.device
              ) -> trimesh.Trimesh:
    """One scan's mesh (mm, crop frame) from its fitted codes and, for a model that reads
    images, its (view folder, preprocess record)."""
    fitted = FittedCodes.load(codes_path, model_path)
    cond = Conditioning({name: code[None].to(device) for name, code in fitted.codes.items()})
    if view is not None:
        image, camera = read_view(view[0], view[1], trained.radius_mm)
        cond = dataclasses.replace(cond, image=torch.from_numpy(image)[None].to(device),
                                   camera=torch.from_numpy(camera)[None].to(device))
    fn = network_sdf(model, cond, m.chunk_points, device)
    coarse = m.coarse_resolution if device.type == "cpu" else 0  # dense on a GPU
    volume = sdf_volume(fn, m.resolution, coarse)
    try:
        vertices, faces = extract_surface(volume)
    except ValueError as exc:
        raise InputError(f"{codes_path}: {exc}") from exc
    return trimesh.Trimesh(vertices * trained.radius_mm, faces, process=False)


def main(argv: list[str] | None = None) -> None:
    """Command line: fitted codes -> meshes (PLY, millimetres, crop frame), the model
    loaded once for all the scans given."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, MESH_STAGE, flags=("mesh",))
    parser.add_argument("--model", type=Path, required=True, help="trained model (.pt)")
    parser.add_argument("--codes", type=Path, nargs="+", required=True,
                        help="fitted codes (.pt), one per scan")
    parser.add_argument("--out", type=Path, nargs="+", required=True,
                        help="output meshes (.ply), one per --codes, same order")
    add_view_arguments(parser)
    add_device_arguments(parser)
    args = parser.parse_args(argv)
    if len(args.out) != len(args.codes):
        raise InputError(f"--out: {len(args.out)} paths for {len(args.codes)} codes files "
                         "(one per scan, same order)")
    if (args.views or args.transforms) and not (
            len(args.views) == len(args.transforms) == len(args.codes)):
        raise InputError("--views and --transforms: give each scan's folder and record, one "
                         "per --codes")
    sections = parse_config_arguments(args, MESH_STAGE)
    device = setup_torch(args.device, args.threads, 0)
    trained = TrainedModel.load(args.model, sections["method"] or None)
    model, _ = trained.build(device)
    views = list(zip(args.views, args.transforms, strict=True)) or [None] * len(args.codes)
    for codes, out, view in zip(args.codes, args.out, views, strict=True):
        mesh = scan_mesh(model, trained, codes, args.model, view, sections["mesh"], device)
        save_mesh(mesh, out)
        print(f"{out}: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces")


if __name__ == "__main__":
    run_cli(main)
