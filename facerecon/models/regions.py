"""The paper's 8 facial regions (sec. 2.2), as labels from the 68 landmarks.

The paper partitions the face "during training using landmark-based guidance"
into eight parts "such as the eyes, mouth, and cheeks"; these labels supervise
the gating network (:func:`facerecon.losses.gate_supervision`). Landmarks are
dlib's 68 in Multi-PIE order; "right" is the subject's right (-x in our frame:
face towards +z, head top +y, 1 unit = 100 mm).

:data:`REGIONS` is the one table. Each region lists its anchors: an anchor is
either one landmark (an int) or the mean of a few landmarks (a tuple, a
"virtual landmark"). dlib has no landmarks on the cheeks or the chin's front,
so those regions get virtual anchors between the jaw line and the nose, mouth
and eyes; without them the cheeks would be won by the nose and mouth. Every
landmark is a plain anchor of exactly one region.

=========== ===== ==============================================================
region      label anchors (landmark indices; (a, b, ...) = mean of those)
=========== ===== ==============================================================
right_eye   0     36-41 (right eye), 17-21 (right brow)
left_eye    1     42-47 (left eye), 22-26 (left brow)
nose        2     27-30 (bridge), 31-35 (base)
mouth       3     48-59 (outer lip), 60-67 (inner lip)
chin        4     6-10 (jaw); (8, 57), (7, 58), (9, 56) (chin front)
right_cheek 5     0-5 (jaw); (2, 41, 31), (3, 31, 48), (4, 48), (1, 36, 41)
left_cheek  6     11-16 (jaw); (14, 46, 35), (13, 35, 54), (12, 54), (15, 45, 46)
forehead    7     none: the rest (see below)
=========== ===== ==============================================================

:func:`region_labels` gives a point the region of its nearest anchor
(Euclidean, in units), except that it is ``forehead`` (the rest: forehead,
scalp, ears, neck, back of the head) when

- its distance to every anchor (the 68 landmarks and the virtual ones) is
  more than ``far`` (0.3 units = 30 mm; measured to the landmarks alone, the
  middle of each cheek would be a hole), or
- it lies above the brow line: ``y > brow_y(x) + brow_margin``, where
  ``brow_y`` interpolates linearly, in x, through the 10 brow landmarks
  17-26 sorted by x, and is constant beyond the outermost ones;
  ``brow_margin`` is 0.01 (1 mm), so the brow landmarks keep their eye region.
"""

from __future__ import annotations

import torch

#: Region name -> anchors; an anchor is a landmark index or a tuple of indices (their mean).
REGIONS: dict[str, tuple[int | tuple[int, ...], ...]] = {
    "right_eye": (*range(36, 42), *range(17, 22)),
    "left_eye": (*range(42, 48), *range(22, 27)),
    "nose": tuple(range(27, 36)),
    "mouth": tuple(range(48, 68)),
    "chin": (*range(6, 11), (8, 57), (7, 58), (9, 56)),
    "right_cheek": (*range(0, 6), (2, 41, 31), (3, 31, 48), (4, 48), (1, 36, 41)),
    "left_cheek": (*range(11, 17), (14, 46, 35), (13, 35, 54), (12, 54), (15, 45, 46)),
    "forehead": (),
}

#: Region names in label order (label i is REGION_NAMES[i]).
REGION_NAMES: tuple[str, ...] = tuple(REGIONS)
#: Label of the rest region (forehead, scalp, far points).
REST = REGION_NAMES.index("forehead")
#: The brow landmarks that define the brow line (right brow 17-21, left brow 22-26).
BROWS = tuple(range(17, 27))
N_LANDMARKS = 68


def anchor_weights() -> tuple[torch.Tensor, torch.Tensor]:
    """The A = 79 anchors of :data:`REGIONS` as (A, 68) averaging weights and (A,) labels."""
    rows, labels = [], []
    for label, anchors in enumerate(REGIONS.values()):
        for anchor in anchors:
            indices = (anchor,) if isinstance(anchor, int) else anchor
            row = torch.zeros(N_LANDMARKS)
            row[list(indices)] = 1.0 / len(indices)
            rows.append(row)
            labels.append(label)
    return torch.stack(rows), torch.tensor(labels, dtype=torch.long)


_ANCHOR_WEIGHTS, _ANCHOR_LABELS = anchor_weights()


def anchors(landmarks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor positions (B, A, 3) for landmarks (B, 68, 3), and their (A,) region labels."""
    weights, labels = _ANCHOR_WEIGHTS, _ANCHOR_LABELS
    weights = weights.to(device=landmarks.device, dtype=landmarks.dtype)
    return torch.einsum("al,bld->bad", weights, landmarks), labels.to(landmarks.device)


def brow_height(x: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    """Height y of the brow line at x (B, N), piecewise linear through landmarks 17-26
    sorted by x, constant beyond them; landmarks (B, 68, 3). Units in, units out."""
    brows = landmarks[:, list(BROWS)]
    bx, order = brows[..., 0].sort(dim=-1)
    by = brows[..., 1].gather(-1, order)
    hi = torch.searchsorted(bx.contiguous(), x.contiguous()).clamp(1, len(BROWS) - 1)
    x0, x1 = bx.gather(-1, hi - 1), bx.gather(-1, hi)
    y0, y1 = by.gather(-1, hi - 1), by.gather(-1, hi)
    t = ((x - x0) / (x1 - x0).clamp_min(1e-9)).clamp(0.0, 1.0)
    return y0 + t * (y1 - y0)


@torch.no_grad()
def region_labels(points: torch.Tensor, landmarks: torch.Tensor, far: float = 0.3,
                  brow_margin: float = 0.01) -> torch.Tensor:
    """Region label (B, N) long, in :data:`REGION_NAMES` order, of points (B, N, 3) given
    their scans' landmarks (B, 68, 3), both in units: the nearest anchor's region, or
    :data:`REST` beyond ``far`` units of every anchor or above the brow line (+ brow_margin).

    Memory is O(B N A) with A = 79 anchors.
    """
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be (B, N, 3), got {tuple(points.shape)}")
    if landmarks.shape[1:] != (N_LANDMARKS, 3) or landmarks.shape[0] != points.shape[0]:
        raise ValueError(f"landmarks must be (B={points.shape[0]}, {N_LANDMARKS}, 3), "
                         f"got {tuple(landmarks.shape)}")
    landmarks = landmarks.to(points.dtype)
    centres, anchor_labels = anchors(landmarks)
    distance = torch.cdist(points, centres, compute_mode="donot_use_mm_for_euclid_dist")
    nearest_distance, nearest = distance.min(dim=-1)
    labels = anchor_labels[nearest]
    above = points[..., 1] > brow_height(points[..., 0], landmarks) + brow_margin
    return labels.masked_fill((nearest_distance > far) | above, REST)
