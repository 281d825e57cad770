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


class ImplicitFace(nn.Module):
    """Decoder f(p, z_id, z_exp) with optional local experts; returns its own loss dict."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        point_dim = 3 + 6 * cfg.pe_frequencies
        code_dim = cfg.id_dim + cfg.exp_dim
        self.experts = ExpertMLPs(cfg.experts, point_dim, code_dim, cfg.hidden_dim,
                                  cfg.hidden_layers)
        # two-layer gating network on h(p); its first layer is split like the experts'
        self.gate = (
            nn.ModuleDict({
                "point": nn.Linear(point_dim, cfg.gate_hidden_dim),
                "code": nn.Linear(code_dim, cfg.gate_hidden_dim, bias=False),
                "out": nn.Linear(cfg.gate_hidden_dim, cfg.experts),
            })
            if cfg.experts > 1
            else None
        )

    def forward(
        self, points: torch.Tensor, z_id: torch.Tensor, z_exp: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """points (B,N,3), z_id (B,Did), z_exp (B,Dexp) -> {'sdf': (B,N), 'gates': (B,N,K)}.

        'gates' (the soft expert assignment alpha, eq. 6) is present only with experts > 1.
        """
        # h(p) = [p, gamma(p), z_id, z_exp] (eq. 5), kept as its per-point and per-scan parts
        point_features = torch.cat([points, fourier_encoding(points, self.cfg.pe_frequencies)],
                                   dim=-1)
        codes = torch.cat([z_id, z_exp], dim=-1)
        per_expert = self.experts(point_features, codes)
        if self.gate is None:
            return {"sdf": per_expert[..., 0]}
        hidden = self.gate["point"](point_features) + self.gate["code"](codes)[:, None]
        alpha = torch.softmax(self.gate["out"](torch.relu(hidden)), dim=-1)
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
