"""ICT-FaceKit benchmark: FaceScape-layout scans made from a real, MIT-licensed face model.

The ICT-FaceKit "Face Model Light" (USC ICT) is a linear model registered to one
topology: ``neutral + w_id @ identity_deltas + w_exp @ expression_deltas``, in
centimetres, face towards +z, head top towards +y. This module reads it from the
upstream ``FaceXModel/`` folder of OBJ files, from the packed ``.npz`` (every
upstream array, float32; schema in the shared ``ict-facekit/README.md``) or from a
compact ``.npz``, and writes scans in FaceScape's layout (:mod:`facerecon.layout`).

The compact npz (``pack --compact``) has the same keys, cut to the scan surface
(:func:`scan_model`: the faces and vertices every scan is built from, no eyeballs,
teeth or eyelashes), with the identity and expression deltas stored as int32
multiples of one step per array (``identity_scale``, ``expression_scale``:
:data:`COMPACT_STEP_CM`) in LZMA-compressed members; :func:`load_model` turns them
back into float32. A scan sums 100 identity deltas with N(0, 1) weights, so their
rounding errors add up: int16 with one scale per array (largest delta / 32767) is
off by 0.008 mm, with one scale per mode by 0.002 mm; this step keeps scans within
0.0005 mm (0.00048 mm at most over 2 seeds x 25 subjects x 20 expressions). One
such file ships with facerecon (:data:`PACKAGED_MODEL`, 100 identities and 57
expressions, the default model; ICT-FaceKit's MIT licence beside it as
:data:`PACKAGED_LICENSE`).

Scans:

- identity: one N(0, 1) weight per identity mode, drawn from
  ``np.random.default_rng([seed, subject_id])``, so a subject's files never
  depend on which other subjects are built;
- expression: one row of :data:`RECIPES` (ICT blendshape weights per FaceScape
  expression), the same for every subject;
- surface: the faces whose corners all lie in the face, head-and-neck and
  mouth-socket vertex ranges (no eyeballs, teeth, gums or eyelashes), without
  unreferenced vertices, scaled to millimetres;
- landmarks: the model's 68 landmark vertices (dlib order) after the same
  deformation, in millimetres.

Sides, checked on the model's geometry: ICT's ``_L`` shapes act on +x, the
subject's own left in FaceScape's frame (``eyeBlink_L`` closes the eye holding
dlib landmarks 42-47), and ``jawLeft`` / ``mouthLeft`` move the chin / mouth
towards +x, the subject's left, which is FaceScape's ``jaw_left`` /
``mouth_left``. No mirroring is needed.

Command lines::

    python -m facerecon.data.ict build [--model PATH] --out DIR --subjects N --seed S \
        [--only ID ...] [--expressions K ...]
    python -m facerecon.data.ict pack --model-dir FaceXModel/ --out ict_facekit.npz
    python -m facerecon.data.ict pack --archive ICT-FaceKit-da5f95a6.zip --out ict_facekit.npz
    python -m facerecon.data.ict recipes   # the recipe table in Markdown

The packaged compact model is made, from the repository root, by (or from the
upstream repository zip: ``--archive`` instead of ``--npz``)::

    python -m facerecon.data.ict pack --compact --npz ../shared/ict-facekit/ict_facekit.npz \
        --out facerecon/data/ict_facekit_compact.npz
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import trimesh

from facerecon import io, layout
from facerecon.data import add_build_arguments, archive, build_selection, write_scan

CM_TO_MM = 10.0
NEUTRAL_OBJ = "generic_neutral_mesh.obj"
LANDMARK_JSON = "vertex_indices.json"
_IDENTITY_STEM = re.compile(r"identity\d+")

#: The compact model shipped with facerecon (the default model) and ICT-FaceKit's licence.
PACKAGED_MODEL = Path(__file__).with_name("ict_facekit_compact.npz")
PACKAGED_LICENSE = Path(__file__).with_name("ICT_FACEKIT_LICENSE")

#: Compact npz: deltas (key) stored as integers times one scale per array (value) ...
_SCALE_KEYS = {"identity_deltas": "identity_scale", "expression_deltas": "expression_scale"}
#: ... this step: rounding moves a delta by at most 0.015 micrometres.
COMPACT_STEP_CM = 3e-6

#: Vertex ranges of the scan-like surface: face [0, 9409), head and neck [9409, 11248)
#: and mouth socket [11248, 13294); eye sockets, gums, tongue, teeth and eyeballs follow.
SCAN_VERTEX_END = 13294

#: FaceScape expression number -> ICT blendshape weights (in [0, 1]); 1 is the neutral face.
RECIPES: dict[int, dict[str, float]] = {
    1: {},
    2: {"mouthSmile_L": 1.0, "mouthSmile_R": 1.0, "cheekSquint_L": 0.6, "cheekSquint_R": 0.6,
        "eyeSquint_L": 0.2, "eyeSquint_R": 0.2},
    3: {"jawOpen": 1.0, "mouthStretch_L": 0.5, "mouthStretch_R": 0.5},
    4: {"browDown_L": 1.0, "browDown_R": 1.0, "noseSneer_L": 0.4, "noseSneer_R": 0.4,
        "mouthPress_L": 0.5, "mouthPress_R": 0.5, "mouthFrown_L": 0.4, "mouthFrown_R": 0.4},
    5: {"jawLeft": 1.0, "jawOpen": 0.2},
    6: {"jawRight": 1.0, "jawOpen": 0.2},
    7: {"jawForward": 1.0, "jawOpen": 0.2},
    8: {"mouthLeft": 1.0},
    9: {"mouthRight": 1.0},
    10: {"mouthDimple_L": 1.0, "mouthDimple_R": 1.0},
    11: {"mouthShrugLower": 1.0, "mouthShrugUpper": 0.4},
    12: {"mouthPucker": 1.0},
    13: {"mouthFunnel": 1.0, "jawOpen": 0.1},
    14: {"browInnerUp_L": 1.0, "browInnerUp_R": 1.0, "mouthFrown_L": 0.8, "mouthFrown_R": 0.8,
         "mouthShrugLower": 0.3},
    15: {"mouthRollLower": 1.0, "mouthRollUpper": 1.0},
    16: {"mouthSmile_L": 1.0, "mouthSmile_R": 1.0, "mouthStretch_L": 0.4, "mouthStretch_R": 0.4,
         "mouthUpperUp_L": 0.5, "mouthUpperUp_R": 0.5, "mouthLowerDown_L": 0.5,
         "mouthLowerDown_R": 0.5, "jawOpen": 0.2, "cheekSquint_L": 0.5, "cheekSquint_R": 0.5},
    17: {"cheekPuff_L": 1.0, "cheekPuff_R": 1.0},
    18: {"eyeBlink_L": 1.0, "eyeBlink_R": 1.0},
    19: {"browInnerUp_L": 1.0, "browInnerUp_R": 1.0, "browOuterUp_L": 1.0, "browOuterUp_R": 1.0},
    20: {"browDown_L": 1.0, "browDown_R": 1.0},
}


def recipe_markdown() -> str:
    """:data:`RECIPES` as a Markdown table (for the README)."""
    rows = ["| # | FaceScape expression | ICT blendshape weights |", "| --- | --- | --- |"]
    for number, recipe in RECIPES.items():
        weights = ", ".join(f"`{name}` {weight:g}" for name, weight in recipe.items())
        rows.append(f"| {number} | {layout.EXPRESSIONS[number]} | {weights or '(none)'} |")
    return "\n".join(rows) + "\n"


# --------------------------------------------------------------------------------------
# Reading the model


@dataclass(frozen=True)
class IctModel:
    """The packed arrays (README schema); positions and deltas in centimetres."""

    vertices_neutral: np.ndarray  # (V, 3) float32
    faces: np.ndarray  # (F, 3) int32
    identity_names: np.ndarray  # (I,) str
    identity_deltas: np.ndarray  # (I, V, 3) float32
    expression_names: np.ndarray  # (E,) str, sorted
    expression_deltas: np.ndarray  # (E, V, 3) float32
    landmarks68: np.ndarray  # (68,) int32

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays by their npz key."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _landmarks_json(model_dir: Path) -> np.ndarray:
    """``idx_to_landmark_verts`` of the upstream vertex_indices.json, inside or beside
    the folder: the 68 dlib-order landmark vertices, which the npz stores unchanged."""
    for candidate in (model_dir / LANDMARK_JSON, model_dir.parent / LANDMARK_JSON):
        if candidate.is_file():
            data = io.read_json(candidate)
            indices = data.get("idx_to_landmark_verts") if isinstance(data, dict) else None
            if not isinstance(indices, list) or len(indices) != io.N_LANDMARKS:
                raise io.InputError(f"{candidate}: 'idx_to_landmark_verts' is not a list "
                                    f"of {io.N_LANDMARKS} vertex indices")
            return np.array(indices, dtype=np.int32)
    raise io.InputError(f"{model_dir}: {LANDMARK_JSON} (landmark vertex indices) found neither "
                        f"inside this folder nor beside it")


def _read_folder(model_dir: Path) -> IctModel:
    """Read the upstream ``FaceXModel/`` folder: every OBJ besides the neutral mesh is an
    identity (``identityNNN``) or an expression; deltas are OBJ minus neutral in float32."""
    neutral, faces = io.read_obj(model_dir / NEUTRAL_OBJ)
    stems = sorted(p.stem for p in model_dir.glob("*.obj") if p.name != NEUTRAL_OBJ)
    identity_names = [s for s in stems if _IDENTITY_STEM.fullmatch(s)]
    expression_names = [s for s in stems if not _IDENTITY_STEM.fullmatch(s)]

    def deltas(names: list[str]) -> np.ndarray:
        out = np.empty((len(names), *neutral.shape), dtype=np.float32)
        for i, name in enumerate(names):
            points, _ = io.read_obj(model_dir / f"{name}.obj", with_faces=False)
            if points.shape != neutral.shape:
                raise io.InputError(f"{model_dir / name}.obj: {len(points)} vertices, "
                                    f"the neutral mesh has {len(neutral)}")
            out[i] = points - neutral
        return out

    return IctModel(neutral, faces.astype(np.int32), np.array(identity_names),
                    deltas(identity_names), np.array(expression_names),
                    deltas(expression_names), _landmarks_json(model_dir))


def _dequantised(arrays: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    """Float32 deltas from a compact npz's integer deltas and scales; a full npz passes as
    it is."""
    out = dict(arrays)
    for key, scale_key in _SCALE_KEYS.items():
        if scale_key not in out:
            continue
        deltas, scale = out[key], out.pop(scale_key)
        if deltas.dtype.kind != "i" or scale.shape != ():
            raise io.InputError(f"{path}: {key} ({deltas.dtype}) and {scale_key} "
                                f"{scale.shape} are not integers and one scale (compact npz)")
        out[key] = deltas.astype(np.float32) * np.float32(scale)
    return out


def load_model(path: str | os.PathLike = PACKAGED_MODEL) -> IctModel:
    """Read the model from the upstream folder, the packed or the compact npz (the
    packaged one by default); the same float32 arrays either way."""
    path = Path(path)
    if path.is_dir():
        model = _read_folder(path)
    else:
        arrays = io.load_npz(path, tuple(f.name for f in fields(IctModel)))
        model = IctModel(**_dequantised(arrays, path))
    n_vertices = len(model.vertices_neutral)
    shapes_ok = (model.identity_deltas.shape == (len(model.identity_names), n_vertices, 3)
                 and model.expression_deltas.shape == (len(model.expression_names), n_vertices, 3)
                 and model.landmarks68.shape == (io.N_LANDMARKS,) and len(model.identity_names) > 0
                 and model.faces.ndim == 2 and model.faces.shape[1] == 3
                 and 0 <= model.faces.min() and model.faces.max() < n_vertices)
    if not shapes_ok:
        shapes = ", ".join(f"{k} {v.shape}" for k, v in model.arrays().items())
        raise io.InputError(f"{path}: arrays do not fit the ICT model schema ({shapes})")
    return model


def _integer_deltas(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``arrays`` with the deltas as int32 multiples of :data:`COMPACT_STEP_CM`, and that
    step as their scale."""
    out = dict(arrays)
    for key, scale_key in _SCALE_KEYS.items():
        out[key] = np.rint(arrays[key].astype(np.float64) / COMPACT_STEP_CM).astype(np.int32)
        out[scale_key] = np.array(COMPACT_STEP_CM)
    return out


