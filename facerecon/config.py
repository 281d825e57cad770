"""Typed configuration: one dataclass per stage, one docstring per field.

The dataclass defaults are the paper's / PROTOCOL.md's values; ``config.yaml``
overrides them (smaller, for a CPU demo). The workflow's JSON schema
(``workflow/schemas/config.schema.json``) is generated from these classes, so
types, bounds, defaults and descriptions live in one place::

    python -m facerecon.config --write-schema workflow/schemas/config.schema.json

A *method* (a row of Table 1 or Table 2) is a name plus overrides of the
``model``, ``loss``, ``train`` and ``fit`` sections: a baseline or an ablation
is only a config entry. Each registered model has its own config class, chosen
by ``model.name``; its ``kind`` says how the workflow runs it ('implicit':
train -> fit -> mesh; 'mesh': one fitting step writes the mesh).

Every stage's command line takes the sections it reads as one JSON object
(:func:`stage_json` writes it, :func:`add_config_arguments` /
:func:`parse_config_arguments` read it); the same dataclasses also generate
per-field flags for use by hand. This module is a leaf: standard library only.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import json
import math
import textwrap
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from facerecon.errors import InputError, run_cli
from facerecon.layout import EXPRESSIONS, TEST_SUBJECTS, TRAIN_EXPRESSIONS, TRAIN_SUBJECTS

T = TypeVar("T")
MethodKind = Literal["implicit", "mesh"]
#: How the loss differentiates the SDF in space (LossConfig.gradients).
GradientMode = Literal["reverse", "forward"]


@dataclass(frozen=True)
class Bounds:
    """Allowed range of a numeric field, written in its type: ``Annotated[int, Bounds(ge=1)]``."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None

    def check(self, value: float, where: str) -> None:
        """InputError naming ``where`` when ``value`` is out of range or not finite."""
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{where}: must be finite, got {value}")
        if self.ge is not None and not value >= self.ge:
            raise InputError(f"{where}: must be >= {self.ge:g}, got {value}")
        if self.gt is not None and not value > self.gt:
            raise InputError(f"{where}: must be > {self.gt:g}, got {value}")
        if self.le is not None and not value <= self.le:
            raise InputError(f"{where}: must be <= {self.le:g}, got {value}")

    def schema(self) -> dict[str, float]:
        """JSON-schema keywords of this range."""
        out: dict[str, float] = {}
        if self.ge is not None:
            out["minimum"] = self.ge
        if self.gt is not None:
            out["exclusiveMinimum"] = self.gt
        if self.le is not None:
            out["maximum"] = self.le
        return out


@dataclass
class SplitConfig:
    """Which scans train the model and which are fitted and evaluated."""

    train_subjects: list[str] = field(default_factory=lambda: [str(s) for s in TRAIN_SUBJECTS])
    """Subject ids used for training (ImFace: 1..359 except the test subjects)."""
    test_subjects: list[str] = field(default_factory=lambda: [str(s) for s in TEST_SUBJECTS])
    """Subject ids fitted and evaluated (ImFace: 122 212 340 344 393 395 421 527 594 610)."""
    train_expressions: list[int] = field(default_factory=lambda: list(TRAIN_EXPRESSIONS))
    """FaceScape expression numbers used for training (5, 6, 8, 9, 18 are test-only)."""
    test_expressions: list[int] = field(default_factory=lambda: list(range(1, 21)))
    """FaceScape expression numbers fitted and evaluated for each test subject."""


@dataclass
class SyntheticConfig:
    """The built-in procedural dataset (no download, no licence)."""

    subjects: Annotated[int, Bounds(ge=1)] = 8
    """Number of synthetic subjects, named 1..subjects."""
    seed: Annotated[int, Bounds(ge=0)] = 0
    """Seed of the identity parameters and the fine detail; the same seed builds the same files."""
    split: SplitConfig = field(default_factory=lambda: SplitConfig(
        train_subjects=[str(s) for s in range(1, 7)], test_subjects=["7", "8"]))
    """Train / test split of the synthetic subjects."""


@dataclass
class IctConfig:
    """The ICT-FaceKit benchmark (MIT licence), built in FaceScape's layout."""

    model: str = ""
    """ICT-FaceKit model. Empty: the compact model shipped with facerecon (the scan surface
    of all 100 identities and 57 expressions; scans within 0.0005 mm of the full model's).
    Else the packed .npz or the upstream FaceXModel/ folder; if that path does not exist,
    the upstream repository archive is downloaded from `url` and the full model (eyeballs,
    teeth) packed as results/ict/model/ict_facekit.npz."""
    url: str = "https://github.com/ICT-VGL/ICT-FaceKit/archive/da5f95a6.zip"
    """Upstream repository archive (the commit the packed copy was made from)."""
    sha256: str = ""
    """SHA-256 of the archive at `url`; checked when given."""
    subjects: Annotated[int, Bounds(ge=1)] = 12
    """Number of ICT identities, named 1..subjects."""
    seed: Annotated[int, Bounds(ge=0)] = 0
    """Seed of the identity weights; the same seed builds the same files."""
    split: SplitConfig = field(default_factory=lambda: SplitConfig(
        train_subjects=[str(s) for s in range(1, 11)], test_subjects=["11", "12"]))
    """Train / test split of the ICT identities."""


