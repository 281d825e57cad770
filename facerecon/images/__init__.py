"""Images of scans: rendering, FaceScape views, Dlib alignment, cameras, feature sampling.

Pixel convention everywhere in this package (as OpenCV, dlib and
scikit-image): pixel centres lie at integer coordinates, ``(0, 0)`` is the
centre of the top-left pixel, x goes right and y goes down.

This module holds the image file helpers every stage shares: reading with a
documented colour policy and atomic writing.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from skimage import color, io, util

from facerecon.io import InputError, atomic_path

#: Images whose shorter side is below this are rejected: no usable face fits.
MIN_IMAGE_SIDE_PX = 64


def load_image(path: str | os.PathLike) -> tuple[np.ndarray, str | None]:
    """Read an image as (H, W, 3) uint8 RGB; returns it and what was converted.

    Policy: grayscale images are accepted and replicated to RGB (conversion
    ``"gray"``); an alpha channel is dropped (``"rgba"``); 16-bit and float
    images are rescaled to 8 bits. InputError naming the file when it is
    missing, not an image, or smaller than :data:`MIN_IMAGE_SIDE_PX` on a side.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = io.imread(path)
    except Exception as exc:  # imageio and PIL raise many types for unreadable files
        first_line = (str(exc).splitlines() or [""])[0]  # not imageio's plugin install hints
        raise InputError(f"{path}: not a readable image ({type(exc).__name__}: "
                         f"{first_line})") from None
    image = np.asarray(image)
    converted = None
    if image.ndim == 3 and image.shape[2] in (2, 4):  # gray + alpha, RGBA
        image = image[..., :-1]
        converted = "rgba" if image.shape[2] == 3 else "gray"
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = color.gray2rgb(image)
        converted = "gray"
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"{path}: unsupported image shape {image.shape} "
                         "(expected gray, gray+alpha, RGB or RGBA)")
    if min(image.shape[:2]) < MIN_IMAGE_SIDE_PX:
        raise InputError(f"{path}: image of {image.shape[1]}x{image.shape[0]} px is too small "
                         f"(at least {MIN_IMAGE_SIDE_PX} px a side)")
    return np.ascontiguousarray(util.img_as_ubyte(image)), converted


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] (values outside are clipped) as uint8; uint8 passes through."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def save_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an (H, W, 3) or gray (H, W) image (uint8, or float in [0, 1]) atomically.

    The format follows the suffix (PNG, JPEG).
    """
    with atomic_path(path) as tmp:
        io.imsave(tmp, to_uint8(image), check_contrast=False)