def pack(source: str | os.PathLike, out: str | os.PathLike, compact: bool = False
         ) -> IctModel:
    """Pack the upstream folder (or re-pack a packed npz) into one npz, compressed and
    written atomically; returns the model written. ``compact``: :func:`scan_model`, integer
    deltas, LZMA-compressed members (a third smaller than deflate's); :func:`load_model`
    and ``np.load`` read either file."""
    model = load_model(source)
    with io.atomic_path(out, suffix=".npz") as tmp:
        if compact:
            model = scan_model(model)
            with zipfile.ZipFile(tmp, "w") as zf:
                for key, value in _integer_deltas(model.arrays()).items():
                    info = zipfile.ZipInfo(f"{key}.npy")  # a fixed date: the same bytes each time
                    info.compress_type = zipfile.ZIP_LZMA
                    with zf.open(info, "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, value, allow_pickle=False)
        else:
            np.savez_compressed(tmp, **model.arrays())
    return model


def pack_archive(source: str | os.PathLike, out: str | os.PathLike,
                 max_uncompressed_gb: float = 8.0, compact: bool = False) -> IctModel:
    """Pack straight from the upstream repository archive: only FaceXModel/ is extracted
    (safely: facerecon.data.archive), into a temporary folder that is removed afterwards."""
    source = Path(source)
    limit = int(max_uncompressed_gb * 1e9)
    wanted = {name: "FaceXModel/" + name.split("FaceXModel/", 1)[1]
              for name in archive.inventory(source, limit)
              if "FaceXModel/" in name and not name.endswith("/")}
    if not wanted:
        raise io.InputError(f"{source}: no FaceXModel/ folder inside the archive")
    with tempfile.TemporaryDirectory() as tmp:
        archive.extract(source, Path(tmp) / "upstream", wanted, max_uncompressed_bytes=limit)
        return pack(Path(tmp) / "upstream" / "FaceXModel", out, compact=compact)


def check_recipes(model: IctModel, source: str | os.PathLike) -> None:
    """Fail naming every blendshape the recipes use that the model lacks."""
    needed = sorted({name for recipe in RECIPES.values() for name in recipe})
    have = set(model.expression_names.tolist())
    missing = [n for n in needed if n not in have]
    if missing:
        kind, suffix = ("OBJ file(s)", ".obj") if Path(source).is_dir() else ("blendshape(s)", "")
        raise io.InputError(f"{source}: the expression recipes need {len(missing)} {kind} "
                            f"missing from the model: {', '.join(n + suffix for n in missing)}")


# --------------------------------------------------------------------------------------
# Building scans


@dataclass(frozen=True)
class ScanSurface:
    """The scan-like part of the model's topology, with its own vertex numbering."""

    vertex_ids: np.ndarray  # (N,) model vertices kept, increasing
    faces: np.ndarray  # (F, 3) faces in kept-vertex numbering
    landmarks: np.ndarray  # (68,) landmark vertices in kept-vertex numbering

    @classmethod
    def of(cls, model: IctModel) -> ScanSurface:
        """Faces with every corner below :data:`SCAN_VERTEX_END`, unreferenced vertices out."""
        faces = model.faces[(model.faces < SCAN_VERTEX_END).all(axis=1)]
        vertex_ids = np.unique(faces)
        if not np.isin(model.landmarks68, vertex_ids).all():
            raise io.InputError("ICT model: a landmark vertex lies outside the scan surface")
        return cls(vertex_ids, np.searchsorted(vertex_ids, faces),
                   np.searchsorted(vertex_ids, model.landmarks68))


def scan_model(model: IctModel) -> IctModel:
    """The model cut to its :class:`ScanSurface`, renumbered: every scan has the same
    vertices, faces and landmarks as from the whole model (whose surface this is)."""
    surface = ScanSurface.of(model)
    ids = surface.vertex_ids
    return replace(model, vertices_neutral=model.vertices_neutral[ids],
                   faces=surface.faces.astype(np.int32),
                   identity_deltas=model.identity_deltas[:, ids],
                   expression_deltas=model.expression_deltas[:, ids],
                   landmarks68=surface.landmarks.astype(np.int32))


def identity_vertices_cm(model: IctModel, surface: ScanSurface, seed: int, subject_id: int
                         ) -> np.ndarray:
    """(N, 3) neutral-expression surface vertices (cm) of one subject: one N(0, 1)
    weight per identity mode, drawn from the subject's own generator."""
    rng = np.random.default_rng([seed, subject_id])
    weights = rng.standard_normal(len(model.identity_names))
    ids = surface.vertex_ids
    return (model.vertices_neutral[ids].astype(np.float64)
            + np.tensordot(weights, model.identity_deltas[:, ids], axes=1))


def make_scan(model: IctModel, surface: ScanSurface, identity_cm: np.ndarray, expression: int
              ) -> tuple[trimesh.Trimesh, np.ndarray]:
    """Mesh (mm) and (68, 3) landmarks (mm) of one identity in one expression.

    The model must hold every blendshape of :data:`RECIPES` (see :func:`check_recipes`).
    """
    index = {name: i for i, name in enumerate(model.expression_names.tolist())}
    vertices_cm = identity_cm.copy()
    for name, weight in RECIPES[expression].items():
        vertices_cm += weight * model.expression_deltas[index[name], surface.vertex_ids]
    vertices_mm = vertices_cm * CM_TO_MM
    mesh = trimesh.Trimesh(vertices_mm, surface.faces, process=False)
    return mesh, vertices_mm[surface.landmarks]


def build_subject(model: IctModel, out_root: str | Path, subject_id: int, seed: int,
                  expressions: Sequence[int]) -> list[Path]:
    """Write one subject's scans and landmarks; returns the OBJ paths.

    Files depend only on (model, seed, subject_id, expression), never on what else is
    built. The model must hold every blendshape of :data:`RECIPES`.
    """
    surface = ScanSurface.of(model)
    identity_cm = identity_vertices_cm(model, surface, seed, subject_id)
    written = []
    for expression in expressions:
        start = time.perf_counter()
        mesh, landmarks = make_scan(model, surface, identity_cm, expression)
        path = write_scan(out_root, subject_id, expression, mesh, landmarks)
        written.append(path)
        print(f"subject {subject_id} {layout.scan_name(expression)}: "
              f"{len(mesh.vertices)} vertices, {len(mesh.faces)} faces, "
              f"{path.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - start:.2f} s",
              flush=True)
    return written


# --------------------------------------------------------------------------------------
# Command line


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m facerecon.data.ict",
        description="ICT-FaceKit benchmark in FaceScape's layout.")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build scans of random ICT identities")
    build.add_argument("--model", type=Path, default=PACKAGED_MODEL,
                       help="upstream FaceXModel/ folder, the packed or a compact .npz "
                            "(default: the compact model shipped with facerecon)")
    add_build_arguments(build)
    packer = commands.add_parser("pack", help="pack the upstream OBJ folder into one .npz")
    source = packer.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir", type=Path, help="upstream FaceXModel/ folder")
    source.add_argument("--archive", type=Path,
                        help="upstream repository archive (zip/tar) holding FaceXModel/")
    source.add_argument("--npz", type=Path, help="a packed .npz to re-pack (with --compact)")
    packer.add_argument("--out", type=Path, required=True, help="output .npz")
    packer.add_argument("--compact", action="store_true",
                        help="scan surface only, integer deltas (the packaged model's format)")
    commands.add_parser("recipes", help="print the expression recipes as a Markdown table")
    args = parser.parse_args(argv)
    if args.command == "build":
        args.subject_ids, args.expression_numbers = build_selection(build, args)
    return args


def main(argv: list[str] | None = None) -> None:
    """Run one subcommand: build, pack or recipes."""
    args = _parse_args(argv)
    if args.command == "recipes":
        print(recipe_markdown(), end="")
    elif args.command == "pack":
        model = (pack_archive(args.archive, args.out, compact=args.compact) if args.archive
                 else pack(args.model_dir or args.npz, args.out, compact=args.compact))
        print(f"{args.out}: {len(model.identity_names)} identities, "
              f"{len(model.expression_names)} expressions, {len(model.vertices_neutral)} "
              f"vertices, {args.out.stat().st_size / 1e6:.1f} MB")
    else:
        model = load_model(args.model)
        check_recipes(model, args.model)
        for subject_id in args.subject_ids:
            build_subject(model, args.out, subject_id, args.seed, args.expression_numbers)


if __name__ == "__main__":
    io.run_cli(main)
