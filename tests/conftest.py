"""Shared fixtures: a small synthetic dataset and a FaceScape-style archive of it."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from facerecon.data import synthetic
from facerecon.io import save_npz
from facerecon.sample import sphere_samples

#: Subjects and expressions of the shared synthetic scans (neutral and jaw_left).
SYNTHETIC_SUBJECTS, SYNTHETIC_EXPRESSIONS = (1, 2), (1, 5)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 subjects x 2 expressions of synthetic scans in FaceScape's layout (~7 MB each)."""
    root = tmp_path_factory.mktemp("synthetic")
    for subject in SYNTHETIC_SUBJECTS:
        synthetic.build_subject(root, subject, 0, SYNTHETIC_EXPRESSIONS)
    return root


@pytest.fixture(scope="session")
def facescape_zip(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic scans packed like ``facescape_trainset_*.zip``: under one top-level
    folder, with the texture, material and displacement-map files a real archive has."""
    path = tmp_path_factory.mktemp("archives") / "facescape_trainset_001_100.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for obj in sorted(synthetic_root.glob("*/models_reg/*.obj")):
            subject, stem = obj.parent.parent.name, obj.stem
            top = f"facescape_trainset_001_100/{subject}"
            zf.write(obj, f"{top}/models_reg/{stem}.obj")
            zf.writestr(f"{top}/models_reg/{stem}.obj.mtl", "newmtl m\n")
            zf.writestr(f"{top}/models_reg/{stem}.jpg", b"\xff\xd8 not a real jpeg")
            zf.writestr(f"{top}/dpmap/{stem}.png", b"\x89PNG not a real png")
    return path


def write_sphere_samples(path: Path, subject: str = "1", expression: str = "1_neutral",
                         radius: float = 0.4, seed: int = 0, surface_points: int = 4000,
                         uniform_points: int = 2000, landmarks: np.ndarray | None = None
                         ) -> None:
    """A sample file of a sphere of ``radius`` units (facerecon.sample.sphere_samples), with
    the given landmarks (units) instead of zeros when given."""
    arrays = sphere_samples(radius, surface_points, uniform_points, seed)
    if landmarks is not None:
        arrays["landmarks"] = np.asarray(landmarks, np.float32)
    save_npz(path, **arrays, subject=np.array(subject), expression=np.array(expression))


def perturb(module: nn.Module, scale: float, seed: int) -> None:
    """Add N(0, scale^2) noise to every parameter, so that no weight is left at a special
    initial value (zero output layers, zero code columns)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def random_directions(n: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(n, 3) unit vectors."""
    d = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return d / d.norm(dim=-1, keepdim=True)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one thread for the test (small models: threads only add overhead and
    nondeterminism), restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
