"""Conditional implicit face: f(p, z_id, z_exp) -> signed distance (paper eq. 2, 4-6).

The query feature is h(p) = [p, gamma(p), z_id, z_exp] (eq. 5 without the image
term, which lands with the image encoder). It is decoded either by one MLP or by
K local expert MLPs whose outputs are blended by a two-layer gating network
(eq. 6). ``experts = 1`` is the single decoder; all other settings share the
same code.
"""

from __future__ import annotations

import torch

from facerecon.config import ImplicitModelConfig, LossConfig
from facerecon.models.base import Conditioning, LatentSpace, Model, Query, sdf_loss_terms
from facerecon.models.encoding import encoded_dim, fourier_encoding
from facerecon.models.experts import ExpertMLPs
from facerecon.models.gating import Gate, gate_loss_terms


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
        """Weighted loss terms for one batch; their sum is the objective (eq. 11): the shared
        SDF terms and, with experts, the gate regularisers."""
        base = sdf_loss_terms(self, batch, cond, weights)
        if "gates" not in base.out:
            return base.terms
        return {**base.terms, **gate_loss_terms(
            base.out["gates"], lambda p: self(base.query.at(p))["gates"], base.query.points,
            weights)}
