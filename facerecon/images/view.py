"""One scan's prepared view as the network reads it: the files the images stage writes
(facerecon.images.prepare) and :func:`read_view`, which turns them into tensors-to-be.

Light on purpose (numpy, scikit-image, no dlib): training and fitting import it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from facerecon import io
from facerecon.images import load_image
from facerecon.images.camera import load_camera

CROP_FILE = "crop.png"
LANDMARKS_2D_FILE = "landmarks2d.txt"
CAMERA_FILE = "camera.json"


def read_view(prepared_dir: str | os.PathLike, transform_json: str | os.PathLike,
              radius_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """The crop (3, S, S) float32 in [0, 1] and the (2, 4) matrix projecting points of the
    network's unit-sphere frame to its pixels: the camera of ``camera.json`` composed with
    the preprocess transform in ``transform_json`` (facerecon.preprocess's record).
    InputError naming the file when either is unusable."""
    prepared_dir = Path(prepared_dir)
    image, _ = load_image(prepared_dir / CROP_FILE)
    if image.shape[0] != image.shape[1]:
        raise io.InputError(f"{prepared_dir / CROP_FILE}: expected a square crop, found "
                            f"{image.shape[1]}x{image.shape[0]}")
    camera = load_camera(prepared_dir / CAMERA_FILE)
    record = io.read_json(transform_json)
    try:
        matrix = camera.matrix_for_crop_frame(np.asarray(record["transform"], np.float64),
                                              radius_mm)
    except (KeyError, TypeError, ValueError) as exc:
        raise io.InputError(f"{transform_json}: no usable 4x4 'transform' ({exc})") from None
    return image.transpose(2, 0, 1).astype(np.float32) / 255.0, matrix.astype(np.float32)
