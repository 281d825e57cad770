"""Fourier positional encoding of points (paper eq. 4)."""

from __future__ import annotations

import math

import torch


def fourier_encoding(points: torch.Tensor, frequencies: int) -> torch.Tensor:
    """gamma(p) = [sin(2^k pi p), cos(2^k pi p)]_{k<L} per coordinate (eq. 4).

    points: (..., 3) -> (..., 6 L), laid out as all sines then all cosines, each
    frequency-major: out[3k + c] = sin(2^k pi p_c), out[3L + 3k + c] = cos(2^k pi p_c).
    L = 0 gives an empty last axis.
    """
    if frequencies == 0:
        return points.new_zeros(*points.shape[:-1], 0)
    scales = math.pi * 2.0 ** torch.arange(frequencies, device=points.device, dtype=points.dtype)
    angles = (points[..., None, :] * scales[:, None]).flatten(-2)  # (..., L*3)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def encoded_dim(frequencies: int) -> int:
    """Width of [p, gamma(p)] for 3D points."""
    return 3 + 6 * frequencies
