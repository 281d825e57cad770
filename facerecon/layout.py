"""FaceScape's file layout, expression names and the ImFace split.

All datasets (synthetic, ict, facescape) are written in this layout, so every
later stage reads one format:
``<root>/<subject>/models_reg/<k>_<expression>.obj`` (millimetres, face towards
+z, head top towards +y) with the 68 landmarks beside it in
``<k>_<expression>.landmarks.txt``.
"""

from __future__ import annotations

from pathlib import Path

#: FaceScape's 20 expressions, numbered as in the file names (PROTOCOL.md).
EXPRESSIONS: dict[int, str] = {
    1: "neutral",
    2: "smile",
    3: "mouth_stretch",
    4: "anger",
    5: "jaw_left",
    6: "jaw_right",
    7: "jaw_forward",
    8: "mouth_left",
    9: "mouth_right",
    10: "dimpler",
    11: "chin_raiser",
    12: "lip_puckerer",
    13: "lip_funneler",
    14: "sadness",
    15: "lip_roll",
    16: "grin",
    17: "cheek_blowing",
    18: "eye_closed",
    19: "brow_raiser",
    20: "brow_lower",
}

#: Expressions used for training in ImFace and the paper; 5, 6, 8, 9, 18 are test-only.
TRAIN_EXPRESSIONS: tuple[int, ...] = (1, 2, 3, 4, 7, 10, 11, 12, 13, 14, 15, 16, 17, 19, 20)

#: Test subjects of the ImFace split (all 20 expressions each).
TEST_SUBJECTS: tuple[int, ...] = (122, 212, 340, 344, 393, 395, 421, 527, 594, 610)

#: Train subjects of the ImFace split: 1..359 except the test ones.
TRAIN_SUBJECTS: tuple[int, ...] = tuple(s for s in range(1, 360) if s not in TEST_SUBJECTS)


def scan_name(expression: int) -> str:
    """FaceScape's file stem of an expression, e.g. ``3 -> '3_mouth_stretch'``."""
    if expression not in EXPRESSIONS:
        raise ValueError(f"unknown FaceScape expression number {expression} (valid: 1..20)")
    return f"{expression}_{EXPRESSIONS[expression]}"


def expression_number(name: str) -> int:
    """Inverse of :func:`scan_name`: ``'3_mouth_stretch' -> 3``."""
    head, _, tail = name.partition("_")
    if not head.isdigit() or int(head) not in EXPRESSIONS or EXPRESSIONS[int(head)] != tail:
        raise ValueError(f"{name!r} is not a FaceScape expression name such as '1_neutral'")
    return int(head)


def scan_path(root: str | Path, subject: str | int, expression: int | str) -> Path:
    """Path of a scan's OBJ in FaceScape's layout."""
    stem = expression if isinstance(expression, str) else scan_name(expression)
    return Path(root) / str(subject) / "models_reg" / f"{stem}.obj"


def landmarks_path(root: str | Path, subject: str | int, expression: int | str) -> Path:
    """Path of a scan's 68-landmark sidecar (``x y z`` rows in millimetres)."""
    return scan_path(root, subject, expression).with_suffix(".landmarks.txt")
