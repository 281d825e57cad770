"""i3DMM baseline (Yenamandra et al., CVPR 2021), geometry only: f(p) = g(p + d(p, z)).

Architecture (sizes from :class:`~facerecon.config.I3dmmModelConfig`):

- **Deformation network** d: an MLP on [p, gamma(p), z_id, z_exp] (``pe_frequencies``
  Fourier frequencies, :func:`~facerecon.models.encoding.fourier_encoding`) with
  ``deform_layers`` hidden layers of ``deform_hidden_dim`` and a 3-vector output, the
  displacement d(p) into the reference space; q = p + d(p). As in i3DMM (and DeepSDF) the
  network input is concatenated again to the input of hidden layer ``deform_layers // 2``
  (layer 4 of 8). The output layer starts at zero, so the field starts as the identity
  (q = p) and every scan starts as the reference shape.
- **Reference shape network** g: one :class:`~facerecon.models.experts.ExpertMLPs` MLP on
  the raw xyz of q, ``reference_layers`` hidden layers of ``reference_hidden_dim``, with
  the geometric (sphere) initialisation, so the model starts as |p| - INIT_SPHERE_RADIUS
  for every code. It reads no code: all variation between scans is the deformation's.

Taken from i3DMM: the deformation-into-a-reference-shape decomposition, the
positional-encoded deformation input with the codes, the depth/width/skip of both
networks, the displacement regulariser (applied in training and in fitting, as i3DMM
does when it fits a scan), a lower learning rate for the reference network than for the
deformation network (i3DMM: 1e-4 vs 5e-4), and DeepSDF-style auto-decoder codes (here the
trainer's :class:`~facerecon.models.codes.LatentCodes`).

What differs:

- geometry only: no colour network and no colour codes; the geometry code is
  [identity (per subject), expression (per scan)] as for every method here, without
  i3DMM's third (hairstyle) part;
- no landmark-based rigid alignment and no landmark/ear-centroid correspondence loss:
  our preprocessing aligns the scans, and the samples carry no landmark correspondences
  the loss could use;
- losses: this repository's (ImFace's) L1 SDF, normal and eikonal terms and Gaussian code
  prior, instead of i3DMM's clamped L1 (clamp 0.1, tanh output) with the code-norm
  regulariser; the displacement regulariser is mean |d|^2 (i3DMM: mean |d|);
- activation softplus (beta = SOFTPLUS_BETA, as ExpertMLPs) instead of ReLU, and no
  weight normalisation: the normal and eikonal terms act on
  grad_p f = (I + J_d)^T grad g(q), which holds the deformation's Jacobian J_d; with
  ReLU J_d is piecewise constant and the normal field jumps across every kink, softplus
  keeps it continuous while staying close to ReLU elsewhere;
- the reference network reads raw xyz of q, not i3DMM's 6-frequency encoding (zero-padded
  to 512 there): the reference shape is the smooth common template, so detail is left to
  the code-driven deformation rather than absorbed into the shared network, and the
  geometric initialisation stays exactly a sphere in q;
- trained jointly from the start: no separate pre-training of the reference shape on one
  scan.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from facerecon.config import I3dmmModelConfig, LossConfig, TrainConfig
from facerecon.models.base import Conditioning, LatentSpace, Model, Query, sdf_loss_terms
from facerecon.models.encoding import encoded_dim, fourier_encoding
from facerecon.models.experts import SOFTPLUS_BETA, ExpertMLPs


class DeformationField(nn.Module):
    """MLP [point features, codes] -> displacement (3), softplus, with one skip connection.

    Hidden layer ``hidden_layers // 2`` (for two or more hidden layers) reads [h, input]
    (DeepSDF / i3DMM). The codes' share of the first layer and of the skip layer is
    computed once per scan, not once per point. The output layer is zero at
    initialisation, so the displacement starts at exactly 0.
    """

    def __init__(self, point_dim: int, code_dim: int, hidden_dim: int,
                 hidden_layers: int) -> None:
        super().__init__()
        self.point_dim = point_dim
        in_dim = point_dim + code_dim
        self.skip = hidden_layers // 2 if hidden_layers >= 2 else None
        self.layers = nn.ModuleList()
        for i in range(hidden_layers + 1):
            d_in = in_dim if i == 0 else hidden_dim + (in_dim if i == self.skip else 0)
            self.layers.append(nn.Linear(d_in, 3 if i == hidden_layers else hidden_dim))
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)
        self.activation = nn.Softplus(beta=SOFTPLUS_BETA)

    @staticmethod
    def _input_layer(layer: nn.Linear, point_features: torch.Tensor, codes: torch.Tensor,
                     offset: int) -> torch.Tensor:
        """``layer`` applied to its columns offset.. = [point_features, codes]:
        (B, N, P), (B, C) -> (B, N, out), the code part once per scan."""
        p = point_features.shape[-1]
        w = layer.weight
        per_point = point_features @ w[:, offset:offset + p].T
        per_scan = codes @ w[:, offset + p:].T + layer.bias
        return per_point + per_scan[:, None, :]

    def forward(self, point_features: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """point_features (B, N, P), codes (B, C) -> displacement (B, N, 3)."""
        x = self._input_layer(self.layers[0], point_features, codes, 0)
        for i, layer in enumerate(self.layers[1:], start=1):
            h = self.activation(x)
            if i == self.skip:
                hidden = h.shape[-1]
                x = (h @ layer.weight[:, :hidden].T
                     + self._input_layer(layer, point_features, codes, hidden))
            else:
                x = layer(h)
        return x


class I3dmm(Model):
    """i3DMM geometry: sdf(p) = g(p + d(p, z_id, z_exp)); see the module docstring."""

    def __init__(self, cfg: I3dmmModelConfig) -> None:
        super().__init__(cfg)
        self.deformation = DeformationField(encoded_dim(cfg.pe_frequencies),
                                            cfg.id_dim + cfg.exp_dim, cfg.deform_hidden_dim,
                                            cfg.deform_layers)
        self.reference = ExpertMLPs(1, 3, 0, cfg.reference_hidden_dim, cfg.reference_layers)

    def latent_spec(self) -> tuple[LatentSpace, ...]:
        """An identity code per subject and an expression code per scan."""
        return (LatentSpace("identity", self.cfg.id_dim, "subject"),
                LatentSpace("expression", self.cfg.exp_dim, "scan"))

    def reference_sdf(self, q: torch.Tensor) -> torch.Tensor:
        """The reference shape's SDF g(q): (B, N, 3) -> (B, N); it reads no code."""
        return self.reference(q, q.new_zeros(q.shape[0], 0))[..., 0]

    def forward(self, query: Query) -> dict[str, torch.Tensor]:
        """{'sdf': (B, N), 'displacement': (B, N, 3)}: d(p) with sdf = g(p + d(p))."""
        points = query.points
        point_features = torch.cat([points, fourier_encoding(points, self.cfg.pe_frequencies)],
                                   dim=-1)
        codes = torch.cat([query.cond.codes["identity"], query.cond.codes["expression"]], dim=-1)
        displacement = self.deformation(point_features, codes)
        return {"sdf": self.reference_sdf(points + displacement), "displacement": displacement}

    def get_loss_dict(self, batch: dict[str, torch.Tensor], cond: Conditioning,
                      weights: LossConfig) -> dict[str, torch.Tensor]:
        """Weighted terms 'sdf', 'normal', 'eikonal', 'embedding' (as ImplicitFace) and
        'deformation' (weights.deformation x mean |d|^2 over all the batch's points).

        batch: 'surface_points' (B,S,3), 'surface_normals' (B,S,3), 'space_points' (B,M,3),
        'space_sdf' (B,M). Returns a dict of scalar tensors, already weighted.
        """
        base = sdf_loss_terms(self, batch, cond, weights)
        displacement = base.out["displacement"]
        return {**base.terms,
                "deformation": weights.deformation * displacement.pow(2).sum(dim=-1).mean()}

    def param_groups(self, train: TrainConfig) -> list[dict[str, Any]]:
        """'deformation' at train.lr, 'reference' at cfg.reference_lr_scale x train.lr."""
        return [{"name": "deformation", "params": list(self.deformation.parameters()),
                 "lr": train.lr},
                {"name": "reference", "params": list(self.reference.parameters()),
                 "lr": train.lr * self.cfg.reference_lr_scale}]
