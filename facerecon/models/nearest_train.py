"""Nearest training scan: the memorisation floor every learned model must beat.

For a test scan it answers with one of the training scans' pseudo-watertight
sheets, unchanged: the training sheet closest to the test sheet. It can only
return a face it has seen, so a learned model that does not beat it has learnt
no more than a lookup table of its training set.

Closeness is the protocol Chamfer of :mod:`facerecon.evaluate`: target and
candidate are sampled area-uniformly (``samples`` points each, one seeded
generator), the candidate samples are rigidly aligned onto the target samples
by :func:`~facerecon.geometry.distance.rigid_icp`, and
:func:`~facerecon.geometry.distance.chamfer_fscore`
gives ``chamfer_mm``. All meshes are in millimetres in the crop frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import trimesh

from facerecon.config import NearestTrainConfig
from facerecon.geometry.align import apply_transform
from facerecon.geometry.distance import DEFAULT_THRESHOLD_MM, chamfer_fscore, rigid_icp
from facerecon.geometry.surface import sample_surface
from facerecon.io import InputError
from facerecon.models.mesh_inputs import MeshFitInputs


@dataclass(frozen=True)
class Candidate:
    """One training sheet scored against the target."""

    name: str  #: e.g. "3/1_neutral"
    chamfer_mm: float  #: protocol Chamfer after rigid ICP of the candidate onto the target, mm


def rank_candidates(target: trimesh.Trimesh, candidates: Sequence[tuple[str, trimesh.Trimesh]],
                    samples: int, seed: int) -> list[Candidate]:
    """All ``(name, sheet)`` candidates scored against ``target``, best (lowest Chamfer)
    first, ties broken by name. ``samples`` points per mesh; one generator seeded with
    ``seed`` samples the target, then each candidate in order, so the result is deterministic
    for a seed and a candidate order.

    Raises :class:`facerecon.io.InputError` when ``candidates`` is empty or names repeat.
    """
    if len(candidates) == 0:
        raise InputError("nearest_train: no training sheets to choose from (empty candidates)")
    names = [name for name, _ in candidates]
    if len(set(names)) != len(names):
        raise InputError(f"nearest_train: candidate names must be unique, got {sorted(names)}")
    rng = np.random.default_rng(seed)
    target_points, _ = sample_surface(target.vertices, target.faces, samples, rng)  # (samples, 3)
    scored = []
    for name, mesh in candidates:
        points, _ = sample_surface(mesh.vertices, mesh.faces, samples, rng)  # (samples, 3) mm
        transform, _ = rigid_icp(points, target_points)
        metrics = chamfer_fscore(apply_transform(transform, points), target_points,
                                 DEFAULT_THRESHOLD_MM)
        scored.append(Candidate(name, metrics["chamfer_mm"]))
    return sorted(scored, key=lambda c: (c.chamfer_mm, c.name))


def nearest_train_mesh(inputs: MeshFitInputs, cfg: NearestTrainConfig
                       ) -> tuple[trimesh.Trimesh, list[Candidate]]:
    """The nearest training sheet, unchanged (vertices exactly as given, in the
    candidate's own frame: the evaluation does its own ICP), and the full ranking. It
    reads the sheets only, no landmarks."""
    candidates = [(scan.name, scan.sheet) for scan in inputs.train]
    ranking = rank_candidates(inputs.target.sheet, candidates, cfg.samples, cfg.seed)
    return dict(candidates)[ranking[0].name], ranking
