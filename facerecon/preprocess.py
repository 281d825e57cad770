"""Preprocess one scan to the ImFace protocol: align, sphere crop, pseudo-watertight sheet.

Reads a scan in millimetres and its 68 landmarks, and writes, in the crop
frame (millimetres, sphere centre at the origin, face towards +z; not yet
divided by the radius):

- the pseudo-watertight sheet (PLY), one oriented sheet whose single boundary
  loop lies on the crop sphere (:mod:`facerecon.geometry.watertight`); its
  skirt (the vertical wall from the face's silhouette back to the sphere) is
  there so the sheet splits the ball for signed distances;
- the evaluation ground truth (PLY): the same sheet without the skirt, the
  visible face only, as ImFace scores against; a separate mesh so every
  evaluator compares two plain meshes;
- the landmarks (68 ``x y z`` rows);
- a JSON record with the 4x4 transform scan-frame-mm -> crop-frame-mm,
  radius_mm, offset_mm, the align mode and counts.

Example::

    python -m facerecon.preprocess --scan 1_neutral.obj --landmarks 1_neutral.landmarks.txt \\
        --out-mesh sheet.ply [--out-face-mesh sheet.face.ply] --out-landmarks lm.txt \\
        --out-transform crop.json
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from facerecon import io
from facerecon.config import PreprocessConfig, add_config_arguments, parse_config_arguments
from facerecon.geometry.align import AlignMode, apply_transform, crop_frame_transform
from facerecon.geometry.crop import crop_to_sphere
from facerecon.geometry.topology import (
    boundary_loops,
    clean_faces,
    remove_unreferenced,
    triangle_cross,
)
from facerecon.geometry.watertight import pseudo_watertight

#: The 68-landmark indices of the inner-lip contour (dlib order), in order round the mouth.
INNER_LIPS = np.arange(60, 68)
#: What the preprocess stage reads.
PREPROCESS_STAGE = ("preprocess",)


@dataclass(frozen=True)
class Preprocessed:
    """A preprocessed scan, in crop-frame millimetres."""

    vertices_mm: np.ndarray  #: (V, 3) sheet vertices
    faces: np.ndarray  #: (F, 3) sheet faces, the skirt's last
    n_skirt_faces: int  #: faces of the skirt (the last ones of ``faces``)
    landmarks_mm: np.ndarray  #: (68, 3)
    transform: np.ndarray  #: (4, 4) scan-frame mm -> crop-frame mm
    stats: dict[str, Any]

    def face_mesh(self) -> trimesh.Trimesh:
        """The evaluation ground truth: the sheet without its skirt, unused vertices dropped."""
        vertices, faces = remove_unreferenced(
            self.vertices_mm, self.faces[:len(self.faces) - self.n_skirt_faces])
        return trimesh.Trimesh(vertices, faces, process=False)


def preprocess_scan(
    vertices_mm: np.ndarray,
    faces: np.ndarray,
    landmarks_mm: np.ndarray,
    *,
    source: str = "scan",
    radius_mm: float = PreprocessConfig.radius_mm,
    offset_mm: float = PreprocessConfig.offset_mm,
    align: AlignMode = "translate",
    template_mm: np.ndarray | None = None,
) -> Preprocessed:
    """Align, crop to the sphere and build the pseudo-watertight sheet of one scan.

    ``vertices_mm`` (V, 3) and ``landmarks_mm`` (68, 3) in the scan's frame;
    ``faces`` (F, 3). Degenerate and duplicate faces are dropped and counted.
    Raises :class:`facerecon.io.InputError` naming ``source`` when the scan
    has no vertices inside the sphere or too few are visible from the front.
    """
    if not np.isfinite(vertices_mm).all():
        raise io.InputError(f"{source}: vertices contain NaN or infinite values")
    cleaned = clean_faces(vertices_mm, faces)
    transform = crop_frame_transform(landmarks_mm, offset_mm, align, template_mm)
    crop_landmarks_mm = apply_transform(transform, landmarks_mm)
    cropped_v, cropped_f = crop_to_sphere(
        apply_transform(transform, vertices_mm), cleaned.faces, radius_mm)
    if len(cropped_f) == 0:
        raise io.InputError(
            f"{source}: no part of the scan lies inside the {radius_mm:g} mm crop sphere "
            f"centred {offset_mm:g} mm behind the nose tip (landmark 30); check the units "
            "(millimetres) and the landmarks")
    try:
        sheet = pseudo_watertight(cropped_v, cropped_f, radius_mm,
                                  inner_lips_mm=crop_landmarks_mm[INNER_LIPS])
    except ValueError as exc:
        raise io.InputError(f"{source}: cannot build the pseudo-watertight sheet ({exc})") from exc
    radii = np.linalg.norm(sheet.vertices, axis=1)
    loops = boundary_loops(sheet.faces)
    boundary = np.concatenate(loops) if loops else np.zeros(0, dtype=np.int64)
    boundary_error_mm = float(np.abs(radii[boundary] - radius_mm).max(initial=0.0))
    areas_mm2 = 0.5 * np.linalg.norm(triangle_cross(sheet.vertices, sheet.faces), axis=1)
    skirt_area_mm2 = float(areas_mm2[len(areas_mm2) - sheet.n_skirt_faces:].sum())
    stats = {
        "input_vertices": len(vertices_mm),
        "input_faces": len(faces),
        "degenerate_faces_removed": cleaned.n_degenerate,
        "duplicate_faces_removed": cleaned.n_duplicate,
        "cropped_vertices": len(cropped_v),
        "cropped_faces": len(cropped_f),
        "hidden_vertices_removed": sheet.n_hidden,
        "gap_vertices_removed": sheet.n_gap,
        "hole_fill_vertices": sheet.n_fill,
        "vertices": len(sheet.vertices),
        "faces": len(sheet.faces),
        "skirt_faces": sheet.n_skirt_faces,
        "area_mm2": float(areas_mm2.sum()),
        "skirt_area_mm2": skirt_area_mm2,
        "boundary_loops": len(loops),
        "max_radius_mm": float(radii.max()),
        "max_boundary_sphere_error_mm": boundary_error_mm,
    }
    return Preprocessed(sheet.vertices, sheet.faces, sheet.n_skirt_faces,
                        crop_landmarks_mm, transform, stats)


def main(argv: list[str] | None = None) -> None:
    """Command line: one scan -> sheet, crop-frame landmarks and a JSON record."""
    parser = argparse.ArgumentParser(
        prog="python -m facerecon.preprocess", description=__doc__.split("\n\n")[0])
    add_config_arguments(parser, PREPROCESS_STAGE, flags=PREPROCESS_STAGE)
    parser.add_argument("--scan", required=True, type=Path, help="scan mesh (OBJ/PLY), mm")
    parser.add_argument("--landmarks", required=True, type=Path, help="68 landmarks, x y z in mm")
    parser.add_argument("--out-mesh", required=True, type=Path, help="sheet (PLY), crop frame")
    parser.add_argument("--out-face-mesh", type=Path,
                        help="evaluation ground truth: the sheet without its skirt (PLY); "
                        "the workflow always writes it")
    parser.add_argument("--out-landmarks", required=True, type=Path, help="landmarks, crop frame")
    parser.add_argument("--out-transform", required=True, type=Path, help="JSON record")
    args = parser.parse_args(argv)
    p: PreprocessConfig = parse_config_arguments(args, PREPROCESS_STAGE)["preprocess"]
    if p.align == "landmarks" and not p.template:
        raise io.InputError("preprocess.template: align 'landmarks' needs a template file")
    mesh = io.load_mesh(args.scan)
    landmarks = io.load_landmarks(args.landmarks)
    template = io.load_landmarks(p.template) if p.template else None
    result = preprocess_scan(
        np.asarray(mesh.vertices), np.asarray(mesh.faces), landmarks, source=str(args.scan),
        radius_mm=p.radius_mm, offset_mm=p.offset_mm, align=p.align, template_mm=template)
    io.save_mesh(trimesh.Trimesh(result.vertices_mm, result.faces, process=False), args.out_mesh)
    if args.out_face_mesh is not None:
        io.save_mesh(result.face_mesh(), args.out_face_mesh)
    io.save_landmarks(args.out_landmarks, result.landmarks_mm)
    io.write_json(args.out_transform, {
        "scan": str(args.scan),
        "transform": result.transform.tolist(),
        "transform_maps": "homogeneous scan-frame mm -> crop-frame mm (p_crop = T @ [p, 1])",
        "radius_mm": p.radius_mm,
        "offset_mm": p.offset_mm,
        "align": p.align,
        "template": p.template or None,
        "stats": result.stats,
    })


if __name__ == "__main__":
    io.run_cli(main)