@dataclass
class FacescapeConfig:
    """FaceScape (licensed): taken from archives or links the user already has."""

    archives: list[str] = field(default_factory=list)
    """Local TU archives (facescape_trainset_*.zip) or folders already extracted."""
    urls: list[str] = field(default_factory=list)
    """Per-licence download links of TU archives (downloaded to results/facescape/downloads)."""
    sha256: list[str] = field(default_factory=list)
    """SHA-256 of each URL's file, in the order of `urls` (empty: not checked)."""
    token_env: str = ""
    """Name of an environment variable holding a token or cookie sent with the downloads;
    the secret itself never goes into config, logs or results."""
    header_name: str = "Authorization"
    """HTTP header carrying that secret ('Authorization' sends 'Bearer <token>')."""
    images: list[str] = field(default_factory=list)
    """Multi-view image archives (fsmview_trainset_images_*.zip) or folders; optional."""
    max_uncompressed_gb: Annotated[float, Bounds(gt=0)] = 100.0
    """Refuse any archive whose members add up to more than this."""
    split: SplitConfig = field(default_factory=SplitConfig)
    """Train / test split; defaults to ImFace's (355 train subjects, 10 test subjects)."""


@dataclass
class PreprocessConfig:
    """Rigid alignment, sphere crop and pseudo-watertight surface (ImFace protocol)."""

    radius_mm: Annotated[float, Bounds(gt=0)] = 100.0
    """Radius of the crop sphere; also the unit of the network's space (1 unit = radius_mm)."""
    offset_mm: Annotated[float, Bounds(ge=0)] = 40.0
    """Distance of the sphere centre behind the nose tip, along -z."""
    align: Literal["translate", "landmarks"] = "translate"
    """'translate': the scan is already in the canonical frame (FaceScape TU, synthetic);
    'landmarks': rigid Kabsch alignment of the 68 landmarks onto `template`."""
    template: str = ""
    """68-landmark template file (x y z rows, mm) for align=landmarks."""


@dataclass
class SamplingConfig:
    """SDF training samples drawn per preprocessed scan."""

    surface_points: Annotated[int, Bounds(ge=1)] = 235_000
    """Points on the surface (SDF 0) with their normals."""
    uniform_points: Annotated[int, Bounds(ge=1)] = 15_000
    """Points uniform in the unit sphere with their signed distance and gradient."""
    near_surface_points: Annotated[int, Bounds(ge=0)] = 0
    """Gaussian near-surface points (DeepSDF style), split evenly over `near_sigma_mm`."""
    near_sigma_mm: list[Annotated[float, Bounds(gt=0)]] = field(default_factory=lambda: [1.0, 5.0])
    """Standard deviations of the near-surface offsets."""
    backend: Literal["exact", "mesh_to_sdf"] = "exact"
    """'exact': BVH distances to the mesh; 'mesh_to_sdf': the mesh-to-sdf package."""
    seed: Annotated[int, Bounds(ge=0)] = 0
    """Seed of the sample positions."""


@dataclass
class ImplicitModelConfig:
    """Conditional SDF network f(p, z_id, z_exp) -> s: one MLP or K local experts (eq. 2-6)."""

    kind: ClassVar[MethodKind] = "implicit"

    name: Literal["implicit"] = "implicit"
    """Model class in the registry (facerecon.models.MODELS)."""
    id_dim: Annotated[int, Bounds(ge=1)] = 128
    """Size of the identity code z_id."""
    exp_dim: Annotated[int, Bounds(ge=1)] = 128
    """Size of the expression code z_exp."""
    hidden_dim: Annotated[int, Bounds(ge=1)] = 256
    """Width of each hidden layer (of each expert, when experts > 1)."""
    hidden_layers: Annotated[int, Bounds(ge=1)] = 4
    """Number of hidden layers of the decoder (of each expert)."""
    pe_frequencies: Annotated[int, Bounds(ge=0)] = 6
    """L of the Fourier positional encoding (paper eq. 4); 0 feeds raw xyz."""
    experts: Annotated[int, Bounds(ge=1)] = 1
    """Local expert decoders blended by a gating network (paper eq. 6: 8); 1 is a single MLP."""
    gate_hidden_dim: Annotated[int, Bounds(ge=1)] = 64
    """Width of the two-layer gating network."""
    @property
    def latent_dim(self) -> int:
        """Latent dimension reported in Table 1 (identity + expression)."""
        return self.id_dim + self.exp_dim

    @property
    def components(self) -> dict[str, bool]:
        """Which of the paper's components this model uses (Table 2's columns)."""
        return {"multiscale": False, "local_experts": self.experts > 1}


@dataclass
class NearestTrainConfig:
    """Memorisation floor: answer each test scan with the nearest training sheet after ICP."""

    kind: ClassVar[MethodKind] = "mesh"

    name: Literal["nearest_train"] = "nearest_train"
    """Mesh-kind method in the registry (facerecon.models.MESH_METHODS)."""
    samples: Annotated[int, Bounds(ge=100)] = 20_000
    """Points sampled on each sheet for the ICP and the Chamfer that picks the nearest."""
    seed: Annotated[int, Bounds(ge=0)] = 0
    """Seed of those samples."""

    @property
    def latent_dim(self) -> int:
        """No latent space: the answer is a stored training scan."""
        return 0

    @property
    def components(self) -> dict[str, bool]:
        """None of the paper's components."""
        return {"multiscale": False, "local_experts": False}


