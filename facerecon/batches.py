"""SDF samples of a scan in memory, point draws, one optimisation step, torch set-up.

Shared by training and fitting so both see the data, and take a step (in the same
arithmetic: :class:`Precision`), the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from facerecon.config import LossConfig
from facerecon.images.view import read_view
from facerecon.io import N_LANDMARKS, InputError, load_npz
from facerecon.models import Conditioning, Model

SAMPLE_KEYS = (
    "surface_points",
    "surface_normals",
    "space_points",
    "space_sdf",
    "landmarks",
    "subject",
    "expression",
    "radius_mm",
)


@dataclass
class ScanSamples:
    """One scan's samples as tensors, in units of radius_mm."""

    subject: str
    expression: str
    radius_mm: float
    surface_points: torch.Tensor  # (S, 3)
    surface_normals: torch.Tensor  # (S, 3)
    space_points: torch.Tensor  # (M, 3)
    space_sdf: torch.Tensor  # (M,)
    landmarks: torch.Tensor  # (68, 3), units
    image: torch.Tensor | None = None  # (3, S, S) aligned crop in [0, 1], when views are given
    camera: torch.Tensor | None = None  # (2, 4): unit-sphere points -> crop pixels

    @property
    def is_neutral(self) -> bool:
        """Whether this is the subject's neutral scan (FaceScape expression 1)."""
        return self.expression == "1_neutral"


def load_scan_samples(path: str | Path) -> ScanSamples:
    """Read a sample file written by facerecon.sample; errors name the file."""
    data = load_npz(path, SAMPLE_KEYS)
    arrays = {k: np.asarray(data[k]) for k in SAMPLE_KEYS[:4]}
    for key, array in arrays.items():
        if not np.issubdtype(array.dtype, np.number) or array.ndim == 0:
            raise InputError(f"{path}: {key} is not a numeric array (dtype {array.dtype}, "
                             f"shape {array.shape})")
    n_surface, n_space = len(arrays["surface_points"]), len(arrays["space_points"])
    expected = {"surface_points": (n_surface, 3), "surface_normals": (n_surface, 3),
                "space_points": (n_space, 3), "space_sdf": (n_space,)}
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            raise InputError(f"{path}: {key} has shape {arrays[key].shape}, expected {shape} "
                             f"(surface_points {arrays['surface_points'].shape}, space_points "
                             f"{arrays['space_points'].shape})")
    landmarks = np.asarray(data["landmarks"])
    if landmarks.shape != (N_LANDMARKS, 3) or not np.issubdtype(landmarks.dtype, np.number):
        raise InputError(f"{path}: landmarks have shape {landmarks.shape}, expected "
                         f"({N_LANDMARKS}, 3)")
    tensors = {k: torch.from_numpy(a.astype(np.float32)) for k, a in arrays.items()}
    tensors["landmarks"] = torch.from_numpy(landmarks.astype(np.float32))
    if n_surface == 0 or n_space == 0:
        raise InputError(f"{path}: no surface or no space samples")
    for key, value in tensors.items():
        if not torch.isfinite(value).all():
            raise InputError(f"{path}: {key} contains NaN or infinite values")
    return ScanSamples(
        subject=str(data["subject"]),
        expression=str(data["expression"]),
        radius_mm=float(data["radius_mm"]),
        **tensors,
    )


def add_view_arguments(parser: argparse.ArgumentParser) -> None:
    """``--views`` and ``--transforms``: the images stage's folder and the preprocess record
    of each scan, in the order of ``--samples`` (for models that read images)."""
    parser.add_argument("--views", type=Path, nargs="+", default=[], metavar="DIR",
                        help="prepared view folders (crop.png, camera.json), one per sample file")
    parser.add_argument("--transforms", type=Path, nargs="+", default=[], metavar="JSON",
                        help="preprocess records (<scan>.json), one per sample file")


def load_scans(sample_paths: list[Path], views: list[Path], transforms: list[Path]
               ) -> list[ScanSamples]:
    """Sample files, each with its view when views are given (same order, same count)."""
    if len(views) != len(transforms) or (views and len(views) != len(sample_paths)):
        raise InputError(f"--views ({len(views)}) and --transforms ({len(transforms)}) must "
                         f"both be absent or give one per sample file ({len(sample_paths)})")
    scans = [load_scan_samples(p) for p in sample_paths]
    for scan, view, transform in zip(scans, views, transforms, strict=False):
        image, camera = read_view(view, transform, scan.radius_mm)
        scan.image, scan.camera = torch.from_numpy(image), torch.from_numpy(camera)
    return scans


def conditioning(codes: dict[str, torch.Tensor], scans: list[ScanSamples],
                 device: torch.device) -> Conditioning:
    """The batch's conditioning: codes, and the scans' crops and cameras when they have them."""
    if scans[0].image is None:
        return Conditioning(codes)
    return Conditioning(codes, image=torch.stack([s.image for s in scans]).to(device),
                        camera=torch.stack([s.camera for s in scans]).to(device))


