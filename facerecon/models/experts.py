"""K expert MLPs evaluated in one batched pass (paper eq. 6's y_k; K = 1 is a plain MLP)."""

from __future__ import annotations

import math

import torch
from torch import nn

#: Radius (units) of the sphere every expert represents at initialisation.
INIT_SPHERE_RADIUS = 0.35
#: Softplus sharpness: close to ReLU but with a smooth gradient (IGR, SAL).
SOFTPLUS_BETA = 100.0


class ExpertMLPs(nn.Module):
    """K independent MLPs evaluated in one batched pass (K = 1 is a plain MLP).

    The input is split into per-point features and per-scan codes: the codes'
    share of the first layer is computed once per scan, not once per point.
    Geometric initialisation (Atzmon & Lipman, SAL): every expert starts as the
    SDF of a sphere of radius INIT_SPHERE_RADIUS in the first 3 point features
    (xyz); weights on all other inputs start at zero, so the codes and the
    encoding only add detail.
    """

    def __init__(self, experts: int, point_dim: int, code_dim: int, hidden_dim: int,
                 hidden_layers: int) -> None:
        super().__init__()
        self.point_dim = point_dim
        dims = [point_dim + code_dim] + [hidden_dim] * hidden_layers + [1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            w = torch.empty(experts, d_in, d_out)
            b = torch.zeros(experts, 1, d_out)
            if i == len(dims) - 2:
                nn.init.normal_(w, mean=math.sqrt(math.pi) / math.sqrt(d_in), std=1e-5)
                b.fill_(-INIT_SPHERE_RADIUS)
            else:
                nn.init.normal_(w, 0.0, math.sqrt(2.0) / math.sqrt(d_out))
                if i == 0:
                    w[:, 3:, :] = 0.0
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))
        self.activation = nn.Softplus(beta=SOFTPLUS_BETA)

    def forward(self, point_features: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """point_features (B, N, P), codes (B, C) -> (B, N, K) one SDF value per expert."""
        b, n, p = point_features.shape
        w0 = self.weights[0]
        per_point = torch.matmul(point_features.reshape(1, b * n, p), w0[:, :p])  # (K, BN, H)
        per_scan = torch.matmul(codes[None], w0[:, p:]) + self.biases[0]  # (K, B, H)
        x = (per_point.view(-1, b, n, per_point.shape[-1]) + per_scan[:, :, None])
        x = x.view(-1, b * n, x.shape[-1])
        for w, bias in zip(self.weights[1:], self.biases[1:], strict=True):
            x = torch.baddbmm(bias, self.activation(x), w)
        return x[..., 0].view(-1, b, n).permute(1, 2, 0)