@dataclass
class FaceScapeBilinearConfig:
    """FaceScape's bilinear baseline (facerecon.models.bilinear): a Tucker (identity x
    expression) model of the training scans registered to one grid topology, or FaceScape's
    released model, fitted to each test scan by a rigid pose and regularised identity and
    expression weights, against the landmarks first, then dense closest points."""

    kind: ClassVar[MethodKind] = "mesh"

    name: Literal["facescape_bilinear"] = "facescape_bilinear"
    """Mesh-kind method in the registry (facerecon.models.MESH_METHODS)."""
    id_rank: Annotated[int, Bounds(ge=1)] = 300
    """Identity components: the paper's Table 1 lists FaceScape at 352 dimensions, i.e. 300
    + 52, FaceScape's 847_300_52 model (its recommended file has 50); the model built from
    the training scans has at most one per training subject."""
    exp_rank: Annotated[int, Bounds(ge=1)] = 52
    """Expression components (FaceScape: 52); at most one per training expression."""
    grid_spacing_mm: Annotated[float, Bounds(gt=0)] = 1.0
    """Spacing of the template grid in the crop frame's (x, y) (registration of the training
    scans to one topology)."""
    landmark_iterations: Annotated[int, Bounds(ge=0)] = 5
    """Rounds of pose, identity and expression updates against the 68 landmarks alone."""
    dense_iterations: Annotated[int, Bounds(ge=0)] = 10
    """Then rounds against closest points on the target sheet (and the landmarks)."""
    id_regularisation: Annotated[float, Bounds(ge=0)] = 0.1
    """Weight of the identity prior, mm^2 of mean squared residual per squared standard
    deviation of the training identity weights (Tikhonov towards their mean)."""
    exp_regularisation: Annotated[float, Bounds(ge=0)] = 0.1
    """Weight of the expression prior, likewise."""
    landmark_weight: Annotated[float, Bounds(ge=0)] = 0.1
    """Weight of the mean squared landmark residual beside the dense term's, in the dense
    rounds."""
    dense_vertices: Annotated[int, Bounds(ge=100)] = 8000
    """Model vertices (a fixed seeded subset) matched to the target in each dense round."""
    target_samples: Annotated[int, Bounds(ge=100)] = 50_000
    """Area-uniform points (with normals) sampled on the target sheet to match against."""
    max_distance_mm: Annotated[float, Bounds(gt=0)] = 5.0
    """Dense pairs farther apart than this are ignored."""
    max_normal_angle_deg: Annotated[float, Bounds(gt=0, le=180)] = 60.0
    """Dense pairs whose normals differ by more than this angle are ignored."""
    seed: Annotated[int, Bounds(ge=0)] = 0
    """Seed of the target samples and of the dense vertex subset."""
    model_file: str = ""
    """FaceScape's released bilinear model (facescape_bm_v1.6_847_50_52_id_front.npz or
    facescape_bm_v1.6_847_300_52_id.npz), used instead of a model built from the training
    scans (its own ranks then, whatever id_rank and exp_rank say); empty: build one."""

    @property
    def latent_dim(self) -> int:
        """Latent dimension reported in Table 1: the configured ranks (identity +
        expression), before any cap by the number of training subjects and expressions."""
        return self.id_rank + self.exp_rank

    @property
    def components(self) -> dict[str, bool]:
        """None of the paper's components."""
        return {"multiscale": False, "local_experts": False}


@dataclass
class I3dmmModelConfig:
    """i3DMM (Yenamandra et al. 2021) as PROTOCOL.md describes it: a deformation network
    with positional encoding maps each point into a reference space, where a reference
    shape network gives the SDF; DeepSDF-style auto-decoder codes."""

    kind: ClassVar[MethodKind] = "implicit"

    name: Literal["i3dmm"] = "i3dmm"
    """Model class in the registry (facerecon.models.MODELS)."""
    id_dim: Annotated[int, Bounds(ge=1)] = 128
    """Size of the identity code (the paper compares all methods at 128 + 128)."""
    exp_dim: Annotated[int, Bounds(ge=1)] = 128
    """Size of the expression code."""
    pe_frequencies: Annotated[int, Bounds(ge=0)] = 6
    """Fourier frequencies of the deformation network's input (i3DMM: 6)."""
    deform_hidden_dim: Annotated[int, Bounds(ge=1)] = 1024
    """Width of the deformation network (i3DMM: 1024)."""
    deform_layers: Annotated[int, Bounds(ge=1)] = 8
    """Hidden layers of the deformation network (i3DMM: 8)."""
    reference_hidden_dim: Annotated[int, Bounds(ge=1)] = 512
    """Width of the reference shape network (i3DMM: 512)."""
    reference_layers: Annotated[int, Bounds(ge=1)] = 3
    """Hidden layers of the reference shape network (i3DMM: 3)."""
    reference_lr_scale: Annotated[float, Bounds(gt=0)] = 0.2
    """Learning rate of the reference network relative to train.lr (i3DMM: 1e-4 vs 5e-4)."""

    @property
    def latent_dim(self) -> int:
        """Latent dimension reported in Table 1 (identity + expression)."""
        return self.id_dim + self.exp_dim

    @property
    def components(self) -> dict[str, bool]:
        """None of the paper's components."""
        return {"multiscale": False, "local_experts": False}


