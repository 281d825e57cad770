"""Prepare one scan's image input: a view, the aligned 256x256 crop, 2D landmarks, a camera.

The view is the most frontal valid view of a FaceScape view folder
(``--images-dir``, with ``params.json``) aligned with dlib, or, without one, a
frontal render of the scan (:mod:`facerecon.images.render`, its features
painted from its landmarks) aligned with the exact 2D landmarks: the scan's 3D
landmarks projected by the render's known camera (method ``given``). The
weak-perspective camera is then fitted from the crop's 68 landmarks and the
scan's 68 3D landmarks by robust least squares (Huber loss, see
:func:`facerecon.images.camera.fit_weak_perspective`); ``reprojection_error_px``
is the distance of every projected 3D landmark from its crop landmark.

Writes, atomically:

- ``OUT/crop.png``: the 256x256 aligned crop;
- ``OUT/landmarks2d.txt``: 68 ``x y`` rows, crop pixels;
- ``OUT/camera.json``: ``scale_px_per_mm``, ``rotation``, ``translation_px``,
  ``matrix_2x4``, ``reprojection_error_px`` (median, mean, max,
  per_landmark), ``crop_size_px``, ``scan``, ``landmarks_file``, ``view``
  (source ``render`` or ``images``, view name, image, K, Rt, size,
  distortion) and ``alignment`` (method, image_to_crop, faces_detected, ...).

Example::

    python -m facerecon.images.prepare --scan 1_neutral.obj \\
        --landmarks 1_neutral.landmarks.txt --out-dir prepared/1/1_neutral
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from facerecon import io
from facerecon.images import load_image, save_image, to_uint8
from facerecon.images.align import CROP_SIZE_PX, Alignment, align_image
from facerecon.images.camera import PinholeCamera, camera_record, fit_weak_perspective
from facerecon.images.render import DEFAULT_SIZE_PX, portrait_camera, render
from facerecon.images.view import CAMERA_FILE, CROP_FILE, LANDMARKS_2D_FILE
from facerecon.images.views import most_frontal_view


def _view_camera(camera: PinholeCamera) -> dict[str, Any]:
    """JSON fields of a view's pinhole camera."""
    return {
        "K": camera.intrinsics.tolist(),
        "Rt": camera.extrinsics.tolist(),
        "width_px": camera.width_px,
        "height_px": camera.height_px,
        "viewing_direction": camera.viewing_direction.tolist(),
    }


def _from_images(images_dir: Path) -> tuple[Alignment, dict[str, Any]]:
    """Align the most frontal valid view of a FaceScape view folder with dlib."""
    view = most_frontal_view(images_dir)
    image, converted = load_image(view.image)
    alignment = align_image(image, source=str(view.image), converted=converted)
    return alignment, {"source": "images", "images_dir": str(images_dir), "view": view.name,
                       "image": str(view.image), "distortion": view.distortion.tolist(),
                       **_view_camera(view.camera)}


def _from_render(scan: Path, landmarks_mm: np.ndarray,
                 size_px: int) -> tuple[Alignment, dict[str, Any]]:
    """Render the scan frontally and align it with its exactly projected landmarks."""
    camera = portrait_camera(landmarks_mm, size_px)
    image = to_uint8(render(io.load_mesh(scan), camera, landmarks_mm=landmarks_mm))
    alignment = align_image(image, camera.project(landmarks_mm), source=f"render of {scan}")
    return alignment, {"source": "render", "view": "0", **_view_camera(camera)}


def prepare_scan(scan: str | os.PathLike, landmarks: str | os.PathLike,
                 out_dir: str | os.PathLike, images_dir: str | os.PathLike | None = None,
                 render_size_px: int = DEFAULT_SIZE_PX) -> dict[str, Any]:
    """Write crop, 2D landmarks and camera of one scan to ``out_dir``; returns the camera record."""
    scan, out_dir = Path(scan), Path(out_dir)
    landmarks_mm = io.load_landmarks(landmarks)
    if images_dir is not None:
        alignment, view = _from_images(Path(images_dir))
    else:
        alignment, view = _from_render(scan, landmarks_mm, render_size_px)
    camera, errors_px = fit_weak_perspective(alignment.landmarks_px, landmarks_mm)
    alignment_record = alignment.record()
    del alignment_record["landmarks"]  # in landmarks2d.txt
    record = {**camera_record(camera, errors_px), "crop_size_px": CROP_SIZE_PX,
              "scan": str(scan), "landmarks_file": str(landmarks), "view": view,
              "alignment": alignment_record}
    save_image(out_dir / CROP_FILE, alignment.crop)
    with io.atomic_path(out_dir / LANDMARKS_2D_FILE) as tmp:
        np.savetxt(tmp, alignment.landmarks_px, fmt="%.4f",
                   header=f"68 landmarks, dlib order, x y in pixels of the {CROP_SIZE_PX}-px crop")
    io.write_json(out_dir / CAMERA_FILE, record)
    return record


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m facerecon.images.prepare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scan", required=True, type=Path,
                        help="scan mesh (OBJ/PLY), mm; rendered when --images-dir is not given")
    parser.add_argument("--landmarks", required=True, type=Path, help="68 landmarks, x y z in mm")
    parser.add_argument("--images-dir", type=Path,
                        help="FaceScape view folder (<view>.jpg + params.json); "
                             "default: render the scan")
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument("--render-size", type=int, default=DEFAULT_SIZE_PX,
                        help="side of the rendered image, pixels")
    args = parser.parse_args(argv)
    if args.render_size < 64:
        parser.error("--render-size must be at least 64")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    record = prepare_scan(args.scan, args.landmarks, args.out_dir, args.images_dir,
                          args.render_size)
    errors = record["reprojection_error_px"]
    print(f"{args.scan}: {record['view']['source']} view {record['view']['view']}, "
          f"{record['alignment']['method']} landmarks, reprojection error median "
          f"{errors['median']:.2f} px, max {errors['max']:.2f} px")


if __name__ == "__main__":
    io.run_cli(main)
