"""What a mesh-kind method (``facerecon.models.MESH_METHODS``) is given for one test scan.

Every entry of the registry is a function ``(MeshFitInputs, model config) -> (mesh,
details)``: the mesh in millimetres in the crop frame, ``details`` a list whose first
items are logged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import trimesh


@dataclass(frozen=True)
class MeshScan:
    """One preprocessed scan: its sheet and, when given, its landmarks."""

    name: str  #: "<subject>/<expression>"
    sheet: trimesh.Trimesh  #: pseudo-watertight sheet, mm, crop frame
    landmarks_mm: np.ndarray | None  #: (68, 3) crop frame; None when not given


@dataclass(frozen=True)
class MeshFitInputs:
    """The test scan, the training scans a method may draw on, and the crop sphere."""

    target: MeshScan
    train: list[MeshScan]
    radius_mm: float  #: radius of the crop sphere (centred at the crop frame's origin)


MeshMethod = Callable[[MeshFitInputs, Any], tuple[trimesh.Trimesh, list]]
