"""Model registry: every baseline and ablation is a config entry naming one of these.

A registered model is an ``nn.Module`` built from a ModelConfig with
``forward(points, z_id, z_exp) -> {'sdf': ...}`` and
``get_loss_dict(batch, z_id, z_exp, weights) -> {name: weighted scalar}``.
"""

from __future__ import annotations

from torch import nn

from facerecon.config import ModelConfig
from facerecon.models.implicit import ImplicitFace, LatentCodes

MODELS: dict[str, type[nn.Module]] = {
    "implicit": ImplicitFace,
}


def build_model(cfg: ModelConfig) -> nn.Module:
    """Instantiate the registered model named by ``cfg.name``."""
    return MODELS[cfg.name](cfg)


__all__ = ["MODELS", "LatentCodes", "build_model"]
