"""FaceScape multi-view folders: ``params.json`` cameras and the most frontal valid view.

A view folder holds ``<view>.jpg`` (or ``.png``) images and one ``params.json``
with, per view ``v``: ``v_K`` (3x3), ``v_Rt`` (3x4, OpenCV convention, scan
frame -> camera), ``v_distortion`` (lens coefficients), ``v_width``,
``v_height`` (pixels) and ``v_valid`` (bool). Rendered datasets write the same
file with the single view ``"0"`` (:func:`write_params`), so every dataset
looks the same downstream.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facerecon import io
from facerecon.images.camera import PinholeCamera

PARAMS_FILE = "params.json"
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
_FIELDS: tuple[str, ...] = ("K", "Rt", "distortion", "width", "height", "valid")


@dataclass(frozen=True)
class View:
    """One camera view of a scan and its image."""

    name: str
    image: Path
    camera: PinholeCamera
    distortion: np.ndarray  #: lens coefficients as stored (not applied anywhere)
    valid: bool


def _matrix(params: dict[str, Any], key: str, shape: tuple[int, int], path: Path) -> np.ndarray:
    """``params[key]`` as a finite float64 array of ``shape`` (nested or flat list)."""
    try:
        values = np.asarray(params[key], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise io.InputError(f"{path}: {key} is not a numeric matrix ({exc})") from exc
    if values.size != shape[0] * shape[1] or not np.isfinite(values).all():
        raise io.InputError(f"{path}: {key} must hold {shape[0]}x{shape[1]} finite numbers, "
                            f"found {values.size} values")
    return values.reshape(shape)


def _positive_int(params: dict[str, Any], key: str, path: Path) -> int:
    """``params[key]`` as a positive int (1920 and 1920.0 are accepted)."""
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not float(value).is_integer() or value <= 0:
        raise io.InputError(f"{path}: {key} must be a positive integer, found {value!r}")
    return int(value)


def read_params(path: str | os.PathLike) -> list[View]:
    """All views of a FaceScape ``params.json``, sorted by name (numerically when digits).

    InputError naming the file for a missing key of a view, a wrong matrix
    shape, a non-rotation ``Rt`` or a non-positive image size. A view's image
    path is ``<view>.jpg|.jpeg|.png`` beside the file (it may not exist).
    """
    path = Path(path)
    params = io.read_json(path)
    if not isinstance(params, dict):
        raise io.InputError(f"{path}: expected a JSON object of per-view camera keys")
    names = sorted({key[:-2] for key in params if key.endswith("_K")},
                   key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))
    if not names:
        raise io.InputError(f"{path}: no view keys such as '0_K' found")
    views = []
    for name in names:
        missing = [f"{name}_{field}" for field in _FIELDS if f"{name}_{field}" not in params]
        if missing:
            raise io.InputError(f"{path}: view {name} lacks {', '.join(missing)}")
        intrinsics = _matrix(params, f"{name}_K", (3, 3), path)
        extrinsics = _matrix(params, f"{name}_Rt", (3, 4), path)
        rotation = extrinsics[:, :3]
        if np.abs(rotation @ rotation.T - np.eye(3)).max() > 1e-4:
            raise io.InputError(f"{path}: {name}_Rt: its 3x3 part is not a rotation")
        try:
            distortion = np.asarray(params[f"{name}_distortion"], dtype=np.float64).ravel()
        except (TypeError, ValueError) as exc:
            raise io.InputError(f"{path}: {name}_distortion is not a list of numbers") from exc
        valid = params[f"{name}_valid"]
        if not isinstance(valid, bool):
            raise io.InputError(f"{path}: {name}_valid must be true or false, found {valid!r}")
        camera = PinholeCamera(intrinsics, extrinsics, _positive_int(params, f"{name}_width", path),
                               _positive_int(params, f"{name}_height", path))
        image = next((path.parent / f"{name}{suffix}" for suffix in IMAGE_SUFFIXES
                      if (path.parent / f"{name}{suffix}").is_file()),
                     path.parent / f"{name}{IMAGE_SUFFIXES[0]}")
        views.append(View(name, image, camera, distortion, valid))
    return views


def most_frontal_view(images_dir: str | os.PathLike) -> View:
    """The valid view with an image whose optical axis is closest to -z (scan frame).

    Faces look towards +z, so the camera that sees a face most frontally looks
    along -z; the optical axis, unlike the centre's direction, does not depend
    on where the scan frame's origin lies. InputError naming the folder when
    no view is both valid and has its image file.
    """
    images_dir = Path(images_dir)
    usable = [view for view in read_params(images_dir / PARAMS_FILE)
              if view.valid and view.image.is_file()]
    if not usable:
        raise io.InputError(f"{images_dir}: no valid view with an image file "
                            f"({'|'.join(IMAGE_SUFFIXES)}) beside {PARAMS_FILE}")
    return max(usable, key=lambda view: -view.camera.viewing_direction[2])


def write_params(path: str | os.PathLike, views: dict[str, PinholeCamera]) -> None:
    """Write a FaceScape ``params.json`` for undistorted, valid views, atomically."""
    params: dict[str, Any] = {}
    for name, camera in views.items():
        params.update({
            f"{name}_K": camera.intrinsics.tolist(),
            f"{name}_Rt": camera.extrinsics.tolist(),
            f"{name}_distortion": [0.0] * 5,
            f"{name}_width": camera.width_px,
            f"{name}_height": camera.height_px,
            f"{name}_valid": True,
        })
    io.write_json(path, params)
