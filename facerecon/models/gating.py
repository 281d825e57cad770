"""Two-layer gating network: soft assignment of each point to K experts (paper eq. 6)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from facerecon import losses
from facerecon.config import LossConfig


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


def gate_loss_terms(alpha: torch.Tensor, neighbour_gates: Callable[[torch.Tensor], torch.Tensor],
                    points: torch.Tensor, weights: LossConfig) -> dict[str, torch.Tensor]:
    """Weighted gate regularisers of eq. 9 and 10, those whose weight is above zero.

    alpha (B, N, K) at ``points`` (B, N, 3); ``neighbour_gates(points')`` gives the gates
    at other points. Smoothness pairs each point with one Gaussian neighbour
    (std ``weights.smooth_sigma`` units, drawn from torch's global RNG).
    """
    terms = {}
    if weights.smooth > 0:
        offset = torch.randn_like(points) * weights.smooth_sigma
        neighbour = neighbour_gates(points + offset)
        terms["smooth"] = weights.smooth * losses.gate_smoothness(alpha, neighbour)
    if weights.entropy > 0:
        terms["entropy"] = weights.entropy * losses.gate_entropy(alpha)
    return terms
