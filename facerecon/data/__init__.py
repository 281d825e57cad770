"""Data sources, all written in FaceScape's layout, and the one interface every stage reads.

Each source only *produces* a root in FaceScape's layout (facerecon.layout):
``synthetic`` builds it, ``ict`` builds it from the ICT-FaceKit model,
``facescape`` imports it from the user's archives. :class:`FaceDataset` then
reads any such root the same way, so no later stage knows where scans came from.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from facerecon.io import InputError, load_landmarks, save_landmarks, save_mesh
from facerecon.layout import (
    EXPRESSIONS,
    expression_number,
    landmarks_path,
    scan_path,
)


@dataclass(frozen=True)
class Scan:
    """Where one scan's files are: mesh (mm) and 68 landmarks (mm, dlib order)."""

    subject: str
    expression: int
    mesh: Path
    landmarks: Path

    @property
    def name(self) -> str:
        """FaceScape's file stem, e.g. '3_mouth_stretch'."""
        return self.mesh.stem


class FaceDataset:
    """A root folder in FaceScape's layout, with the split the config gives it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def subjects(self) -> list[str]:
        """Subject folders that hold a models_reg/ folder, numerically sorted."""
        found = [p.parent.name for p in self.root.glob("*/models_reg")]
        return sorted(found, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))

    def expressions(self, subject: str) -> list[int]:
        """Expression numbers present for ``subject`` (scan and landmarks both there)."""
        numbers = []
        for obj in (self.root / subject / "models_reg").glob("*.obj"):
            try:
                number = expression_number(obj.stem)
            except ValueError:
                continue
            if landmarks_path(self.root, subject, number).is_file():
                numbers.append(number)
        return sorted(numbers)

    def scan(self, subject: str, expression: int) -> Scan:
        """The files of one scan; InputError naming what is missing."""
        mesh = scan_path(self.root, subject, expression)
        landmarks = landmarks_path(self.root, subject, expression)
        for path, what in ((mesh, "scan"), (landmarks, "landmarks")):
            if not path.is_file():
                raise InputError(f"{path}: {what} of subject {subject}, expression "
                                 f"{expression} ({EXPRESSIONS[expression]}) not found")
        return Scan(str(subject), expression, mesh, landmarks)

    def landmarks(self, subject: str, expression: int) -> np.ndarray:
        """(68, 3) landmarks in mm."""
        return load_landmarks(self.scan(subject, expression).landmarks)

    def check(self, subjects: list[str], expressions: list[int]) -> None:
        """Fail fast, naming every missing (subject, expression) at once."""
        missing = [
            f"{s}/{e}_{EXPRESSIONS[e]}"
            for s in subjects
            for e in expressions
            if not (scan_path(self.root, s, e).is_file()
                    and landmarks_path(self.root, s, e).is_file())
        ]
        if missing:
            shown = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
            raise InputError(f"{self.root}: {len(missing)} scan(s) missing: {shown}")


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every dataset builder takes (synthetic, ict): where, how many, which."""
    parser.add_argument("--out", type=Path, required=True, help="dataset root folder")
    parser.add_argument("--subjects", type=int, required=True, help="build subjects 1..N")
    parser.add_argument("--seed", type=int, required=True, help="dataset seed (>= 0)")
    parser.add_argument("--only", type=int, nargs="+", metavar="ID",
                        help="build only these subject ids (each within 1..N)")
    parser.add_argument("--expressions", type=int, nargs="+", metavar="K",
                        help="FaceScape expression numbers (default: all 20)")


def build_selection(parser: argparse.ArgumentParser, args: argparse.Namespace
                    ) -> tuple[Sequence[int], list[int]]:
    """Check the builder options (argparse errors) and return (subject ids, expressions)."""
    if args.subjects < 1:
        parser.error(f"--subjects must be at least 1, got {args.subjects}")
    if args.seed < 0:
        parser.error(f"--seed must be non-negative, got {args.seed}")
    outside = [i for i in args.only or [] if not 1 <= i <= args.subjects]
    if outside:
        parser.error(f"--only ids {outside} are outside 1..{args.subjects} "
                     f"(--subjects {args.subjects})")
    unknown = [k for k in args.expressions or [] if k not in EXPRESSIONS]
    if unknown:
        parser.error(f"--expressions {unknown} are not FaceScape expression numbers (1..20)")
    subjects = sorted(set(args.only)) if args.only else range(1, args.subjects + 1)
    expressions = sorted(set(args.expressions)) if args.expressions else sorted(EXPRESSIONS)
    return subjects, expressions


def write_scan(root: str | Path, subject_id: int, expression: int, mesh: trimesh.Trimesh,
               landmarks_mm: np.ndarray) -> Path:
    """Write one built scan and its 68 landmarks in FaceScape's layout; returns the OBJ path."""
    path = scan_path(root, subject_id, expression)
    save_mesh(mesh, path)
    save_landmarks(landmarks_path(root, subject_id, expression), landmarks_mm)
    return path