@dataclass
class PaperModelConfig:
    """The paper's face model on ImFace's structure: Landmark-Net, an expression and an
    identity SE(3) deformation field (landmark-centred mini-nets), a template SDF and a
    code-conditioned SDF correction decoded by K local experts with a gating network
    (facerecon.models.paper). experts = 1 is ImFace's single correction network."""

    kind: ClassVar[MethodKind] = "implicit"

    name: Literal["paper"] = "paper"
    """Model class in the registry (facerecon.models.MODELS)."""
    id_dim: Annotated[int, Bounds(ge=1)] = 128
    """Size of the identity code z_id (paper: 128)."""
    exp_dim: Annotated[int, Bounds(ge=1)] = 128
    """Size of the expression code z_exp (paper: 128)."""
    pe_frequencies: Annotated[int, Bounds(ge=0)] = 6
    """L of the Fourier encoding of template-space points (eq. 4)."""
    landmark_hidden_dim: Annotated[int, Bounds(ge=1)] = 256
    """Width of Landmark-Net's three-layer MLPs."""
    deform_hidden_dim: Annotated[int, Bounds(ge=1)] = 128
    """Width of each deformation mini-net (a hyper-SIREN)."""
    deform_layers: Annotated[int, Bounds(ge=1)] = 3
    """Hidden layers of each mini-net."""
    hyper_hidden_dim: Annotated[int, Bounds(ge=1)] = 64
    """Width of the hypernetworks that make the mini-nets' weights from a code."""
    template_hidden_dim: Annotated[int, Bounds(ge=1)] = 256
    """Width of the template SDF network."""
    template_layers: Annotated[int, Bounds(ge=1)] = 4
    """Hidden layers of the template SDF network."""
    hidden_dim: Annotated[int, Bounds(ge=1)] = 128
    """Width of each correction expert."""
    hidden_layers: Annotated[int, Bounds(ge=1)] = 3
    """Hidden layers of each correction expert."""
    experts: Annotated[int, Bounds(ge=1)] = 8
    """Local experts (paper: 8 regions); 1 is ImFace's single correction network."""
    gate_hidden_dim: Annotated[int, Bounds(ge=1)] = 64
    """Width of the two-layer gating network."""
    multiscale_features: bool = True
    """Multi-scale image features f_img (section 2.1): the aligned crop through the
    encoder, sampled at each point's projection (eq. 1) and fused into h by a learned
    gate. Training, fitting and meshing then read each scan's view (images stage)."""
    trunk_stages: Annotated[int, Bounds(ge=2, le=4)] = 4
    """ResNet-50 stages of the trunk, all at output stride 8: 4 (2048 channels, the paper)
    or 2 (512 channels, a cheap CPU trunk)."""
    branch_channels: Annotated[int, Bounds(ge=1)] = 64
    """Channels of each of the 5 dense dilated branches (rates 1, 6, 12, 18, 24)."""
    image_channels: Annotated[int, Bounds(ge=1)] = 128
    """Channels of the fused multi-scale feature map M."""
    feature_resolution: Annotated[int, Bounds(ge=2)] = 32
    """Side of M after the bilinear resize, pixels."""
    fusion_dim: Annotated[int, Bounds(ge=1)] = 64
    """Width of the gated image feature appended to h(p)."""
    sampling_sigma: Annotated[float, Bounds(gt=0)] = 1.0
    """sigma of eq. 1's Gaussian 3x3 neighbourhood, in feature-map pixels."""
    backbone_weights: str = ""
    """A torchvision resnet50 state-dict file (ImageNet weights, say) loaded into the trunk;
    empty: random initialisation. Nothing is downloaded."""
    freeze_backbone_epochs: Annotated[int, Bounds(ge=0)] = 10
    """The trunk's weights stay fixed for this many training epochs (paper: 10)."""
    cache_frozen_trunk: bool = False
    """While the trunk is frozen its output per crop cannot change: keep it, so the ResNet
    runs once per scan instead of once per step. Costs C_trunk x (S/8)^2 floats per scan
    (2 MB for the demo's 2-stage trunk; 8 MB each for the paper's 5,323 scans), so off
    by default; the CPU demo turns it on."""

    @property
    def latent_dim(self) -> int:
        """Latent dimension reported in Table 1 (identity + expression)."""
        return self.id_dim + self.exp_dim

    @property
    def components(self) -> dict[str, bool]:
        """Which of the paper's components this model uses (Table 2's columns)."""
        return {"multiscale": self.multiscale_features, "local_experts": self.experts > 1}


#: Every registered model's config class, by its ``name``; facerecon.models.MODELS has the
#: same keys (a test checks it). A model section is parsed into the class its name selects.
MODEL_CONFIGS: dict[str, type] = {"implicit": ImplicitModelConfig,
                                  "i3dmm": I3dmmModelConfig,
                                  "paper": PaperModelConfig,
                                  "nearest_train": NearestTrainConfig,
                                  "facescape_bilinear": FaceScapeBilinearConfig}
ModelConfig = (ImplicitModelConfig | I3dmmModelConfig | PaperModelConfig | NearestTrainConfig
               | FaceScapeBilinearConfig)
DEFAULT_MODEL = "implicit"


@dataclass
class LossConfig:
    """Loss weights (ImFace's values; smooth/entropy are the paper's eq. 9 and 10)."""

    sdf: Annotated[float, Bounds(ge=0)] = 3000.0
    """L1 on predicted vs. true SDF (surface points: 0; space points: exact distance)."""
    normal: Annotated[float, Bounds(ge=0)] = 100.0
    """1 - cos(grad f, n) on surface points (paper eq. 7)."""
    eikonal: Annotated[float, Bounds(ge=0)] = 50.0
    """| |grad f| - 1 | on all points."""
    embedding: Annotated[float, Bounds(ge=0)] = 1.0e6
    """Gaussian prior on the codes: weight times mean(z^2) (paper eq. 8)."""
    smooth: Annotated[float, Bounds(ge=0)] = 0.0
    """Gating smoothness: weight times E||alpha(p) - alpha(p + delta)||^2 (paper eq. 9)."""
    entropy: Annotated[float, Bounds(ge=0)] = 0.0
    """Gating entropy: weight times E[-sum alpha log alpha] (paper eq. 10)."""
    smooth_sigma: Annotated[float, Bounds(gt=0)] = 0.01
    """Standard deviation of the neighbour offset delta for the smoothness term, in units."""
    landmark: Annotated[float, Bounds(ge=0)] = 1000.0
    """Landmark-Net: mean distance of the predicted expression landmarks to the scan's (ImFace)."""
    landmark_warp: Annotated[float, Bounds(ge=0)] = 100.0
    """Deformation fields carry the scan's landmarks onto the predicted neutral ones, and
    those onto the template's (ImFace's second landmark weight)."""
    eikonal_template: Annotated[float, Bounds(ge=0)] = 50.0
    """| |grad T| - 1 | of the template SDF in template space (ImFace: eikonal in both spaces)."""
    correction: Annotated[float, Bounds(ge=0)] = 100.0
    """Mean |delta| of the code-conditioned SDF correction (ImFace)."""
    disentangle: Annotated[float, Bounds(ge=0)] = 100.0
    """Mean expression displacement on neutral scans: the expression field stays still there."""
    gate_supervision: Annotated[float, Bounds(ge=0)] = 1000.0
    """Cross-entropy of the gate against each point's landmark region (the paper's
    landmark-guided regions; facerecon.models.regions). It trains the gate's weights only,
    so its size sets how fast the gate learns the regions against the SDF terms' pull on
    it, not the geometry (the paper gives no value; 10 left the gate near uniform)."""
    gate_supervision_epochs: Annotated[int, Bounds(ge=0)] = 0
    """Schedule: gate supervision acts in the first this many training epochs (0: always)."""
    deformation: Annotated[float, Bounds(ge=0)] = 1.5
    """Deformation models (i3DMM): weight times mean |d(p)|^2 of the displacement field (i3DMM
    regularises its deformation; 1.5 matches its 1e-4 x mean |d| at |d| = 10 mm, given sdf)."""
    gradients: GradientMode = "reverse"
    """How d sdf / d p for the normal and eikonal terms is computed. 'reverse': autograd.grad
    with create_graph, so the step's backward is a double backward (which torch.compile
    refuses). 'forward': three Jacobian-vector products under vmap (one per axis, at every
    point at once), so the backward is first order and `train.compile` can take the step;
    the same values, about twice the eager cost on a CPU (BENCHMARKS.md)."""


