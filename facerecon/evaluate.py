"""Reconstruction metrics shared by every method (PROTOCOL.md, "Mesh extraction and metrics").

Both meshes are in millimetres. The ground truth is the visible face: the
preprocessed sheet without the skirt that joins it to the crop sphere (as in
ImFace); given that whole sheet too (``--sheet``), the reconstruction is scored
on the face alone (its samples nearer the skirt are left out). Each mesh is
sampled area-uniformly (150,000 points by default, seeded), the reconstruction
(``pred``) is rigidly aligned to the
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

    python -m facerecon.evaluate --pred PRED --gt FACE [--sheet SHEET] [--samples N] [--seed S]
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
ICP_SUBSAMPLE = 20_000  # pred samples used by the 'rematch' ICP; the metrics use all of them
def closest_triangles(points: np.ndarray, mesh: trimesh.Trimesh
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Exact unsigned distance from each point (N, 3) to the triangles of ``mesh`` (BVH
    query), same units as the inputs, and the index of the nearest triangle: (N,), (N,)."""
    distances, triangles, _ = pcu.closest_points_on_mesh(
        np.ascontiguousarray(points, dtype=np.float64),
        np.ascontiguousarray(mesh.vertices, dtype=np.float64),
        np.ascontiguousarray(mesh.faces, dtype=np.int64),
    )
    return np.asarray(distances), np.asarray(triangles)


def point_to_surface_distances(points: np.ndarray, mesh: trimesh.Trimesh) -> np.ndarray:
    """(N,) exact distance from each point (N, 3) to ``mesh`` (:func:`closest_triangles`)."""
    return closest_triangles(points, mesh)[0]


def cut_from(face: trimesh.Trimesh, sheet: trimesh.Trimesh) -> bool:
    """Whether ``face`` is the first ``len(face.faces)`` triangles of ``sheet``, as the
    preprocess stage writes them (the sheet, its skirt's triangles last)."""
    n = len(face.faces)
    return len(sheet.faces) >= n and np.array_equal(
        np.asarray(sheet.vertices)[np.asarray(sheet.faces)[:n]],
        np.asarray(face.vertices)[np.asarray(face.faces)])


def on_face(points: np.ndarray, face: trimesh.Trimesh, sheet: trimesh.Trimesh) -> np.ndarray:
    """(N,) bool: which points (N, 3) are nearest to the ``face`` part of the ``sheet`` it
    was cut from (:func:`cut_from`), not to the rest (the skirt). A reconstruction learns
    the sheet, skirt included; its samples that stand for the skirt are left out of the
    scores, the others (the face, right or wrong) all count. One closest-triangle query."""
    if not cut_from(face, sheet):
        raise ValueError("the sheet does not begin with the face's triangles: the face was "
                         "not cut from it")
    return closest_triangles(points, sheet)[1] < len(face.faces)


