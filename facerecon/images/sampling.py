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
- Borders: clamped. A tap outside the map reads the nearest border pixel, so
  a constant map gives that constant everywhere, the weights need no
  renormalisation (``Z`` is the sum of the nine weights) and the feature
  stays continuous as a point crosses the border.
- Computation: bilinear taps make eq. 1 one bilinear read of the map
  correlated with the normalised 3x3 Gaussian (replicate padding): the same
  value for every point inside the map, and 9x less memory than nine reads
  (72 scans x 16,384 points x 256 channels x 9 taps would be 11 GB). A point
  outside the map reads the blurred map's nearest border value.

Coordinates are pixels of the map being sampled, centres at integers
(``(0, 0)`` is the centre of the top-left pixel); :func:`rescale_pixels`
converts crop pixels to the pixels of a smaller feature map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """(3, 3) float64 weights ``exp(-(du^2 + dv^2) / (2 sigma^2)) / Z``, rows dv, columns du."""
    if sigma <= 0:
        raise ValueError("sigma must be positive")
    offsets = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    weights = torch.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma**2))
    return weights / weights.sum()


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
    channels, height, width = feature_map.shape[1:]
    if height < 2 or width < 2:
        raise ValueError(f"feature map of {height}x{width} pixels: at least 2x2 needed")
    kernel = gaussian_kernel(sigma).to(feature_map)
    blurred = F.conv2d(F.pad(feature_map, (1, 1, 1, 1), mode="replicate"),
                       kernel.expand(channels, 1, 3, 3), groups=channels)  # (B, C, H, W)
    scale = torch.tensor([2.0 / (width - 1), 2.0 / (height - 1)], dtype=uv.dtype,
                         device=uv.device)
    grid = (uv * scale - 1.0).to(feature_map.dtype)[:, :, None, :]  # align_corners: -1, 1 = centres
    values = F.grid_sample(blurred, grid, mode="bilinear", padding_mode="border",
                           align_corners=True)  # (B, C, N, 1)
    return values[..., 0].transpose(1, 2)


def rescale_pixels(uv: torch.Tensor, from_size: tuple[int, int],
                   to_size: tuple[int, int]) -> torch.Tensor:
    """Pixel coordinates (..., 2) of an image of ``from_size`` (H, W) -> one of ``to_size``.

    The images cover the same area, pixel centres at integers:
    ``u' = (u + 0.5) * W' / W - 0.5`` (e.g. 256-px crop -> 32-px feature map).
    """
    ratio = torch.tensor([to_size[1] / from_size[1], to_size[0] / from_size[0]],
                         dtype=uv.dtype, device=uv.device)
    return (uv + 0.5) * ratio - 0.5