def samples_digest(scans: list[ScanSamples]) -> str:
    """SHA-256 over the scans' names, crop radius and sample arrays, in (subject,
    expression) order: equal exactly when the training data are equal."""
    digest = hashlib.sha256()
    for scan in sorted(scans, key=lambda s: (s.subject, s.expression)):
        digest.update(f"{scan.subject}/{scan.expression}/{scan.radius_mm!r};".encode())
        for tensor in (scan.surface_points, scan.surface_normals, scan.space_points,
                       scan.space_sdf):
            digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def draw_points(
    scans: list[ScanSamples],
    points_per_scan: int,
    surface_fraction: float,
    generator: torch.Generator,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """Draw the same number of points from each scan (with replacement) for one step.

    Returns 'surface_points' (B,S,3), 'surface_normals' (B,S,3), 'space_points' (B,M,3),
    'space_sdf' (B,M), the scans' 'landmarks' (B,68,3) and whether each is 'neutral' (B,)
    on ``device``, with S = round(points_per_scan * surface_fraction).
    """
    n_surface = int(round(points_per_scan * surface_fraction))
    n_space = points_per_scan - n_surface
    parts: dict[str, list[torch.Tensor]] = {
        "surface_points": [], "surface_normals": [], "space_points": [], "space_sdf": []
    }
    for scan in scans:
        i = torch.randint(len(scan.surface_points), (n_surface,), generator=generator)
        j = torch.randint(len(scan.space_points), (n_space,), generator=generator)
        parts["surface_points"].append(scan.surface_points[i])
        parts["surface_normals"].append(scan.surface_normals[i])
        parts["space_points"].append(scan.space_points[j])
        parts["space_sdf"].append(scan.space_sdf[j])
    batch = {k: torch.stack(v).to(device) for k, v in parts.items()}
    batch["landmarks"] = torch.stack([scan.landmarks for scan in scans]).to(device)
    batch["neutral"] = torch.tensor([scan.is_neutral for scan in scans], device=device)
    return batch


@dataclass(frozen=True)
class Precision:
    """The arithmetic of the forward passes of training and fitting: TrainConfig.precision
    with 'auto' resolved for the device (see :meth:`setup`)."""

    name: Literal["fp32", "bf16"]
    device_type: str  # torch.autocast's device type: 'cuda' or 'cpu'

    @classmethod
    def setup(cls, requested: str, device: torch.device) -> Precision:
        """Resolve ``requested`` ('auto', 'fp32', 'bf16') for ``device`` and set CUDA's TF32
        switches to match: on for 'bf16' (matmuls and cuDNN convolutions), off for 'fp32',
        which is then exact float32 on either device. 'auto' keeps CPU runs in fp32, the
        bit-for-bit reference; an explicit 'bf16' on CPU is CPU autocast (measured on an AMD
        EPYC with AVX512-BF16, 1 thread: 2-2.5x faster per step for a 128-wide implicit
        network, no gain at test sizes)."""
        name = requested if requested != "auto" else (
            "bf16" if device.type == "cuda" else "fp32")
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = name == "bf16"
            torch.backends.cudnn.allow_tf32 = name == "bf16"
        return cls(name, device.type)

    @property
    def tf32(self) -> bool:
        """Whether float32 matmuls and convolutions outside autocast run as TF32."""
        return self.name == "bf16" and self.device_type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context of a forward pass (``Model.prepare`` and ``get_loss_dict``): bfloat16
        autocast for 'bf16', none at all for 'fp32'."""
        if self.name == "bf16":
            return torch.autocast(self.device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


#: A model's ``get_loss_dict`` (batch, conditioning, weights) -> weighted terms, compiled or not.
LossFn = Callable[[dict[str, torch.Tensor], Conditioning, LossConfig], dict[str, torch.Tensor]]


@functools.cache  # once per process: a second registration would be refused
def _zero_tensors_as_zeros() -> None:
    """Work around torch 2.13's inductor for forward mode's zero tangents: it runs
    aten._efficientzerotensor eagerly and may then reuse that immutable ZeroTensor's buffer
    as a matmul output ("ZeroTensors are immutable"); decompose it into plain zeros."""
    from torch._inductor import decomposition  # heavy: only when compiling

    op = torch.ops.aten._efficientzerotensor
    decomposition.decompositions.pop(op.default, None)
    decomposition.register_decomposition(op)(
        lambda size, dtype=None, layout=None, device=None, pin_memory=None: torch.zeros(
            size, dtype=dtype, device=device))


def loss_function(model: Model, compile_loss: bool) -> LossFn:
    """The model's ``get_loss_dict``, through torch.compile if asked (training's
    ``train.compile``; needs ``loss.gradients: forward``, whose backward is first order)."""
    if not compile_loss:
        return model.get_loss_dict
    _zero_tensors_as_zeros()
    return torch.compile(model.get_loss_dict)


def optimisation_step(loss_fn: LossFn, batch: dict[str, torch.Tensor], cond: Conditioning,
                      weights: LossConfig, optimizer: torch.optim.Optimizer,
                      precision: Precision) -> dict[str, float]:
    """One step on a model's loss dict (training and fitting alike); returns the total
    'loss' and each weighted term as floats.

    The loss dict is computed under ``precision.autocast()`` (with reverse-mode gradients,
    its double backward for the gradient terms included); its terms are cast to float32
    before they are summed, and the backward pass runs outside autocast, as torch
    recommends."""
    with precision.autocast():
        terms = loss_fn(batch, cond, weights)
    terms = {k: v.float() for k, v in terms.items()}
    loss = sum(terms.values())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"loss": loss.item(), **{k: v.item() for k, v in terms.items()}}


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--threads``, for every stage that runs torch (see :func:`setup_torch`)."""
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="torch device; 'auto' takes CUDA when present")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")


def setup_torch(device: str, threads: int, seed: int) -> torch.device:
    """Seed torch, set its CPU threads, resolve 'auto' to cuda or cpu.

    (numpy code in this package takes explicit, seeded Generators.)
    """
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, threads))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("device: 'cuda' requested but torch sees no CUDA device")
    return torch.device(device)
