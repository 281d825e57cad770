"""Conditional implicit face: f(p, z_id, z_exp) -> signed distance (paper eq. 2, 4-6).

The query feature is h(p) = [gamma(p), z_id, z_exp] (eq. 5 without the image
term, which needs the image stage). It is decoded either by one MLP or by K
local expert MLPs whose outputs are blended by a two-layer gating network
(eq. 6). ``experts = 1`` is the DeepSDF-style single decoder; all other
settings share the same code.

Space is the unit sphere of the preprocessed scans (1 unit = radius_mm).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from facerecon import losses
from facerecon.config import LossConfig, ModelConfig

#: Radius (units) of the sphere the decoder represents at initialisation.
INIT_SPHERE_RADIUS = 0.35
#: Softplus sharpness: close to ReLU but with a smooth gradient (IGR, SAL).
SOFTPLUS_BETA = 100.0


def fourier_encoding(points: torch.Tensor, frequencies: int) -> torch.Tensor:
    """gamma(p) = [sin(2^k pi p), cos(2^k pi p)]_{k<L} per coordinate (eq. 4).

    points: (..., 3) -> (..., 6 L).
    """
    if frequencies == 0:
        return points.new_zeros(*points.shape[:-1], 0)
    scales = math.pi * 2.0 ** torch.arange(frequencies, device=points.device, dtype=points.dtype)
    angles = (points[..., None, :] * scales[:, None]).flatten(-2)  # (..., L*3)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class ExpertMLPs(nn.Module):
    """K independent MLPs evaluated in one batched pass (K = 1 is a plain MLP).

    Geometric initialisation (Atzmon & Lipman, SAL): every expert starts as the
    SDF of a sphere of radius INIT_SPHERE_RADIUS in the first 3 inputs (xyz);
    weights on the other inputs start at zero so the codes and the encoding
    only add detail.
    """

    def __init__(self, experts: int, in_dim: int, hidden_dim: int, hidden_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * hidden_layers + [1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            w = torch.empty(experts, d_in, d_out)
            b = torch.zeros(experts, d_out)
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

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h: (B, N, in_dim) -> (B, N, K) one SDF value per expert."""
        x = torch.einsum("bni,kio->bnko", h, self.weights[0]) + self.biases[0]
        for w, b in zip(self.weights[1:], self.biases[1:], strict=True):
            x = torch.einsum("bnki,kio->bnko", self.activation(x), w) + b
        return x[..., 0]


class ImplicitFace(nn.Module):
    """Decoder f(p, z_id, z_exp) with optional local experts; returns its own loss dict."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        in_dim = 3 + 6 * cfg.pe_frequencies + cfg.id_dim + cfg.exp_dim
        self.experts = ExpertMLPs(cfg.experts, in_dim, cfg.hidden_dim, cfg.hidden_layers)
        self.gate = (
            nn.Sequential(
                nn.Linear(in_dim, cfg.gate_hidden_dim),
                nn.ReLU(),
                nn.Linear(cfg.gate_hidden_dim, cfg.experts),
            )
            if cfg.experts > 1
            else None
        )

    def features(
        self, points: torch.Tensor, z_id: torch.Tensor, z_exp: torch.Tensor
    ) -> torch.Tensor:
        """h(p) = [p, gamma(p), z_id, z_exp] (eq. 5). points (B,N,3), z_* (B,D) -> (B,N,F)."""
        n = points.shape[1]
        return torch.cat(
            [
                points,
                fourier_encoding(points, self.cfg.pe_frequencies),
                z_id[:, None, :].expand(-1, n, -1),
                z_exp[:, None, :].expand(-1, n, -1),
            ],
            dim=-1,
        )

    def forward(
        self, points: torch.Tensor, z_id: torch.Tensor, z_exp: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """points (B,N,3), z_id (B,Did), z_exp (B,Dexp) -> {'sdf': (B,N), 'gates': (B,N,K)}.

        'gates' (the soft expert assignment alpha, eq. 6) is present only with experts > 1.
        """
        h = self.features(points, z_id, z_exp)
        per_expert = self.experts(h)
        if self.gate is None:
            return {"sdf": per_expert[..., 0]}
        alpha = torch.softmax(self.gate(h), dim=-1)
        return {"sdf": (alpha * per_expert).sum(dim=-1), "gates": alpha}

    def get_loss_dict(
        self,
        batch: dict[str, torch.Tensor],
        z_id: torch.Tensor,
        z_exp: torch.Tensor,
        weights: LossConfig,
    ) -> dict[str, torch.Tensor]:
        """Weighted loss terms for one batch; their sum is the training objective (eq. 11).

        batch: 'surface_points' (B,S,3), 'surface_normals' (B,S,3), 'space_points' (B,M,3),
        'space_sdf' (B,M). Returns a dict of scalar tensors, already weighted.
        """
        n_surface = batch["surface_points"].shape[1]
        points = torch.cat([batch["surface_points"], batch["space_points"]], dim=1)
        points = points.detach().requires_grad_(True)
        out = self(points, z_id, z_exp)
        sdf = out["sdf"]
        (grad,) = torch.autograd.grad(sdf.sum(), points, create_graph=True)
        target = torch.cat([torch.zeros_like(sdf[:, :n_surface]), batch["space_sdf"]], dim=1)
        terms = {
            "sdf": weights.sdf * losses.sdf_l1(sdf, target),
            "normal": weights.normal
            * losses.normal_alignment(grad[:, :n_surface], batch["surface_normals"]),
            "eikonal": weights.eikonal * losses.eikonal(grad),
            "embedding": weights.embedding * losses.embedding_prior(z_id, z_exp),
        }
        if "gates" in out and weights.smooth > 0:
            offset = torch.randn_like(points) * weights.smooth_sigma
            neighbour = self(points.detach() + offset, z_id, z_exp)["gates"]
            terms["smooth"] = weights.smooth * losses.gate_smoothness(out["gates"], neighbour)
        if "gates" in out and weights.entropy > 0:
            terms["entropy"] = weights.entropy * losses.gate_entropy(out["gates"])
        return terms


class LatentCodes(nn.Module):
    """Auto-decoder codes: one identity code per subject, one expression code per scan."""

    def __init__(self, n_subjects: int, n_scans: int, id_dim: int, exp_dim: int) -> None:
        super().__init__()
        self.identity = nn.Embedding(n_subjects, id_dim)
        self.expression = nn.Embedding(n_scans, exp_dim)
        nn.init.normal_(self.identity.weight, 0.0, 0.01)
        nn.init.normal_(self.expression.weight, 0.0, 0.01)

    def forward(
        self, subject_idx: torch.Tensor, scan_idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """subject_idx, scan_idx: (B,) long -> z_id (B, Did), z_exp (B, Dexp)."""
        return self.identity(subject_idx), self.expression(scan_idx)
