"""Mesh extraction: network queries and time, dense versus the CPU's narrow band, and the
false-shell check, on one scan of a trained model.

    python benchmarks/bench_mesh.py --model MODEL.pt [--codes CODES.pt | --scan 0] \
        [--grids 128:32 256:64] [--behind -0.7] [--device cpu] [--threads 1]

The field of one scan (its fitted codes, or a training scan's codes) is meshed
(facerecon.mesh) at each grid (resolution:coarse resolution) twice, densely and by the
narrow band, and one JSON line is printed per run: network queries, seconds in the
network, in the rest of ``sdf_volume`` and in ``extract_surface``, vertices, the largest
vertex radius (units; 1 is the crop sphere), and the area in mm^2 of any false shell
(pieces whose vertices all lie beyond radius 0.95). The narrow band's line adds its
queries as a fraction of the dense ones and its symmetric Hausdorff distance to the dense
mesh, in voxels. ``--behind Z`` meshes the field joined with the inside of the plane
z = Z instead, which is negative behind the face out to the crop sphere (where a +1 fill
beyond the sphere made a shell).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree

from facerecon.batches import setup_torch
from facerecon.mesh import SdfFn, extract_surface, network_sdf, sdf_volume
from facerecon.models import Conditioning
from facerecon.trained import FittedCodes, TrainedModel


class Counted:
    """An SDF function that counts its points and the seconds spent in it."""

    def __init__(self, fn: SdfFn) -> None:
        self.fn, self.points, self.seconds = fn, 0, 0.0

    def __call__(self, points: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        values = self.fn(points)
        self.seconds += time.perf_counter() - start
        self.points += len(points)
        return values


def shell_area_mm2(vertices: np.ndarray, faces: np.ndarray, radius_mm: float) -> float:
    """Area (mm^2) of the pieces of a mesh (units) that lie beyond radius 0.95 throughout."""
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    far = np.linalg.norm(vertices, axis=1) > 0.95
    pieces = trimesh.graph.connected_components(mesh.edges, nodes=np.arange(len(vertices)))
    shell = np.zeros(len(vertices), bool)
    for piece in pieces:
        shell[piece] = far[piece].all()
    return float(mesh.area_faces[shell[faces].all(1)].sum() * radius_mm**2)


def joined_with_back(fn: SdfFn, z: float) -> SdfFn:
    """``fn`` joined with the inside of the plane at height ``z`` (units): negative behind
    it, out to the crop sphere."""
    def joined(points: np.ndarray) -> np.ndarray:
        return np.minimum(fn(points), points[:, 2] - z)

    return joined


def run(fn: SdfFn, resolution: int, coarse: int, radius_mm: float
        ) -> tuple[dict[str, float], np.ndarray]:
    """Mesh ``fn`` once; its measurements and the vertices (units)."""
    counted = Counted(fn)
    start = time.perf_counter()
    volume = sdf_volume(counted, resolution, coarse)
    volume_s = time.perf_counter() - start
    start = time.perf_counter()
    vertices, faces = extract_surface(volume)
    row = {"resolution": resolution, "coarse_resolution": coarse, "queries": counted.points,
           "network_s": round(counted.seconds, 3),
           "bookkeeping_s": round(volume_s - counted.seconds, 3),
           "extract_s": round(time.perf_counter() - start, 3), "vertices": len(vertices),
           "max_radius": float(np.linalg.norm(vertices, axis=1).max()),
           "shell_mm2": shell_area_mm2(vertices, faces, radius_mm)}
    return row, vertices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="trained model (.pt)")
    parser.add_argument("--codes", type=Path, default=None, help="fitted codes (.pt)")
    parser.add_argument("--scan", type=int, default=0,
                        help="without --codes: the row of the training scan whose codes to use")
    parser.add_argument("--grids", nargs="+", default=["128:32", "256:64"],
                        help="resolution:coarse_resolution pairs")
    parser.add_argument("--behind", type=float, default=None,
                        help="join the field with the inside of the plane z = BEHIND (units)")
    parser.add_argument("--chunk-points", type=int, default=65_536)
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    device = setup_torch(args.device, args.threads, 0)
    trained = TrainedModel.load(args.model)
    model, tables = trained.build(device)
    if args.codes is not None:
        codes = {name: code[None].to(device)
                 for name, code in FittedCodes.load(args.codes, args.model).codes.items()}
    else:
        subject = trained.subjects.index(trained.scans[args.scan][0])
        with torch.no_grad():
            codes = tables(torch.tensor([subject], device=device),
                           torch.tensor([args.scan], device=device))
    cond = Conditioning(codes)
    fn = network_sdf(model, cond, args.chunk_points, device)
    if args.behind is not None:
        fn = joined_with_back(fn, args.behind)
    for grid in args.grids:
        resolution, coarse = map(int, grid.split(":"))
        dense, dense_vertices = run(fn, resolution, 0, trained.radius_mm)
        print(json.dumps({"device": device.type, **dense}), flush=True)
        band, band_vertices = run(fn, resolution, coarse, trained.radius_mm)
        voxel = 2.0 / (resolution - 1)
        distance = max(cKDTree(dense_vertices).query(band_vertices)[0].max(),
                       cKDTree(band_vertices).query(dense_vertices)[0].max())
        print(json.dumps({"device": device.type, **band,
                          "query_fraction": round(band["queries"] / dense["queries"], 4),
                          "hausdorff_voxels": float(distance / voxel)}), flush=True)


if __name__ == "__main__":
    main()
