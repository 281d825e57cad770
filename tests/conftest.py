"""Shared fixtures: a small synthetic dataset and a FaceScape-style archive of it."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from facerecon.data import synthetic

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
