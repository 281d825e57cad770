"""Gaussian-weighted 3x3 neighbourhood sampling of feature maps (eq. 1 of the paper).

``f(u, v) = sum_k w_k M(u + du_k, v + dv_k) / Z`` over the nine offsets
``(du_k, dv_k)`` in {-1, 0, 1}^2, ``w_k = exp(-(du_k^2 + dv_k^2) / (2 sigma^2))``.

Choices:
- Bilinear taps: the 3x3 neighbourhood moves with the projected point (each
  tap is read bilinearly) instead of snapping to the integer pixels around
  ``round(u), round(v)``. Eq. 1's weights depend on the distance between tap
  and point, which is then exactly the offset. Snapping would make the feature,
  hence the SDF, jump whenever ``u`` or ``v`` crosses a half-integer; with
  bilinear taps it is continuous in the query point and differentiable w.r.t.
  ``uv`` almost everywhere (needed by eikonal and normal losses through the
  projection), and w.r.t. the feature map everywhere.
- Borders: clamped. A tap outside the map reads the nearest border pixel
  (``padding_mode="border"``), so a constant map gives that constant
  everywhere, the weights need no renormalisation (``Z`` is the sum of the
  nine weights) and the feature stays continuous as a point crosses the
  border; points far outside read border values.

Coordinates are pixels of the map being sampled, centres at integers
(``(0, 0)`` is the centre of the top-left pixel); :func:`rescale_pixels`
converts crop pixels to the pixels of a smaller feature map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_OFFSETS = torch.tensor([[du, dv] for dv in (-1.0, 0.0, 1.0) for du in (-1.0, 0.0, 1.0)])


def gaussian_sample(feature_map: torch.Tensor, uv: torch.Tensor,
                    sigma: float = 1.0) -> torch.Tensor:
    """Gaussian-weighted 3x3 neighbourhood features at projected points.

    ``feature_map`` (B, C, H, W) with H, W >= 2; ``uv`` (B, N, 2) pixel
    coordinates ``(u, v) = (x, y)`` of that map. Returns (B, N, C), in the
    dtype and device of ``feature_map``.
    """
    if feature_map.ndim != 4 or uv.ndim != 3 or uv.shape[-1] != 2 \
            or uv.shape[0] != feature_map.shape[0]:
        raise ValueError(f"expected feature_map (B, C, H, W) and uv (B, N, 2), got "
                         f"{tuple(feature_map.shape)} and {tuple(uv.shape)}")
    height, width = feature_map.shape[-2:]
    if height < 2 or width < 2:
        raise ValueError(f"feature map of {height}x{width} pixels: at least 2x2 needed")
    if sigma <= 0:
        raise ValueError("sigma must be positive")
    offsets = _OFFSETS.to(device=uv.device, dtype=uv.dtype)
    weights = torch.exp(-(offsets**2).sum(-1) / (2 * sigma**2))
    weights = (weights / weights.sum()).to(feature_map.dtype)  # (9,), divided by Z
    scale = torch.tensor([2.0 / (width - 1), 2.0 / (height - 1)], dtype=uv.dtype,
                         device=uv.device)
    taps = uv[:, :, None, :] + offsets  # (B, N, 9, 2) pixels
    grid = (taps * scale - 1.0).to(feature_map.dtype)  # align_corners=True: -1, 1 = centres
    values = F.grid_sample(feature_map, grid, mode="bilinear", padding_mode="border",
                           align_corners=True)  # (B, C, N, 9)
    return (values @ weights).transpose(1, 2)


def rescale_pixels(uv: torch.Tensor, from_size: tuple[int, int],
                   to_size: tuple[int, int]) -> torch.Tensor:
    """Pixel coordinates (..., 2) of an image of ``from_size`` (H, W) -> one of ``to_size``.

    The images cover the same area, pixel centres at integers:
    ``u' = (u + 0.5) * W' / W - 0.5`` (e.g. 256-px crop -> 32-px feature map).
    """
    ratio = torch.tensor([to_size[1] / from_size[1], to_size[0] / from_size[0]],
                         dtype=uv.dtype, device=uv.device)
    return (uv + 0.5) * ratio - 0.5
