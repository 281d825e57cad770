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


def landmark_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Euclidean distance between predicted and target landmarks (ImFace's landmark
    terms). pred, target: (B, 68, 3) in units."""
    return (pred - target).norm(dim=-1).mean()


def gate_supervision(alpha: torch.Tensor, labels: torch.Tensor, eps: float = 1e-8
                     ) -> torch.Tensor:
    """Cross-entropy of the gate's soft assignment against landmark-based region labels
    (sec. 2.2): mean of -log alpha[label], alpha clamped to >= eps. alpha: (B, N, K)
    summing to 1; labels: (B, N) long in [0, K). log(K) for uniform alpha."""
    picked = alpha.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)
    return -picked.clamp_min(eps).log().mean()


def sdf_correction(delta: torch.Tensor) -> torch.Tensor:
    """Mean |delta| (ImFace's SDF-correction penalty): keeps the residual SDF term small.
    delta: (B, N) in units."""
    return delta.abs().mean()


def neutral_deformation(displacement: torch.Tensor, is_neutral: torch.Tensor) -> torch.Tensor:
    """Mean norm of the expression field's displacement over neutral scans only (ImFace's
    disentangling term: a neutral face needs no expression deformation); 0 if the batch
    has none. displacement: (B, N, 3) in units; is_neutral: (B,) bool."""
    if not bool(is_neutral.any()):
        return displacement.new_zeros(())
    return displacement[is_neutral.bool()].norm(dim=-1).mean()
