"""Fit a mesh-kind method to one test scan: the method answers with a mesh directly.

    python -m facerecon.fit_mesh --config JSON --target SHEET.ply --train A.ply B.ply ... \
        --out mesh.ply

``--config`` holds the method's name and its ``model`` section, whose ``name`` picks
the method in ``facerecon.models.MESH_METHODS``: a function ``(target, [(name, sheet)],
model config) -> (mesh, details)``, details being a list whose first items are logged.
The target is the test scan's pseudo-watertight sheet; the training sheets are what the
method may draw on. Sheets
are named ``<subject>/<expression>`` from their paths (``.../<subject>/<expression>.ply``).
The output is a mesh in millimetres in the crop frame, like ``facerecon.mesh``'s, so
evaluation and tables treat both kinds alike.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from facerecon.config import add_config_arguments, parse_config_arguments
from facerecon.io import InputError, load_mesh, run_cli, save_mesh
from facerecon.models import MESH_METHODS

#: What the fit_mesh stage reads.
FIT_MESH_STAGE = ("method", "model")


def main(argv: list[str] | None = None) -> None:
    """Command line: target sheet + training sheets -> reconstructed mesh."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, FIT_MESH_STAGE)
    parser.add_argument("--target", type=Path, required=True, help="the test scan's sheet (mm)")
    parser.add_argument("--train", type=Path, nargs="+", required=True,
                        help="the training scans' sheets (mm)")
    parser.add_argument("--out", type=Path, required=True, help="output mesh (.ply)")
    args = parser.parse_args(argv)
    cfg = parse_config_arguments(args, FIT_MESH_STAGE)["model"]
    if cfg.name not in MESH_METHODS:
        raise InputError(f"--config: model {cfg.name!r} is not a mesh-kind method "
                         f"(those are {sorted(MESH_METHODS)})")
    candidates = [(f"{p.parent.name}/{p.stem}", load_mesh(p)) for p in args.train]
    mesh, details = MESH_METHODS[cfg.name](load_mesh(args.target), candidates, cfg)
    save_mesh(mesh, args.out)
    print(f"{args.out}: {cfg.name}: " + "; ".join(map(str, details[:5])))


if __name__ == "__main__":
    run_cli(main)
