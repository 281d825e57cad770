"""The paper's face model (section 2) on ImFace's structure, without the image branch yet.

    p  --expression field (z_exp)-->  p_n  --identity field (z_id)-->  p_t
    sdf(p) = T(p_t) + delta(p_t; z_id, z_exp),   delta = sum_k alpha_k(h) y_k(h)   (eq. 6)

* Landmark-Net (figure 2) predicts the 68 landmarks of the expressive face from
  (z_exp, z_id) and of the subject's neutral face from z_id alone; five of each (dlib 36,
  45, 30, 48, 54: eye corners, nose tip, mouth corners, as ImFace) centre the mini-nets
  of the two deformation fields.
* The expression field (driven by z_exp only, as the paper says) moves a point to the
  subject's neutral face; the identity field (z_id) moves it on to a shared template.
  Each is a set of landmark-centred hyper-SIREN mini-nets blended by a softmax of xyz,
  applied as an SE(3) motion through eq. 3's exponential map
  (:mod:`facerecon.models.deformation`).
* T is a code-free template SDF in template space; delta is ImFace's code-conditioned
  SDF correction.

**Where the experts sit (our reading).** The paper "preserves the local field
structures of the Mini-Nets as backbone modules and introduces multiple independent
local MLPs to model different facial regions", K = 8, "each corresponding to a local
field", and blends their outputs into the final SDF (eq. 6). We keep the mini-nets as
ImFace has them (they move points; they do not output SDF values) and make the
correction delta the mixture of K expert MLPs, gated by a two-layer network on
h = [p_t, gamma(p_t), z_id, z_exp]: the experts then add region-specific detail to the
shared template, where ImFace has one correction network (experts = 1). The gate lives
in template space, so eq. 9's neighbour pairs are drawn there and need only the gate. Reading the
experts as the mini-nets themselves would tie K to the 5 landmarks that centre them,
which contradicts K = 8. During training, each point's landmark region
(:mod:`facerecon.models.regions`, 8 regions) supervises the gate when K = 8 (the
gate's weights only: the labels do not move points, images or codes).

**Multi-scale image features** (``multiscale_features``, section 2.1): the aligned crop
goes through :class:`~facerecon.models.image_encoder.ImageEncoder` once per scan
(:meth:`PaperFace.prepare`); each query point p is projected with the scan's
weak-perspective camera, sampled with eq. 1's Gaussian 3x3 neighbourhood, and fused
into h by a learned gate (:mod:`facerecon.models.fusion`):
h = [p_t, gamma(p_t), fused f_img(p), z_id, z_exp]. The image feature is sampled at the
observed point p (where the photo saw it), the rest of h lives in template space. The
trunk's weights stay fixed for ``freeze_backbone_epochs`` (a param group with
'frozen_epochs').
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import torch
from torch import nn

from facerecon import losses
from facerecon.config import LossConfig, PaperModelConfig, TrainConfig
from facerecon.errors import InputError
from facerecon.models.base import (
    Conditioning,
    LatentSpace,
    Model,
    Query,
    sdf_loss_terms,
    spatial_gradient,
)
from facerecon.models.deformation import DeformationField
from facerecon.models.encoding import encoded_dim, fourier_encoding
from facerecon.models.experts import ExpertMLPs
from facerecon.models.fusion import GatedFusion, image_features_at
from facerecon.models.gating import Gate, gate_loss_terms
from facerecon.models.image_encoder import ImageEncoder
from facerecon.models.landmarks import LandmarkNet
from facerecon.models.regions import REGION_NAMES, region_labels

#: dlib indices of the landmarks that centre the mini-nets (ImFace): eye corners, nose tip,
#: mouth corners.
CENTRE_LANDMARKS = (36, 45, 30, 48, 54)


class PaperFace(Model):
    """Landmark-Net + expression and identity SE(3) fields + template SDF + expert correction."""

    def __init__(self, cfg: PaperModelConfig) -> None:
        super().__init__(cfg)
        n_centres = len(CENTRE_LANDMARKS)
        self.landmarks = LandmarkNet(cfg.id_dim, cfg.exp_dim, cfg.landmark_hidden_dim)
        self.template_landmarks = nn.Parameter(torch.zeros(68, 3))
        field = {"hidden_dim": cfg.deform_hidden_dim, "hidden_layers": cfg.deform_layers,
                 "hyper_hidden_dim": cfg.hyper_hidden_dim, "n_centres": n_centres}
        self.expression_field = DeformationField(cfg.exp_dim, **field)
        self.identity_field = DeformationField(cfg.id_dim, **field)
        point_dim = encoded_dim(cfg.pe_frequencies)
        code_dim = cfg.id_dim + cfg.exp_dim
        self.template = ExpertMLPs(1, point_dim, 0, cfg.template_hidden_dim,
                                   cfg.template_layers)
        self.encoder = self.fusion = None
        h_dim = point_dim
        if cfg.multiscale_features:
            self.encoder = ImageEncoder(cfg.trunk_stages, cfg.branch_channels,
                                        cfg.image_channels, out_resolution=cfg.feature_resolution)
            if cfg.backbone_weights:
                self.encoder.load_backbone(cfg.backbone_weights)
            self.fusion = GatedFusion(point_dim, cfg.image_channels, cfg.fusion_dim)
            h_dim += cfg.fusion_dim
        self.correction = ExpertMLPs(cfg.experts, h_dim, code_dim, cfg.hidden_dim,
                                     cfg.hidden_layers)
        with torch.no_grad():  # the correction starts at zero: T alone is the first shape
            self.correction.weights[-1].zero_()
            self.correction.biases[-1].zero_()
        self.gate = (Gate(h_dim, code_dim, cfg.gate_hidden_dim, cfg.experts)
                     if cfg.experts > 1 else None)
        #: Frozen trunk outputs by crop digest (with ``cache_frozen_trunk``), (C, h, w) each.
        self._trunk_cache: dict[bytes, torch.Tensor] = {}

    def latent_spec(self) -> tuple[LatentSpace, ...]:
        """An identity code per subject and an expression code per scan."""
        return (LatentSpace("identity", self.cfg.id_dim, "subject"),
                LatentSpace("expression", self.cfg.exp_dim, "scan"))

    def prepare(self, cond: Conditioning) -> Conditioning:
        """With the image branch: the multi-scale feature map M (B, C, R, R) of the crops."""
        if self.encoder is None:
            return cond
        if cond.image is None or cond.camera is None:
            raise InputError("this model reads each scan's aligned crop and camera: give the "
                             "images stage's folders (--views) and the preprocess records "
                             "(--transforms)")
        return dataclasses.replace(cond, features=self.image_features(cond.image))

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        """nn.Module's, forgetting cached trunk outputs (the trunk's weights may change)."""
        self._trunk_cache.clear()
        return super().load_state_dict(*args, **kwargs)

    def image_features(self, image: torch.Tensor) -> torch.Tensor:
        """Crops (B, 3, S, S) -> multi-scale feature maps M (B, C, R, R). With
        ``cache_frozen_trunk`` and the trunk frozen (no trunk weight requires a gradient),
        the trunk runs once per distinct crop (keyed by its bytes); otherwise every call."""
        encoder = self.encoder
        frozen = not any(p.requires_grad for p in encoder.backbone_parameters())
        if not (self.cfg.cache_frozen_trunk and frozen):
            self._trunk_cache.clear()  # the trunk may train: cached outputs would go stale
            return encoder(image)
        keys = [hashlib.sha256(crop.detach().cpu().numpy().tobytes()).digest()
                for crop in image]
        missing = [i for i, key in enumerate(keys) if key not in self._trunk_cache]
        if missing:
            with torch.no_grad():
                trunk = encoder.trunk_features(image[missing])
            self._trunk_cache.update(zip([keys[i] for i in missing], trunk, strict=True))
        return encoder.multi_scale(torch.stack([self._trunk_cache[key] for key in keys]))

    def param_groups(self, train: TrainConfig) -> list[dict[str, Any]]:
        """The trunk apart, fixed for the first ``freeze_backbone_epochs`` epochs."""
        if self.encoder is None:
            return super().param_groups(train)
        trunk = {id(p) for p in self.encoder.backbone_parameters()}
        return [{"name": "backbone", "params": self.encoder.backbone_parameters(),
                 "lr": train.lr, "frozen_epochs": self.cfg.freeze_backbone_epochs},
                {"name": "network", "params": [p for p in self.parameters()
                                               if id(p) not in trunk], "lr": train.lr}]

    def initialise(self, landmarks: torch.Tensor) -> None:
        """Start Landmark-Net and the template landmarks at the training scans' mean
        landmarks (68, 3), so the mini-nets start centred where faces are."""
        self.landmarks.set_template(landmarks)
        with torch.no_grad():
            self.template_landmarks.copy_(landmarks)

    def point_features(self, template_points: torch.Tensor) -> torch.Tensor:
        """[p_t, gamma(p_t)] (B, N, 3 + 6L): the per-point part of h."""
        return torch.cat([template_points,
                          fourier_encoding(template_points, self.cfg.pe_frequencies)], dim=-1)

    def template_sdf(self, template_points: torch.Tensor,
                     features: torch.Tensor | None = None) -> torch.Tensor:
        """The shared template's SDF (B, N) at template-space points (B, N, 3), which reads
        no code; ``features`` are the points' :meth:`point_features` when already at hand."""
        if features is None:
            features = self.point_features(template_points)
        return self.template(features, features.new_zeros(len(features), 0))[..., 0]

    def forward(self, query: Query) -> dict[str, torch.Tensor]:
        """'sdf' (B, N); the pieces the losses need: 'template_sdf' and 'correction' (B, N),
        'neutral_points' and 'template_points' (B, N, 3), the predicted landmarks
        'landmarks_expression' and 'landmarks_identity' (B, 68, 3), the gate's per-point
        input h 'gate_input' (B, N, P) and, with experts, 'gates' (B, N, K)."""
        z_id, z_exp = query.cond.codes["identity"], query.cond.codes["expression"]
        marks = self.landmarks(z_id, z_exp)
        centres = list(CENTRE_LANDMARKS)
        neutral = self.expression_field(query.points, z_exp,
                                        marks["expression"][:, centres])["points"]
        template_points = self.identity_field(neutral, z_id,
                                              marks["identity"][:, centres])["points"]
        features = self.point_features(template_points)
        codes = torch.cat([z_id, z_exp], dim=-1)
        template_sdf = self.template_sdf(template_points, features)
        out = {"template_points": template_points, "neutral_points": neutral,
               "template_sdf": template_sdf, "landmarks_expression": marks["expression"],
               "landmarks_identity": marks["identity"]}
        h = features
        if self.fusion is not None:
            cond = query.cond if query.cond.features is not None else self.prepare(query.cond)
            f_img = image_features_at(query.points, cond.camera, cond.features,
                                      cond.image.shape[-1], self.cfg.sampling_sigma)
            out["image_features"] = self.fusion(features, f_img)
            h = torch.cat([features, out["image_features"]], dim=-1)
        per_expert = self.correction(h, codes)
        out["gate_input"] = h
        if self.gate is None:
            out["correction"] = per_expert[..., 0]
        else:
            out["gates"] = self.gate(h, codes)
            out["correction"] = (out["gates"] * per_expert).sum(dim=-1)
        out["sdf"] = template_sdf + out["correction"]
        return out

    def warp_landmarks(self, landmarks: torch.Tensor, cond: Conditioning,
                       out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The scan's landmarks (B, 68, 3) carried by the expression field, and the predicted
        neutral landmarks carried by the identity field: (B, 68, 3) each."""
        centres = list(CENTRE_LANDMARKS)
        to_neutral = self.expression_field(landmarks, cond.codes["expression"],
                                           out["landmarks_expression"][:, centres])["points"]
        to_template = self.identity_field(out["landmarks_identity"], cond.codes["identity"],
                                          out["landmarks_identity"][:, centres])["points"]
        return to_neutral, to_template

    def get_loss_dict(self, batch: dict[str, torch.Tensor], cond: Conditioning,
                      weights: LossConfig) -> dict[str, torch.Tensor]:
        """The shared SDF terms, ImFace's landmark, template-eikonal, correction and
        disentangling terms, and the gate's regularisers and region supervision.

        batch also needs 'landmarks' (B, 68, 3) in units and, for the disentangling term,
        'neutral' (B,) bool (training; fitting leaves it out).
        """
        if weights.gradients == "forward" and self.fusion is not None:
            raise InputError("loss.gradients 'forward' does not reach through the image branch "
                             "(torch 2.13's grid_sample has no forward-mode derivative); use "
                             "'reverse', or multiscale_features: false")
        base = sdf_loss_terms(self, batch, cond, weights)
        out, points = base.out, base.query.points
        terms = dict(base.terms)
        if weights.gradients == "reverse":  # differentiate the forward pass's template SDF
            (grad_t,) = torch.autograd.grad(out["template_sdf"].sum(), out["template_points"],
                                            create_graph=True)
        else:  # forward mode evaluates the template again, along each axis
            _, _, grad_t = spatial_gradient(
                lambda p: (self.template_sdf(p), ()),
                out["template_points"], "forward")
        terms["eikonal_template"] = weights.eikonal_template * losses.eikonal(grad_t)
        landmarks = batch["landmarks"]
        terms["landmark"] = weights.landmark * losses.landmark_l2(out["landmarks_expression"],
                                                                 landmarks)
        to_neutral, to_template = self.warp_landmarks(landmarks, cond, out)
        template = self.template_landmarks.expand_as(to_template)
        terms["landmark_warp"] = weights.landmark_warp * (
            losses.landmark_l2(to_neutral, out["landmarks_identity"])
            + losses.landmark_l2(to_template, template))
        terms["correction"] = weights.correction * losses.sdf_correction(out["correction"])
        if "neutral" in batch:
            terms["disentangle"] = weights.disentangle * losses.neutral_deformation(
                out["neutral_points"] - points, batch["neutral"])
        if "gates" not in out:
            return terms
        codes = torch.cat([cond.codes["identity"], cond.codes["expression"]], dim=-1)
        image = [out["image_features"]] if "image_features" in out else []
        terms.update(gate_loss_terms(  # neighbours in template space: a gate-only pass
            out["gates"], lambda q: self.gate(torch.cat([self.point_features(q), *image], -1),
                                              codes),
            out["template_points"].detach(), weights))
        if weights.gate_supervision > 0 and out["gates"].shape[-1] == len(REGION_NAMES):
            # The region labels teach the gate only: a gate-only pass on the detached input,
            # so the labels never pull on the deformation fields, the image branch or the codes.
            labels = region_labels(points.detach(), landmarks)
            gates = self.gate(out["gate_input"].detach(), codes.detach())
            terms["gate_supervision"] = weights.gate_supervision * losses.gate_supervision(
                gates, labels)
        return terms
