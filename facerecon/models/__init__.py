"""Method registry: every baseline and ablation is a config entry naming one of these.

``MODELS`` holds the implicit models (the :class:`~facerecon.models.base.Model`
contract: trained, fitted, meshed); ``MESH_METHODS`` the methods that answer a
test scan with a mesh directly (the :mod:`~facerecon.models.mesh_inputs` contract).
Their names together are exactly those of ``facerecon.config.MODEL_CONFIGS``, whose
classes hold each one's settings.
"""

from __future__ import annotations

from facerecon.config import (
    I3dmmModelConfig,
    ImplicitModelConfig,
    PaperModelConfig,
)
from facerecon.models.base import Conditioning, LatentSpace, Model, Query
from facerecon.models.bilinear import facescape_bilinear_mesh
from facerecon.models.codes import LatentCodes
from facerecon.models.i3dmm import I3dmm
from facerecon.models.implicit import ImplicitFace
from facerecon.models.mesh_inputs import MeshMethod
from facerecon.models.nearest_train import nearest_train_mesh
from facerecon.models.paper import PaperFace

MODELS: dict[str, type[Model]] = {
    "implicit": ImplicitFace,
    "i3dmm": I3dmm,
    "paper": PaperFace,
}


MESH_METHODS: dict[str, MeshMethod] = {
    "nearest_train": nearest_train_mesh,
    "facescape_bilinear": facescape_bilinear_mesh,
}


def build_model(cfg: ImplicitModelConfig | I3dmmModelConfig | PaperModelConfig) -> Model:
    """Instantiate the registered implicit model named by ``cfg.name``."""
    return MODELS[cfg.name](cfg)


__all__ = ["MESH_METHODS", "MODELS", "Conditioning", "LatentCodes", "LatentSpace", "Model",
           "Query", "build_model"]