def evaluate_meshes(
    pred: trimesh.Trimesh,
    gt: trimesh.Trimesh,
    samples: int = DEFAULT_SAMPLES,
    seed: int = EvaluateConfig.seed,
    threshold_mm: float = DEFAULT_THRESHOLD_MM,
    icp: Literal["reference", "rematch", "none"] = EvaluateConfig.icp,
    sheet: trimesh.Trimesh | None = None,
) -> dict[str, Any]:
    """Compare a reconstruction ``pred`` with the ground truth ``gt`` (both in mm).

    Samples ``samples`` points on each mesh (independent draws from one
    generator seeded with ``seed``, so equal inputs give equal numbers). With
    ``sheet`` (the whole pseudo-watertight sheet ``gt`` was cut from, skirt
    included), the pred samples nearer the skirt than the face are left out
    (:func:`on_face`): the reconstruction is scored on the face, like the ground
    truth. The pred samples are then rigidly aligned to the gt samples by ICP
    (``icp``: 'reference' for :func:`reference_icp` on every pred sample, as
    ImFace; 'rematch' for :func:`rigid_icp` on ``ICP_SUBSAMPLE`` of them; 'none'
    to skip it) and measured. Returns a JSON-ready dict:

    * ``chamfer_mm``, ``pred_to_gt_mm``, ``gt_to_pred_mm``, ``precision``,
      ``recall``, ``fscore``: protocol numbers (see :func:`chamfer_fscore`;
      precision, recall and F-score are percentages);
    * ``chamfer_p2s_mm``, ``pred_to_gt_p2s_mm``, ``gt_to_pred_p2s_mm``: the same
      Chamfer with exact point-to-surface distances, free of the sampling floor;
    * ``icp_transform``: the (4, 4) transform applied to pred, row-major nested
      lists; ``icp_iterations``: iterations run (0 without ICP);
    * ``n_samples``, ``seed``, ``threshold_mm``: the settings used;
      ``pred_samples_scored``: the pred samples left after the skirt's.

    ``gt`` is the visible face only (the preprocessed sheet without the skirt that
    joins it to the crop sphere, as in ImFace). ``pred`` and ``gt`` should cover
    the same region of the face: plain ICP
    pulls a pred that extends beyond the gt (a full head against a face scan)
    towards the gt, which misaligns it.

    Raises ValueError for ``samples`` < 1, ``threshold_mm`` <= 0, an unknown
    ``icp`` or a mesh without area.
    """
    if samples < 1 or not threshold_mm > 0:
        raise ValueError(f"need samples >= 1 and threshold_mm > 0, got {samples}, {threshold_mm}")
    if icp not in ("reference", "rematch", "none"):
        raise ValueError(f"icp must be 'reference', 'rematch' or 'none', got {icp!r}")
    rng = np.random.default_rng(seed)
    pred_points = sample_surface(pred.vertices, pred.faces, samples, rng)[0]
    gt_points = sample_surface(gt.vertices, gt.faces, samples, rng)[0]
    if sheet is not None:
        pred_points = pred_points[on_face(pred_points, gt, sheet)]
        if len(pred_points) == 0:
            raise ValueError("no reconstruction sample lies nearer the face than the skirt")
    transform, iterations = np.eye(4), 0
    if icp == "rematch":
        subset = rng.choice(len(pred_points), size=min(len(pred_points), ICP_SUBSAMPLE),
                            replace=False)
        transform, iterations = rigid_icp(pred_points[subset], gt_points)
    elif icp == "reference":  # as ImFace: every reconstruction sample
        transform, iterations = reference_icp(pred_points, gt_points)
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
        "pred_samples_scored": len(pred_points),
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
    parser.add_argument("--gt", required=True, type=Path,
                        help="ground-truth mesh (mm): the preprocessed sheet without its skirt "
                        "(preprocess --out-face-mesh, <expression>.face.ply)")
    parser.add_argument("--sheet", type=Path,
                        help="the whole pseudo-watertight sheet, skirt included: reconstruction "
                        "samples nearer its skirt than the face are not scored")
    parser.add_argument("--out", type=Path, help="also write the JSON object to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Evaluate one pred/gt pair and print the metrics as JSON."""
    args = parse_args(argv)
    e: EvaluateConfig = parse_config_arguments(args, EVALUATE_STAGE)["evaluate"]
    gt = load_mesh_with_area(args.gt)
    sheet = None if args.sheet is None else load_mesh_with_area(args.sheet)
    if sheet is not None and not cut_from(gt, sheet):
        raise InputError(f"{args.sheet}: does not begin with the triangles of {args.gt}; give "
                         "the sheet that ground truth was cut from (preprocess writes both)")
    result = evaluate_meshes(
        load_mesh_with_area(args.pred),
        gt,
        samples=e.samples,
        seed=e.seed,
        threshold_mm=e.threshold_mm,
        icp=e.icp,
        sheet=sheet,
    )
    print(json.dumps(result, indent=2, sort_keys=True))
    if args.out is not None:
        write_json(args.out, result)


if __name__ == "__main__":
    run_cli(main)
