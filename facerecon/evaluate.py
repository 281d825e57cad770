"""Reconstruction metrics shared by every method (PROTOCOL.md, "Mesh extraction and metrics").

Both meshes are in millimetres. Each is sampled area-uniformly (150,000 points
by default, seeded), the reconstruction (``pred``) is rigidly aligned to the
ground truth (``gt``) by point-to-point ICP (at most 20 iterations, no scale;
by default ImFace's reference procedure, see ``EvaluateConfig.icp``), and
unsquared Euclidean nearest-neighbour distances between the two sample sets
give the protocol numbers:

* Chamfer = (mean(gt -> pred) + mean(pred -> gt)) / 2, in mm;
* precision = share of pred samples within ``threshold_mm`` of a gt sample,
  recall = share of gt samples within ``threshold_mm`` of a pred sample,
  F-score = 2PR / (P + R) (0 when P + R = 0). All three are percentages (x 100).

Point-to-point distances have a floor set by the sample spacing (for a 50 mm
sphere and 150,000 samples, about 0.23 mm between identical meshes), so an
exact point-to-surface Chamfer (``chamfer_p2s_mm``: each mesh's samples to the
other mesh's triangles, via a BVH) is reported beside the protocol numbers.

Command line::

    python -m facerecon.evaluate --pred PRED --gt GT [--samples N] [--seed S]
        [--threshold-mm T] [--icp {reference,rematch,none}] [--config JSON]
        [--out JSON]

prints one JSON object (see :func:`evaluate_meshes`) and, with ``--out``,
writes the same object atomically to that file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import point_cloud_utils as pcu
import trimesh

from facerecon.config import EvaluateConfig, add_config_arguments, parse_config_arguments
from facerecon.geometry.align import apply_transform
from facerecon.geometry.distance import (
    DEFAULT_THRESHOLD_MM,
    chamfer_fscore,
    reference_icp,
    rigid_icp,
)
from facerecon.geometry.surface import sample_surface
from facerecon.io import InputError, load_mesh, run_cli, write_json

DEFAULT_SAMPLES = EvaluateConfig.samples
#: What the evaluate stage reads.
EVALUATE_STAGE = ("evaluate",)
ICP_SUBSAMPLE = 20_000  # pred samples used by ICP; the final metrics use all of them
#: ICP procedure per ``EvaluateConfig.icp`` choice ('none' skips alignment).
ICP_METHODS = {"reference": reference_icp, "rematch": rigid_icp}


def point_to_surface_distances(points: np.ndarray, mesh: trimesh.Trimesh) -> np.ndarray:
    """Exact unsigned distance from each point (N, 3) to the triangles of
    ``mesh`` (BVH query) -> (N,), same units as the inputs."""
    distances, _, _ = pcu.closest_points_on_mesh(
        np.ascontiguousarray(points, dtype=np.float64),
        np.ascontiguousarray(mesh.vertices, dtype=np.float64),
        np.ascontiguousarray(mesh.faces, dtype=np.int64),
    )
    return np.asarray(distances)


def evaluate_meshes(
    pred: trimesh.Trimesh,
    gt: trimesh.Trimesh,
    samples: int = DEFAULT_SAMPLES,
    seed: int = EvaluateConfig.seed,
    threshold_mm: float = DEFAULT_THRESHOLD_MM,
    icp: Literal["reference", "rematch", "none"] = EvaluateConfig.icp,
) -> dict[str, Any]:
    """Compare a reconstruction ``pred`` with the ground truth ``gt`` (both in mm).

    Samples ``samples`` points on each mesh (independent draws from one
    generator seeded with ``seed``, so equal inputs give equal numbers), aligns
    the pred samples to the gt samples by rigid ICP on a subsample of
    ``ICP_SUBSAMPLE`` pred points (``icp``: 'reference' for
    :func:`reference_icp`, 'rematch' for :func:`rigid_icp`, 'none' to skip it),
    then measures all samples. Returns a JSON-ready dict:

    * ``chamfer_mm``, ``pred_to_gt_mm``, ``gt_to_pred_mm``, ``precision``,
      ``recall``, ``fscore``: protocol numbers (see :func:`chamfer_fscore`;
      precision, recall and F-score are percentages);
    * ``chamfer_p2s_mm``, ``pred_to_gt_p2s_mm``, ``gt_to_pred_p2s_mm``: the same
      Chamfer with exact point-to-surface distances, free of the sampling floor;
    * ``icp_transform``: the (4, 4) transform applied to pred, row-major nested
      lists; ``icp_iterations``: iterations run (0 without ICP);
    * ``n_samples``, ``seed``, ``threshold_mm``: the settings used.

    ``pred`` and ``gt`` should cover the same region of the face: plain ICP
    pulls a pred that extends beyond the gt (a full head against a face scan)
    towards the gt, which misaligns it.

    Raises ValueError for ``samples`` < 1, ``threshold_mm`` <= 0, an unknown
    ``icp`` or a mesh without area.
    """
    if samples < 1 or not threshold_mm > 0:
        raise ValueError(f"need samples >= 1 and threshold_mm > 0, got {samples}, {threshold_mm}")
    if icp != "none" and icp not in ICP_METHODS:
        raise ValueError(f"icp must be one of {[*ICP_METHODS, 'none']}, got {icp!r}")
    rng = np.random.default_rng(seed)
    pred_points = sample_surface(pred.vertices, pred.faces, samples, rng)[0]
    gt_points = sample_surface(gt.vertices, gt.faces, samples, rng)[0]
    transform, iterations = np.eye(4), 0
    if icp != "none":
        subset = rng.choice(samples, size=min(samples, ICP_SUBSAMPLE), replace=False)
        transform, iterations = ICP_METHODS[icp](pred_points[subset], gt_points)
        pred_points = apply_transform(transform, pred_points)
    # gt samples are moved into the original pred frame instead of moving the
    # pred mesh: the transform is rigid, so distances are the same.
    pred_to_gt_p2s = float(point_to_surface_distances(pred_points, gt).mean())
    gt_in_pred_frame = apply_transform(np.linalg.inv(transform), gt_points)
    gt_to_pred_p2s = float(point_to_surface_distances(gt_in_pred_frame, pred).mean())
    return {
        **chamfer_fscore(pred_points, gt_points, threshold_mm),
        "chamfer_p2s_mm": (pred_to_gt_p2s + gt_to_pred_p2s) / 2.0,
        "pred_to_gt_p2s_mm": pred_to_gt_p2s,
        "gt_to_pred_p2s_mm": gt_to_pred_p2s,
        "icp_transform": transform.tolist(),
        "icp_iterations": iterations,
        "n_samples": int(samples),
        "seed": int(seed),
        "threshold_mm": float(threshold_mm),
    }


def load_mesh_with_area(path: str | Path) -> trimesh.Trimesh:
    """:func:`load_mesh`, also rejecting meshes whose triangles have no area."""
    mesh = load_mesh(path)
    if not mesh.area > 0:
        raise InputError(f"{path}: mesh has zero surface area (all triangles degenerate)")
    return mesh


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m facerecon.evaluate",
        description="Chamfer distance and F-score between a reconstruction and its ground "
        "truth (meshes in mm), as in PROTOCOL.md; prints one JSON object.",
    )
    add_config_arguments(parser, EVALUATE_STAGE, flags=EVALUATE_STAGE)
    parser.add_argument("--pred", required=True, type=Path, help="reconstructed mesh (mm)")
    parser.add_argument("--gt", required=True, type=Path, help="ground-truth mesh (mm)")
    parser.add_argument("--out", type=Path, help="also write the JSON object to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Evaluate one pred/gt pair and print the metrics as JSON."""
    args = parse_args(argv)
    e: EvaluateConfig = parse_config_arguments(args, EVALUATE_STAGE)["evaluate"]
    result = evaluate_meshes(
        load_mesh_with_area(args.pred),
        load_mesh_with_area(args.gt),
        samples=e.samples,
        seed=e.seed,
        threshold_mm=e.threshold_mm,
        icp=e.icp,
    )
    print(json.dumps(result, indent=2, sort_keys=True))
    if args.out is not None:
        write_json(args.out, result)


if __name__ == "__main__":
    run_cli(main)