@dataclass
class TrainConfig:
    """Auto-decoder training: decoder and codes are optimised jointly."""

    epochs: Annotated[int, Bounds(ge=1)] = 1500
    """Passes over all training scans."""
    scans_per_batch: Annotated[int, Bounds(ge=1)] = 72
    """Scans in one optimisation step."""
    points_per_scan: Annotated[int, Bounds(ge=1)] = 16_384
    """Points drawn per scan per step from the union of surface and space samples."""
    surface_fraction: Annotated[float, Bounds(ge=0, le=1)] = 0.5
    """Share of the drawn points taken from the surface samples."""
    lr: Annotated[float, Bounds(gt=0)] = 1.0e-4
    """Adam learning rate of the decoder."""
    code_lr: Annotated[float, Bounds(gt=0)] = 1.0e-3
    """Adam learning rate of the latent codes."""
    decay_start_epoch: Annotated[int, Bounds(ge=0)] = 200
    """Epoch after which the learning rate decays."""
    decay_every_epochs: Annotated[int, Bounds(ge=1)] = 10
    """The learning rate is multiplied by `decay_factor` every this many epochs."""
    decay_factor: Annotated[float, Bounds(gt=0, le=1)] = 0.95
    """Step decay factor."""
    checkpoint_every_epochs: Annotated[int, Bounds(ge=1)] = 50
    """A resumable checkpoint is written this often (and at the end)."""
    seed: Annotated[int, Bounds(ge=0)] = 0
    """Seed of weights, codes and batches."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """Arithmetic of the training and fitting steps. 'bf16': forward pass and losses under
    autocast in bfloat16 (weights, gradients and optimiser state stay float32), with TF32
    matmuls on CUDA; on CPU it is CPU autocast, faster where the CPU has bfloat16
    instructions (AVX512-BF16, AMX). 'fp32': exact float32, TF32 off, no autocast (bit for
    bit reproducible on CPU). 'auto': 'bf16' on CUDA, 'fp32' on CPU."""
    compile: bool = False
    """torch.compile the loss of each training step (forward pass and every loss term; the
    backward follows). Needs `loss.gradients: forward`. Compiling takes minutes; for GPU
    runs, where it may pay (measure with benchmarks/bench_train_speed.py)."""


@dataclass
class FitConfig:
    """Test-time fitting: decoder frozen, new codes per test scan."""

    iterations: Annotated[int, Bounds(ge=1)] = 1500
    """Optimisation steps per scan."""
    points_per_scan: Annotated[int, Bounds(ge=1)] = 16_384
    """Points drawn per step."""
    lr: Annotated[float, Bounds(gt=0)] = 1.0e-4
    """Adam learning rate of the codes (ImFace: 1e-4; DeepSDF: 5e-3)."""
    code_init: Literal["mean", "random"] = "mean"
    """'mean': start at the mean of the training codes (ImFace++); 'random': N(0, 0.01^2)."""
    seed: Annotated[int, Bounds(ge=0)] = 0
    """Seed of the code initialisation and the point draws."""
    group: Literal["scan", "subject", "all"] = "subject"
    """Test scans fitted by one job, as one batched problem: each 'scan' alone, each
    test 'subject''s scans together, or 'all' test scans at once (a GPU). Fitted codes
    stay one file per scan; rerunning a scan refits its group. Set once, in the shared
    ``fit`` section (the workflow's fit jobs follow it)."""
    chunk_scans: Annotated[int, Bounds(ge=0)] = 0
    """At most this many scans per batched problem inside a job, run one after another
    (memory bound; 0: the whole group at once). With share_identity a subject's scans
    stay in one chunk."""
    share_identity: bool = False
    """One identity code per test subject, shared by its scans (off, as in ImFace: each
    scan its own); needs group 'subject' or 'all'."""
    checkpoint_every_iterations: Annotated[int, Bounds(ge=1)] = 250
    """Resumable checkpoint interval of a fit (``<codes>.pt.ckpt``)."""


@dataclass
class MeshConfig:
    """Marching cubes on the fitted SDF."""

    resolution: Annotated[int, Bounds(ge=8)] = 256
    """Grid points per axis over [-1, 1]^3 (PROTOCOL: 256)."""
    coarse_resolution: Annotated[int, Bounds(ge=0)] = 64
    """Coarse pass of the narrow band on a CPU: only cells near its zero level are evaluated
    at full resolution (0: every grid point in the crop sphere; on a GPU every one is,
    whatever this says)."""
    chunk_points: Annotated[int, Bounds(ge=1)] = 65_536
    """Points per network call (memory bound)."""


@dataclass
class EvaluateConfig:
    """Chamfer / F-score against the pseudo-watertight ground truth (PROTOCOL)."""

    samples: Annotated[int, Bounds(ge=1)] = 150_000
    """Area-uniform samples per mesh."""
    threshold_mm: Annotated[float, Bounds(gt=0)] = 1.0
    """F-score distance threshold."""
    icp: Literal["reference", "rematch", "none"] = "reference"
    """Rigid ICP of the reconstruction to the ground truth before measuring: 'reference'
    (ImFace's, behind the published numbers): match each reconstruction point once to its
    nearest ground-truth point, then run ICP against that matched subset only, stopping when
    the mean error changes by < 0.1 mm (at most 20 iterations); 'rematch': ICP against the
    whole ground-truth sample, stopping when no point moves 1e-4 mm (at most 20 iterations);
    'none': no alignment."""
    seed: Annotated[int, Bounds(ge=0)] = 0
    """Seed of the surface samples."""


@dataclass
class FiguresConfig:
    """Figures of the reconstructions: the comparison grid, error maps and ablation panel."""

    columns: Annotated[int, Bounds(ge=1)] = 6
    """Test scans with non-neutral expressions shown as columns of the comparison grid and
    the error maps (at most; chosen evenly over the scans sorted by expression, then
    subject)."""
    ablation_columns: Annotated[int, Bounds(ge=1)] = 3
    """Test scans shown in the ablation panel (chosen the same way)."""
    error_max_mm: Annotated[float, Bounds(gt=0)] = 3.0
    """Top of the error colour scale: distances from 0 to this many mm span the colour bar,
    larger ones are clipped to its top colour."""
    size_px: Annotated[int, Bounds(ge=64)] = 192
    """Side of each rendered panel before cropping to the faces, pixels."""


@dataclass
class MethodConfig:
    """One row of a table: a model with its training and fitting settings."""

    model: ModelConfig = field(default_factory=ImplicitModelConfig)
    """Architecture (its class is chosen by `name`)."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Loss weights, shared by training and fitting."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Training schedule."""
    fit: FitConfig = field(default_factory=FitConfig)
    """Fitting schedule."""

    @property
    def kind(self) -> MethodKind:
        """'implicit' (train -> fit -> mesh) or 'mesh' (one fitting step writes the mesh)."""
        return self.model.kind

    @property
    def dim(self) -> int:
        """Latent dimension reported in Table 1."""
        return self.model.latent_dim

    @property
    def ablation_flags(self) -> dict[str, bool]:
        """Which of the paper's components this method uses (Table 2 columns)."""
        return {**self.model.components,
                "regularization": self.loss.smooth > 0 or self.loss.entropy > 0}


@dataclass
class WorkflowConfig:
    """Everything `config.yaml` may say."""

    @property
    def split(self) -> SplitConfig:
        """The train / test split of the configured dataset."""
        return getattr(self, self.dataset).split

    dataset: Literal["synthetic", "ict", "facescape"] = "ict"
    """Data source: 'ict' (ICT-FaceKit identities and blendshapes from the model shipped
    with the package, the default), 'synthetic' (procedural heads built offline) or
    'facescape' (the user's licensed archives or links)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Torch device for training, fitting and meshing; 'auto' takes CUDA when present."""
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    """Options of the synthetic dataset."""
    ict: IctConfig = field(default_factory=IctConfig)
    """Options of the ICT-FaceKit benchmark."""
    facescape: FacescapeConfig = field(default_factory=FacescapeConfig)
    """Options of FaceScape."""
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    """Alignment, crop and hole filling."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """SDF samples."""
    model: ModelConfig = field(default_factory=ImplicitModelConfig)
    """Model defaults of every method whose model has this `name`."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Loss defaults of every method."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Training defaults of every method."""
    fit: FitConfig = field(default_factory=FitConfig)
    """Fitting defaults of every method."""
    mesh: MeshConfig = field(default_factory=MeshConfig)
    """Mesh extraction."""
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    """Metrics."""
    figures: FiguresConfig = field(default_factory=FiguresConfig)
    """Figures of the reconstructions."""
    methods: dict[str, dict[str, Any]] = field(default_factory=lambda: {"ours": {}})
    """Method name -> overrides of the model/loss/train/fit sections."""
    table1: list[str] = field(default_factory=list)
    """Methods in Table 1, in order (empty: all methods)."""
    table2: list[str] = field(default_factory=list)
    """Methods in Table 2 (the ablation), in order."""


# --------------------------------------------------------------------------- parsing


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass: the string literal under each field."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _model_class(value: Any, where: str) -> type:
    """The config class a model section selects by its ``name``."""
    name = value.get("name", DEFAULT_MODEL) if isinstance(value, dict) else None
    if name not in MODEL_CONFIGS:
        raise InputError(f"{where}.name: unknown model {name!r}; registered: "
                         f"{sorted(MODEL_CONFIGS)}")
    return MODEL_CONFIGS[name]


def _check_value(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a type hint, converting ints to floats where floats are due."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *extras = typing.get_args(hint)
        value = _check_value(value, base, where)
        for extra in extras:
            if isinstance(extra, Bounds):
                extra.check(value, where)
        return value
    if hint == ModelConfig:
        if not isinstance(value, dict):
            raise InputError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(_model_class(value, where), value, where)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise InputError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(hint, value, where)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise InputError(f"{where}: {value!r} is not one of {list(typing.get_args(hint))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise InputError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_check_value(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise InputError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # subject ids may be written as numbers
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise InputError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys, wrong types and values out of
    range are errors naming the key."""
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(names)}")
    kwargs = {k: _check_value(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``: mappings merge recursively, the rest replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


METHOD_SECTIONS = ("model", "loss", "train", "fit")


def method_config(config: dict[str, Any], method: str) -> MethodConfig:
    """Resolve one method: the shared model/loss/train/fit sections plus its overrides.

    The shared ``model`` section applies only to methods of the same model ``name``:
    a method of another model starts from that model's own defaults.
    """
    methods = config.get("methods", {})
    if method not in methods:
        raise InputError(f"config: unknown method {method!r}; configured: {sorted(methods)}")
    overrides = methods[method] or {}
    base = {s: config.get(s) or {} for s in METHOD_SECTIONS}
    own_name = (overrides.get("model") or {}).get("name", base["model"].get("name", DEFAULT_MODEL))
    if own_name != base["model"].get("name", DEFAULT_MODEL):
        base["model"] = {}
    return from_dict(MethodConfig, deep_merge(base, overrides), f"config.methods.{method}")


def load_workflow_config(config: dict[str, Any]) -> WorkflowConfig:
    """Validate a whole workflow config (as Snakemake holds it), every method included."""
    cfg = from_dict(WorkflowConfig, config)
    for name in cfg.methods:
        fit = method_config(config, name).fit
        if fit.group != cfg.fit.group:
            raise InputError(f"config.methods.{name}.fit.group: {fit.group!r} differs from "
                             f"fit.group {cfg.fit.group!r}; the workflow groups every "
                             "method's fit jobs alike (set it in the shared fit section)")
        if fit.share_identity and fit.group == "scan":
            where = f"config.methods.{name}.fit" if "fit" in (config["methods"][name] or {}) \
                else "config.fit"
            raise InputError(f"{where}.share_identity: needs group 'subject' or 'all' (a "
                             "subject's scans must be fitted together), not 'scan'")
    for table in ("table1", "table2"):
        unknown = [m for m in getattr(cfg, table) if m not in cfg.methods]
        if unknown:
            raise InputError(f"config.{table}: unknown method(s) {unknown}; "
                             f"configured: {sorted(cfg.methods)}")
    where = f"config.{cfg.dataset}.split"
    overlap = set(cfg.split.train_subjects) & set(cfg.split.test_subjects)
    if overlap:
        raise InputError(f"{where}: subjects {sorted(overlap)} are both train and test")
    for key in ("train_subjects", "test_subjects", "train_expressions", "test_expressions"):
        if not getattr(cfg.split, key):
            raise InputError(f"{where}.{key}: must not be empty")
    if cfg.dataset in ("synthetic", "ict"):
        n_built = getattr(cfg, cfg.dataset).subjects
        built = {str(i) for i in range(1, n_built + 1)}
        unbuilt = sorted(set(cfg.split.train_subjects + cfg.split.test_subjects) - built)
        if unbuilt:
            raise InputError(f"{where}: subjects {unbuilt} are not among the "
                             f"{n_built} {cfg.dataset} subjects (1..{n_built})")
    if cfg.dataset == "facescape":
        fs = cfg.facescape
        if not fs.archives and not fs.urls:
            raise InputError("config.facescape: give the TU archives you have (archives) or "
                             "your per-licence links (urls)")
        if fs.sha256 and len(fs.sha256) != len(fs.urls):
            raise InputError(f"config.facescape.sha256: {len(fs.sha256)} checksums for "
                             f"{len(fs.urls)} urls")
    for key in ("train_expressions", "test_expressions"):
        unknown = [e for e in getattr(cfg.split, key) if e not in EXPRESSIONS]
        if unknown:
            raise InputError(f"{where}.{key}: {unknown} are not FaceScape expressions (1..20)")
    return cfg


# --------------------------------------------------------------------------- stage config

#: What a stage's JSON may hold: the workflow's sections, plus the method's and dataset's name.
STAGE_SECTIONS: dict[str, Any] = {
    "method": str,
    "dataset": str,
    "preprocess": PreprocessConfig,
    "sampling": SamplingConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "train": TrainConfig,
    "fit": FitConfig,
    "mesh": MeshConfig,
    "evaluate": EvaluateConfig,
    "figures": FiguresConfig,
}
#: The sections that produce a trained model: its data and its method. A trained-model file
#: stores exactly these, and fitting refuses a file whose sections differ from its own.
TRAINING_SECTIONS = ("dataset", "preprocess", "sampling", "model", "loss", "train")


def to_json(obj: Any) -> str:
    """Compact, key-sorted JSON of a dataclass or of a mapping of dataclasses and strings."""
    data = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else {
        k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in obj.items()}
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def stage_json(cfg: WorkflowConfig, sections: tuple[str, ...], method: str | None = None,
               resolved: MethodConfig | None = None) -> str:
    """The resolved ``sections`` a stage reads, as compact JSON (a rule's params).

    ``cfg`` is the validated workflow config; method sections (model, loss, train, fit)
    come from ``resolved``, the config of ``method`` (:func:`method_config`); 'method' and
    'dataset' are names. Passed as a string param so that Snakemake records it and reruns
    exactly the stages whose sections changed. Validation is the caller's, done once.
    """
    out: dict[str, Any] = {}
    for name in sections:
        if name == "method":
            out[name] = method
        elif name == "dataset":
            out[name] = cfg.dataset
        elif name in METHOD_SECTIONS:
            out[name] = getattr(resolved, name)
        else:
            out[name] = getattr(cfg, name)
    return to_json(out)


def _json_object(text: str, where: str) -> dict[str, Any]:
    """A JSON object from ``text`` ('' is {}); InputError naming ``where`` otherwise."""
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object of sections, got {data!r}")
    return data


def method_from_json(text: str, where: str = "method") -> MethodConfig:
    """A MethodConfig from the JSON of its sections (as :func:`to_json` writes it)."""
    return from_dict(MethodConfig, _json_object(text, where), where)


def parse_stage_json(text: str, sections: tuple[str, ...], where: str = "--config"
                     ) -> dict[str, Any]:
    """Inverse of :func:`stage_json`: each of ``sections`` as its dataclass (defaults for
    those absent); a section the stage does not read is an error."""
    data = _json_object(text, where)
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise InputError(f"{where}: unexpected section(s) {unknown}; this stage reads "
                         f"{list(sections)}")
    out: dict[str, Any] = {}
    for name in sections:
        hint = STAGE_SECTIONS[name]
        if hint is str:
            out[name] = _check_value(data.get(name, ""), str, f"{where}.{name}")
        elif hint == ModelConfig:
            out[name] = _check_value(data.get(name, {}), hint, f"{where}.{name}")
        else:
            out[name] = from_dict(hint, data.get(name, {}), f"{where}.{name}")
    return out


def add_config_arguments(parser: argparse.ArgumentParser, sections: tuple[str, ...],
                         flags: tuple[str, ...] = ()) -> None:
    """Add ``--config JSON`` (the sections a stage reads; what the workflow passes) and, for
    the sections in ``flags``, one option per field, generated from the dataclass (its
    docstring as help, its default shown), for use by hand. Options override the JSON."""
    parser.add_argument("--config", default="", metavar="JSON",
                        help=f"the stage's config sections {list(sections)} as one JSON object; "
                             "absent keys take their defaults")
    seen: dict[str, str] = {}
    for section in flags:
        cls = STAGE_SECTIONS[section]
        docs = field_docs(cls)
        default = cls()
        for f in dataclasses.fields(cls):
            option = "--" + f.name.replace("_", "-")
            if option in seen:
                raise ValueError(f"{option} is a field of both {seen[option]} and {section}")
            seen[option] = section
            hint = _hints(cls)[f.name]
            base = typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint
            kwargs: dict[str, Any] = {
                "dest": f"{section}.{f.name}", "default": argparse.SUPPRESS,
                "help": f"{docs.get(f.name, '')} (default: {getattr(default, f.name)!r})"}
            if base is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            elif typing.get_origin(base) is list:
                item = typing.get_args(base)[0]
                item = typing.get_args(item)[0] if typing.get_origin(item) is Annotated else item
                kwargs.update(nargs="+", type=item)
            elif typing.get_origin(base) is Literal:
                kwargs["choices"] = list(typing.get_args(base))
            else:
                kwargs["type"] = _flag_type(hint, option)
            parser.add_argument(option, **kwargs)


def _flag_type(hint: Any, option: str) -> Any:
    """argparse type of a scalar field: parse, then check its bounds (an argparse error)."""
    base = typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint

    def parse(text: str) -> Any:
        try:
            value = base(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a valid {base.__name__}: {text!r}") from None
        try:
            _check_value(value, hint, option)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{option}: ")) from None
        return value

    return parse


def parse_config_arguments(args: argparse.Namespace, sections: tuple[str, ...]
                           ) -> dict[str, Any]:
    """The stage's sections from ``--config`` with the generated options applied on top."""
    data = _json_object(args.config, "--config")
    for key, value in vars(args).items():
        if "." in key:
            section, name = key.split(".", 1)
            data.setdefault(section, {})[name] = value
    return parse_stage_json(json.dumps(data), sections)


# --------------------------------------------------------------------------- schema


def _schema_for_hint(hint: Any) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *extras = typing.get_args(hint)
        schema = _schema_for_hint(base)
        for extra in extras:
            if isinstance(extra, Bounds):
                schema.update(extra.schema())
        return schema
    if hint == ModelConfig:
        return {"oneOf": [schema_for(cls) for cls in MODEL_CONFIGS.values()]}
    if dataclasses.is_dataclass(hint):
        return schema_for(hint)
    if origin is Literal:
        return {"enum": list(typing.get_args(hint))}
    if origin is list:
        return {"type": "array", "items": _schema_for_hint(typing.get_args(hint)[0])}
    if origin is dict:
        return {"type": "object"}
    # str accepts integers too: subject ids are often written as numbers in YAML
    names = {bool: "boolean", int: "integer", float: "number", str: ["string", "integer"]}
    return {"type": names[hint]}


def schema_for(cls: type) -> dict[str, Any]:
    """JSON schema of a dataclass: types, bounds, defaults and the field docstrings as
    descriptions. A model class's `name` is required when other models exist, so that
    the schema's alternatives are told apart (an absent name means 'implicit')."""
    hints = _hints(cls)
    docs = field_docs(cls)
    default = cls()
    props: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        prop = _schema_for_hint(hints[f.name])
        prop["description"] = docs.get(f.name, "")
        value = getattr(default, f.name)
        prop["default"] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        props[f.name] = prop
    schema = {
        "type": "object",
        "description": (cls.__doc__ or "").strip(),
        "properties": props,
        "additionalProperties": False,
    }
    if cls in MODEL_CONFIGS.values() and cls is not MODEL_CONFIGS[DEFAULT_MODEL]:
        schema["required"] = ["name"]
    return schema


def workflow_schema() -> dict[str, Any]:
    """The JSON schema of `config.yaml`."""
    schema = schema_for(WorkflowConfig)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def main(argv: list[str] | None = None) -> None:
    """Write the JSON schema of config.yaml (generated from the dataclasses above)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--write-schema", type=Path, required=True, help="output path")
    args = parser.parse_args(argv)
    from facerecon.io import write_text  # the command line only: validation stays a leaf

    write_text(args.write_schema, json.dumps(workflow_schema(), indent=2) + "\n")


if __name__ == "__main__":
    run_cli(main)
