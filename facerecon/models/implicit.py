"""Conditional implicit face: f(p, z_id, z_exp) -> signed distance (paper eq. 2, 4-6).

The query feature is h(p) = [p, gamma(p), z_id, z_exp] (eq. 5 without the image
term, which lands with the image encoder). It is decoded either by one MLP or by
K local expert MLPs whose outputs are blended by a two-layer gating network
(eq. 6). ``experts = 1`` is the single decoder; all other settings share the
same code.
"""

from __future__ import annotations

import torch

from facerecon import losses
from facerecon.config import ImplicitModelConfig, LossConfig
from facerecon.models.base import Conditioning, LatentSpace, Model, Query, sdf_with_gradient
from facerecon.models.encoding import encoded_dim, fourier_encoding
from facerecon.models.experts import ExpertMLPs
from facerecon.models.gating import Gate


class ImplicitFace(Model):
    """Decoder f(p, z_id, z_exp) with optional local experts; returns its own loss dict."""

    def __init__(self, cfg: ImplicitModelConfig) -> None:
        super().__init__(cfg)
        point_dim = encoded_dim(cfg.pe_frequencies)
        code_dim = cfg.id_dim + cfg.exp_dim
        self.experts = ExpertMLPs(cfg.experts, point_dim, code_dim, cfg.hidden_dim,
                                  cfg.hidden_layers)
        self.gate = (Gate(point_dim, code_dim, cfg.gate_hidden_dim, cfg.experts)
                     if cfg.experts > 1 else None)

    def latent_spec(self) -> tuple[LatentSpace, ...]:
        """An identity code per subject and an expression code per scan."""
        return (LatentSpace("identity", self.cfg.id_dim, "subject"),
                LatentSpace("expression", self.cfg.exp_dim, "scan"))

    def forward(self, query: Query) -> dict[str, torch.Tensor]:
        """{'sdf': (B, N)} and, with experts > 1, 'gates': (B, N, K), the soft expert
        assignment alpha of eq. 6."""
        points = query.points
        # h(p) = [p, gamma(p), z_id, z_exp] (eq. 5), kept as its per-point and per-scan parts
        point_features = torch.cat([points, fourier_encoding(points, self.cfg.pe_frequencies)],
                                   dim=-1)
        codes = torch.cat([query.cond.codes["identity"], query.cond.codes["expression"]], dim=-1)
        per_expert = self.experts(point_features, codes)
        if self.gate is None:
            return {"sdf": per_expert[..., 0]}
        alpha = self.gate(point_features, codes)
        return {"sdf": (alpha * per_expert).sum(dim=-1), "gates": alpha}

    def get_loss_dict(self, batch: dict[str, torch.Tensor], cond: Conditioning,
                      weights: LossConfig) -> dict[str, torch.Tensor]:
        """Weighted loss terms for one batch; their sum is the objective (eq. 11).

        batch: 'surface_points' (B,S,3), 'surface_normals' (B,S,3), 'space_points' (B,M,3),
        'space_sdf' (B,M). Returns a dict of scalar tensors, already weighted.
        """
        n_surface = batch["surface_points"].shape[1]
        points = torch.cat([batch["surface_points"], batch["space_points"]], dim=1)
        query = Query(points, cond)
        out, grad = sdf_with_gradient(self, query)
        sdf = out["sdf"]
        target = torch.cat([torch.zeros_like(sdf[:, :n_surface]), batch["space_sdf"]], dim=1)
        terms = {
            "sdf": weights.sdf * losses.sdf_l1(sdf, target),
            "normal": weights.normal
            * losses.normal_alignment(grad[:, :n_surface], batch["surface_normals"]),
            "eikonal": weights.eikonal * losses.eikonal(grad),
            "embedding": weights.embedding * losses.embedding_prior(*cond.codes.values()),
        }
        if "gates" in out and weights.smooth > 0:
            offset = torch.randn_like(points) * weights.smooth_sigma
            neighbour = self(query.at(points + offset))["gates"]
            terms["smooth"] = weights.smooth * losses.gate_smoothness(out["gates"], neighbour)
        if "gates" in out and weights.entropy > 0:
            terms["entropy"] = weights.entropy * losses.gate_entropy(out["gates"])
        return terms
