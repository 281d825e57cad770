"""Image features at query points: projection, eq. 1's sampling, and the gated fusion of h(p).

The paper fuses the sampled image feature with the encoded position "through positional
encoding and gated fusion" (abstract, section 2.1) without giving the gate's form; ours:
``fused = sigmoid(W_g [gamma(p), f_img] + b_g) * (W_f f_img + b_f)``: the position decides,
channel by channel, how much of the image feature enters h(p).
"""

from __future__ import annotations

import torch
from torch import nn

from facerecon.images.sampling import gaussian_sample, rescale_pixels


def image_features_at(points: torch.Tensor, camera: torch.Tensor, feature_map: torch.Tensor,
                      image_size: int, sigma: float) -> torch.Tensor:
    """f_img(p) of eq. 1. points (B, N, 3) in units, camera (B, 2, 4) unit-sphere points to
    pixels of the (image_size)^2 crop, feature_map (B, C, R, R) -> (B, N, C)."""
    uv = points @ camera[:, :, :3].transpose(1, 2) + camera[:, None, :, 3]  # (B, N, 2)
    resolution = feature_map.shape[-1]
    uv = rescale_pixels(uv, (image_size, image_size), (resolution, resolution))
    return gaussian_sample(feature_map, uv, sigma)


class GatedFusion(nn.Module):
    """(B, N, P) point features and (B, N, C) image features -> (B, N, out_dim)."""

    def __init__(self, point_dim: int, image_dim: int, out_dim: int) -> None:
        super().__init__()
        self.gate = nn.Linear(point_dim + image_dim, out_dim)
        self.value = nn.Linear(image_dim, out_dim)

    def forward(self, point_features: torch.Tensor, image_features: torch.Tensor
                ) -> torch.Tensor:
        """sigmoid(W_g [p, f] + b_g) * (W_f f + b_f)."""
        gate = torch.sigmoid(self.gate(torch.cat([point_features, image_features], dim=-1)))
        return gate * self.value(image_features)
