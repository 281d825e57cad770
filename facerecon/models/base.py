"""The model contract: what every implicit (SDF) model gives training, fitting and meshing.

Modelled on nerfstudio's ``Model``: a subclass builds itself from its own config
dataclass, answers a typed :class:`Query` with a dict of tensors, returns its own
loss dict and optimiser parameter groups, and names its latent spaces in
:meth:`Model.latent_spec`, so that the trainer and the fitter build and optimise
codes without knowing the model. Space is the unit sphere of the preprocessed
scans (1 unit = radius_mm).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from facerecon import losses
from facerecon.config import GradientMode, LossConfig, TrainConfig


@dataclass(frozen=True)
class LatentSpace:
    """One code space of a model: ``dim`` numbers per subject or per scan."""

    name: str
    """Key of the code in :attr:`Conditioning.codes` (e.g. 'identity')."""
    dim: int
    """Size of one code."""
    per: Literal["subject", "scan"]
    """Training keeps one code per subject (shared by its scans) or one per scan."""


@dataclass
class Conditioning:
    """Per-scan inputs of a query, batched over B scans.

    The image and camera are optional: a model that needs them says so in its
    docstring and checks for them (the scans' landmarks, a training label, are in
    the batch).
    """

    codes: dict[str, torch.Tensor]
    """Latent space name -> (B, dim) codes."""
    image: torch.Tensor | None = None
    """(B, 3, 256, 256) aligned crop (images stage), values in [0, 1]."""
    camera: torch.Tensor | None = None
    """(B, 2, 4) weak-perspective projection of unit-sphere points to crop pixels."""
    features: torch.Tensor | None = None
    """What :meth:`Model.prepare` computed once per scan from the rest (e.g. image features)."""


@dataclass
class Query:
    """Points to evaluate, (B, N, 3) in units, with their scans' conditioning."""

    points: torch.Tensor
    cond: Conditioning

    def at(self, points: torch.Tensor) -> Query:
        """The same conditioning at other points (B, N', 3)."""
        return dataclasses.replace(self, points=points)


class Model(nn.Module, ABC):
    """An implicit face model f(p | conditioning) -> signed distance, in units."""

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        self.cfg = cfg

    @abstractmethod
    def latent_spec(self) -> tuple[LatentSpace, ...]:
        """The code spaces this model reads from :attr:`Conditioning.codes`."""

    @abstractmethod
    def forward(self, query: Query) -> dict[str, torch.Tensor]:
        """'sdf': (B, N) signed distances in units, plus model-specific outputs."""

    @abstractmethod
    def get_loss_dict(self, batch: dict[str, torch.Tensor], cond: Conditioning,
                      weights: LossConfig) -> dict[str, torch.Tensor]:
        """Weighted scalar loss terms for one batch (see :func:`facerecon.batches.draw_points`
        for ``batch``); their sum is the objective of training and of fitting."""

    def prepare(self, cond: Conditioning) -> Conditioning:
        """Per-scan work done once before querying many points (image features, say); the
        default has none. Training calls it every step, fitting and meshing once."""
        return cond

    def initialise(self, landmarks: torch.Tensor) -> None:
        """Data-dependent set-up before training, from the mean (68, 3) landmarks of the
        training scans in units; the default does nothing."""
        del landmarks

    def param_groups(self, train: TrainConfig) -> list[dict[str, Any]]:
        """Optimiser groups of the network's weights (codes are the trainer's group)."""
        return [{"name": "network", "params": list(self.parameters()), "lr": train.lr}]


def spatial_gradient(fn: Callable[[torch.Tensor], tuple[torch.Tensor, Any]],
                     points: torch.Tensor, mode: GradientMode = "reverse",
                     ) -> tuple[torch.Tensor, Any, torch.Tensor]:
    """``fn``'s value (B, N), its aux output and d value / d p (B, N, 3), differentiable
    (for the normal and eikonal terms), at ``points`` (B, N, 3).

    ``fn``: p (B, N, 3) -> (value (B, N), aux), each value a function of its own point
    only (as every model's query is, given the scans' conditioning). 'reverse': one
    autograd.grad with create_graph (the step's backward is then a double backward);
    'forward': the Jacobian-vector products along x, y and z, each at every point at once,
    under vmap (a first-order backward, which torch.compile takes; see LossConfig.gradients).
    """
    if mode == "forward":
        def along(axis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Any]:
            return torch.func.jvp(fn, (points,), (axis.expand_as(points),), has_aux=True)

        axes = torch.eye(3, dtype=points.dtype, device=points.device)
        value, tangents, aux = torch.func.vmap(along, out_dims=(None, 0, None))(axes)
        return value, aux, tangents.movedim(0, -1)
    points = points.detach().requires_grad_(True)
    value, aux = fn(points)
    (grad,) = torch.autograd.grad(value.sum(), points, create_graph=True)
    return value, aux, grad


def sdf_with_gradient(model: Model, query: Query, mode: GradientMode = "reverse",
                      ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The model's outputs at ``query`` and d sdf / d p (B, N, 3), differentiable (see
    :func:`spatial_gradient` for ``mode``)."""
    def sdf(points: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = model(query.at(points))
        return out["sdf"], out

    _, out, grad = spatial_gradient(sdf, query.points, mode)
    return out, grad


@dataclass
class SdfTerms:
    """What :func:`sdf_loss_terms` computed, for a model to add its own terms to."""

    terms: dict[str, torch.Tensor]
    """'sdf', 'normal', 'eikonal', 'embedding', weighted scalars."""
    out: dict[str, torch.Tensor]
    """The model's outputs at the batch's points."""
    query: Query
    """Surface then space points (B, S + M, 3) with the conditioning."""


def sdf_loss_terms(model: Model, batch: dict[str, torch.Tensor], cond: Conditioning,
                   weights: LossConfig) -> SdfTerms:
    """The terms every SDF model shares (eq. 7, 8 and the eikonal term).

    batch: 'surface_points' (B,S,3), 'surface_normals' (B,S,3), 'space_points' (B,M,3),
    'space_sdf' (B,M): surface points have SDF 0 and the given normals.
    """
    n_surface = batch["surface_points"].shape[1]
    points = torch.cat([batch["surface_points"], batch["space_points"]], dim=1)
    query = Query(points, cond)
    out, grad = sdf_with_gradient(model, query, weights.gradients)
    sdf = out["sdf"]
    target = torch.cat([torch.zeros_like(sdf[:, :n_surface]), batch["space_sdf"]], dim=1)
    terms = {
        "sdf": weights.sdf * losses.sdf_l1(sdf, target),
        "normal": weights.normal
        * losses.normal_alignment(grad[:, :n_surface], batch["surface_normals"]),
        "eikonal": weights.eikonal * losses.eikonal(grad),
        "embedding": weights.embedding * losses.embedding_prior(*cond.codes.values()),
    }
    return SdfTerms(terms, out, query)
