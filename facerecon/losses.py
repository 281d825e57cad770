"""Loss terms as pure functions of tensors (paper eq. 7-10, ImFace's eikonal term).

Each returns a scalar tensor, unweighted; the model multiplies by the
configured weights in its loss dict.
"""

from __future__ import annotations

import torch


def sdf_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean |f(p) - s| (eq. 7, first term). pred, target: (...,) in units."""
    return (pred - target).abs().mean()


def normal_alignment(grad: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """Mean 1 - cos(grad f, n) on surface points (eq. 7, second term). grad, normals: (..., 3)."""
    return (1.0 - torch.nn.functional.cosine_similarity(grad, normals, dim=-1)).mean()


def eikonal(grad: torch.Tensor) -> torch.Tensor:
    """Mean | ||grad f|| - 1 |: an SDF has unit gradient. grad: (..., 3)."""
    return (grad.norm(dim=-1) - 1.0).abs().mean()


def embedding_prior(*codes: torch.Tensor) -> torch.Tensor:
    """Gaussian prior on latent codes (eq. 8): sum over codes of mean(z^2). codes: (B, D)."""
    return sum(c.pow(2).mean() for c in codes)


def gate_smoothness(alpha: torch.Tensor, alpha_neighbour: torch.Tensor) -> torch.Tensor:
    """E ||alpha(p_i) - alpha(p_j)||^2 over neighbouring pairs (eq. 9). alpha*: (..., K)."""
    return (alpha - alpha_neighbour).pow(2).sum(dim=-1).mean()


def gate_entropy(alpha: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """E[-sum_k alpha_k log alpha_k] (eq. 10): low when points pick few experts. alpha: (..., K)."""
    return -(alpha * (alpha + eps).log()).sum(dim=-1).mean()
