"""Two-layer gating network: soft assignment of each point to K experts (paper eq. 6)."""

from __future__ import annotations

import torch
from torch import nn


class Gate(nn.Module):
    """alpha(h) = softmax(W2 relu(W1 h + b1) + b2), h = [point features, per-scan codes].

    The first layer is split into a per-point and a per-scan part, so the codes'
    share is computed once per scan.
    """

    def __init__(self, point_dim: int, code_dim: int, hidden_dim: int, experts: int) -> None:
        super().__init__()
        self.point = nn.Linear(point_dim, hidden_dim)
        self.code = nn.Linear(code_dim, hidden_dim, bias=False)
        self.out = nn.Linear(hidden_dim, experts)

    def forward(self, point_features: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """point_features (B, N, P), codes (B, C) -> weights (B, N, K), summing to 1."""
        hidden = self.point(point_features) + self.code(codes)[:, None]
        return torch.softmax(self.out(torch.relu(hidden)), dim=-1)
