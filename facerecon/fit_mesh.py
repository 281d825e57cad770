"""Fit a mesh-kind method to one test scan: the method answers with a mesh directly.

    python -m facerecon.fit_mesh --config JSON --target SHEET.ply --train A.ply B.ply ... \
        [--landmarks SHEET.landmarks.txt --train-landmarks A.landmarks.txt ...] --out mesh.ply

``--config`` holds the method's name, its ``model`` section, whose ``name`` picks the
method in ``facerecon.models.MESH_METHODS``, and the ``preprocess`` section (the crop
sphere's radius). Each method is a function ``(MeshFitInputs, model config) -> (mesh,
details)`` (:mod:`facerecon.models.mesh_inputs`), details being a list whose first items
are logged. The target is the test scan's pseudo-watertight sheet; the training sheets
are what the method may draw on; the 68 landmarks of each (crop frame, mm) are passed to
methods that read them (facescape_bilinear does; nearest_train does not). Sheets are
named ``<subject>/<expression>`` from their paths (``.../<subject>/<expression>.ply``).
The output is a mesh in millimetres in the crop frame, like ``facerecon.mesh``'s, so
evaluation and tables treat both kinds alike.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from facerecon.config import add_config_arguments, parse_config_arguments
from facerecon.io import InputError, load_landmarks, load_mesh, run_cli, save_mesh
from facerecon.models import MESH_METHODS
from facerecon.models.mesh_inputs import MeshFitInputs, MeshScan

#: What the fit_mesh stage reads.
FIT_MESH_STAGE = ("method", "model", "preprocess")


def scan(sheet: Path, landmarks: Path | None) -> MeshScan:
    """A preprocessed scan, named ``<subject>/<expression>`` from its sheet's path."""
    return MeshScan(f"{sheet.parent.name}/{sheet.stem}", load_mesh(sheet),
                    None if landmarks is None else load_landmarks(landmarks))


def main(argv: list[str] | None = None) -> None:
    """Command line: target sheet + training sheets -> reconstructed mesh."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, FIT_MESH_STAGE)
    parser.add_argument("--target", type=Path, required=True, help="the test scan's sheet (mm)")
    parser.add_argument("--train", type=Path, nargs="+", required=True,
                        help="the training scans' sheets (mm)")
    parser.add_argument("--landmarks", type=Path,
                        help="the test scan's 68 landmarks (crop frame, mm), for methods that "
                             "read them")
    parser.add_argument("--train-landmarks", type=Path, nargs="+",
                        help="the training scans' landmarks, in the order of --train")
    parser.add_argument("--out", type=Path, required=True, help="output mesh (.ply)")
    args = parser.parse_args(argv)
    sections = parse_config_arguments(args, FIT_MESH_STAGE)
    cfg = sections["model"]
    if cfg.name not in MESH_METHODS:
        raise InputError(f"--config: model {cfg.name!r} is not a mesh-kind method "
                         f"(those are {sorted(MESH_METHODS)})")
    train_landmarks = args.train_landmarks or [None] * len(args.train)
    if len(train_landmarks) != len(args.train):
        raise InputError(f"--train-landmarks: {len(train_landmarks)} files for "
                         f"{len(args.train)} training sheets (--train); give one per sheet")
    inputs = MeshFitInputs(scan(args.target, args.landmarks),
                           [scan(p, lm) for p, lm in zip(args.train, train_landmarks,
                                                         strict=True)],
                           sections["preprocess"].radius_mm)
    mesh, details = MESH_METHODS[cfg.name](inputs, cfg)
    save_mesh(mesh, args.out)
    print(f"{args.out}: {cfg.name}: " + "; ".join(map(str, details[:5])))


if __name__ == "__main__":
    run_cli(main)
