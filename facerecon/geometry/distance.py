"""Point-set distances and rigid ICP (ImFace's reference procedure and a re-matching one):
the protocol metrics' core (PROTOCOL.md), shared by the evaluator (facerecon.evaluate) and
by methods that compare shapes (nearest_train).

Points in millimetres; numpy and scipy only.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from facerecon.config import EvaluateConfig
from facerecon.geometry.align import apply_transform, rigid_fit

DEFAULT_THRESHOLD_MM = EvaluateConfig.threshold_mm
ICP_MAX_ITERATIONS = 20
ICP_TOLERANCE_MM = 1e-4  # rematch: stop once an ICP step moves every point by less than this
REFERENCE_TOLERANCE_MM = 0.1  # reference: stop once the mean error changes by less than this


def nearest_distances(query: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Unsquared Euclidean distance from each of ``query`` (N, 3) to its nearest
    neighbour among ``points`` (M, 3) -> (N,), same units as the inputs."""
    distances, _ = cKDTree(points).query(query, workers=-1)
    return distances


def rigid_icp(
    source: np.ndarray,
    target: np.ndarray,
    max_iterations: int = ICP_MAX_ITERATIONS,
    tolerance_mm: float = ICP_TOLERANCE_MM,
) -> tuple[np.ndarray, int]:
    """Align ``source`` (N, 3) to ``target`` (M, 3) by point-to-point rigid ICP.

    Each iteration pairs every source point with its nearest target point and
    applies the Kabsch step (:func:`rigid_fit`) for those pairs; it stops after ``max_iterations``
    or once a step moves every source point by less than ``tolerance_mm``.
    Returns the accumulated (4, 4) transform (source frame -> target frame,
    millimetres) and the number of iterations run.
    """
    tree = cKDTree(target)
    transform = np.eye(4)
    current = source
    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        _, nearest = tree.query(current, workers=-1)
        step = rigid_fit(current, target[nearest])
        moved = apply_transform(step, current)
        transform = step @ transform
        largest_move_mm = np.linalg.norm(moved - current, axis=1).max()
        current = moved
        if largest_move_mm < tolerance_mm:
            break
    return transform, iterations


def reference_icp(
    source: np.ndarray,
    target: np.ndarray,
    max_iterations: int = ICP_MAX_ITERATIONS,
    tolerance_mm: float = REFERENCE_TOLERANCE_MM,
) -> tuple[np.ndarray, int]:
    """Align ``source`` (N, 3) to ``target`` (M, 3) as ImFace's evaluation does (mm).

    Each source point is matched once to its nearest target point; ICP then runs
    against that matched subset only (its distinct points: repeats would give the same
    nearest distances and pairs, and slow the KD-tree down): each iteration
    pairs every source point with its nearest subset point, takes the mean of
    those distances as the error and applies the Kabsch step (:func:`rigid_fit`).
    It stops after ``max_iterations`` or once the error differs from the previous
    iteration's (0 before the first) by less than ``tolerance_mm``; the stopping
    iteration's step is kept. Returns the accumulated (4, 4) transform (source
    frame -> target frame, millimetres) and the number of iterations run.
    """
    _, nearest = cKDTree(target).query(source, workers=-1)
    matched = target[np.unique(nearest)]
    tree = cKDTree(matched)
    transform = np.eye(4)
    current = source
    previous_error_mm = 0.0
    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        distances, nearest = tree.query(current, workers=-1)
        step = rigid_fit(current, matched[nearest])
        current = apply_transform(step, current)
        transform = step @ transform
        error_mm = float(distances.mean())
        if abs(previous_error_mm - error_mm) < tolerance_mm:
            break
        previous_error_mm = error_mm
    return transform, iterations


def chamfer_fscore(
    pred_points: np.ndarray, gt_points: np.ndarray, threshold_mm: float = DEFAULT_THRESHOLD_MM
) -> dict[str, float]:
    """Protocol metrics between pred samples (N, 3) and gt samples (M, 3), in mm.

    Returns ``chamfer_mm`` = (mean(gt -> pred) + mean(pred -> gt)) / 2 with
    unsquared nearest-neighbour distances, the two directed means
    ``pred_to_gt_mm`` and ``gt_to_pred_mm``, and ``precision`` (share of pred
    points within ``threshold_mm`` of gt), ``recall`` (share of gt points
    within ``threshold_mm`` of pred) and ``fscore`` = 2PR / (P + R), all three
    as percentages (0-100); ``fscore`` is 0 when P + R = 0.
    """
    pred_to_gt = nearest_distances(pred_points, gt_points)
    gt_to_pred = nearest_distances(gt_points, pred_points)
    precision = 100.0 * float(np.mean(pred_to_gt <= threshold_mm))
    recall = 100.0 * float(np.mean(gt_to_pred <= threshold_mm))
    total = precision + recall
    return {
        "chamfer_mm": float(pred_to_gt.mean() + gt_to_pred.mean()) / 2.0,
        "pred_to_gt_mm": float(pred_to_gt.mean()),
        "gt_to_pred_mm": float(gt_to_pred.mean()),
        "precision": precision,
        "recall": recall,
        "fscore": 2.0 * precision * recall / total if total > 0 else 0.0,
    }
