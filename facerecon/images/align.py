"""Dlib face alignment to a 256x256 canonical frontal crop (section 2.1 of the paper).

Steps: dlib's HOG frontal face detector (run again with the image upsampled
once if it finds nothing), dlib's 68-point shape predictor on the chosen face,
then the least-squares similarity transform (rotation, uniform scale,
translation) taking the rigid part of the face, landmarks 27-47 (nose ridge
and base, both eyes), onto the canonical template, and a bilinear warp of the
image into the crop.

Canonical template: dlib's own mean face shape for landmarks 17-67
(``mean_face_shape_x/y`` of ``dlib/image_transforms/interpolation.h``, the
template of dlib's ``get_face_chip``), placed with padding 0.5 (as
``get_face_chip(size=256, padding=0.5)``) and shifted 1.26 px right so that
the face's midline is x = 128. Canonical positions (crop pixels): eye centres
(mean of points 36-41 and 42-47) at (94.13, 91.65) and (161.87, 91.65)
(level, 67.75 px apart, symmetric about x = 128), nose tip (30) at
(128.00, 130.00), mouth corners (48, 54) at (97.79, 163.87) and
(158.21, 163.87); with the mouth closed the chin lands near y = 215.

Why landmarks 27-47 only: brows and mouth move with the expression (brow
raiser, mouth stretch, smile) and the jaw line slides along the silhouette
when the head turns. Measured on the astronaut photo (upright, rotated 12 and
-15 degrees) the eye centres land within 1.3 px of their canonical positions;
fitting all of 17-67 (dlib's choice) leaves them 2.5-3.0 px off, and the
5-point fit (eye centres, nose tip, mouth corners) 3.9-5.0 px off. The price:
dlib moves its eye and nose points a little when the mouth opens wide, so an
open-mouth render's crop can be 8-17 % larger than the neutral one's (the
camera fitted afterwards absorbs any scale).

Decisions, each tested:
- no face: InputError. Several detections: those scoring below half the best
  detector score are taken as false positives (dlib's upsampled pass finds
  some on clothing); of the rest the largest is used when its box has more
  than twice the area of the next one, otherwise InputError (ambiguous);
- grayscale input is replicated to RGB and the output says so
  (``converted: "gray"``); an alpha channel is dropped (``"rgba"``);
- images smaller than 64 px a side, and faces whose eye centres are less
  than 20 px apart (the crop would enlarge them more than 3.4x), are errors;
- large images are detected on a copy at most 1024 px a side (the landmarks
  are then predicted at full resolution), and shrinking warps are
  low-pass filtered first (no aliasing);
- known landmarks (``--landmarks-2d``, rendered datasets) skip detection:
  ``method: "given"``.

CLI (prints one JSON object: ``landmarks`` (68 [x, y] in crop pixels),
``method``, ``image_to_crop`` (2x3), ``crop_size_px``, ``faces_detected``,
``upsampled``, ``converted``, ``fit_rms_px`` (RMS distance of the fitted
landmarks from the template), ``image``, ``crop``)::

    python -m facerecon.images.align IMAGE --out CROP.png [--landmarks-2d FILE]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dlib
import numpy as np
from skimage import filters, transform

from facerecon.images import load_image, save_image, to_uint8
from facerecon.io import InputError, load_landmarks, run_cli

CROP_SIZE_PX = 256
PADDING = 0.5  #: dlib get_face_chip padding: margin around the mean face, in its width
MIN_EYE_DISTANCE_PX = 20.0
DETECT_MAX_SIDE_PX = 1024
AMBIGUOUS_AREA_RATIO = 0.5  #: a second face at least this share of the largest's area
WEAK_SCORE_RATIO = 0.5  #: detections scoring below this share of the best are false positives
TEMPLATE_INDICES = np.arange(17, 68)  #: landmarks with a template position
FIT_INDICES = np.arange(27, 48)  #: landmarks the similarity is fitted on (nose, eyes)
LEFT_EYE = np.arange(36, 42)  #: dlib points of the eye on the image's left
RIGHT_EYE = np.arange(42, 48)

# dlib's mean face shape for points 17-67 (unit width), from interpolation.h (Boost licence).
_MEAN_FACE_X = np.array([
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
    0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
    0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
    0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
    0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
    0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
    0.553364, 0.490127, 0.42689])
_MEAN_FACE_Y = np.array([
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
    0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
    0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
    0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
    0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
    0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
    0.784792, 0.824182, 0.831803, 0.824182])
_MIDLINE_X = 0.490127  # the mean face is symmetric about this x
#: (51, 2) canonical crop positions of landmarks 17-67, pixels.
TEMPLATE_PX = np.stack([_MEAN_FACE_X - _MIDLINE_X + 0.5, _MEAN_FACE_Y], axis=1)
TEMPLATE_PX = (TEMPLATE_PX + PADDING) / (1 + 2 * PADDING) * CROP_SIZE_PX

Method = Literal["dlib", "given"]


def template_positions(indices: np.ndarray) -> np.ndarray:
    """Canonical crop positions (N, 2) of landmarks ``indices`` (N,), each in 17-67."""
    return TEMPLATE_PX[np.asarray(indices) - TEMPLATE_INDICES[0]]


#: Canonical eye centres in the crop, pixels: (94.13, 91.65) and (161.87, 91.65).
LEFT_EYE_PX = template_positions(LEFT_EYE).mean(axis=0)
RIGHT_EYE_PX = template_positions(RIGHT_EYE).mean(axis=0)


@dataclass(frozen=True)
class Alignment:
    """A face aligned into the canonical crop."""

    crop: np.ndarray  #: (256, 256, 3) uint8
    landmarks_px: np.ndarray  #: (68, 2) in crop pixels
    image_to_crop: np.ndarray  #: (2, 3) similarity, image pixels -> crop pixels
    method: Method
    faces_detected: int | None  #: dlib detections (None for given landmarks)
    upsampled: bool | None  #: whether the detector needed the upsampled image
    converted: str | None  #: "gray" or "rgba" when the input was converted to RGB

    def record(self) -> dict[str, Any]:
        """JSON-ready description (everything but the crop pixels)."""
        residuals = self.landmarks_px[FIT_INDICES] - template_positions(FIT_INDICES)
        return {
            "landmarks": self.landmarks_px.round(3).tolist(),
            "method": self.method,
            "image_to_crop": self.image_to_crop.tolist(),
            "crop_size_px": CROP_SIZE_PX,
            "faces_detected": self.faces_detected,
            "upsampled": self.upsampled,
            "converted": self.converted,
            "fit_rms_px": float(np.sqrt((residuals**2).sum(axis=1).mean())),
        }


def eye_centres(landmarks_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres (2,) of the eye on the image's left (points 36-41) and right (42-47)."""
    return landmarks_px[LEFT_EYE].mean(axis=0), landmarks_px[RIGHT_EYE].mean(axis=0)


def apply_affine(matrix: np.ndarray, points_px: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (N, 2) points."""
    return np.asarray(points_px, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]


def similarity_to_template(landmarks_px: np.ndarray) -> np.ndarray:
    """(2, 3) least-squares similarity taking the :data:`FIT_INDICES` landmarks to the template.

    Closed form in complex numbers: ``z' = c z + d`` with ``c = a + ib`` the
    rotation and scale; a similarity fit never reflects.
    """
    source = landmarks_px[FIT_INDICES] @ np.array([1.0, 1j])
    target = template_positions(FIT_INDICES) @ np.array([1.0, 1j])
    source_c, target_c = source - source.mean(), target - target.mean()
    c = (target_c * source_c.conj()).sum() / (np.abs(source_c) ** 2).sum()
    d = target.mean() - c * source.mean()
    return np.array([[c.real, -c.imag, d.real], [c.imag, c.real, d.imag]])


def warp_to_crop(image: np.ndarray, image_to_crop: np.ndarray,
                 size_px: int = CROP_SIZE_PX) -> np.ndarray:
    """Bilinear warp of an (H, W, 3) uint8 image into a (size, size, 3) uint8 crop.

    When the warp shrinks, the region it reads is first blurred with a
    Gaussian of sigma ``(1 / scale - 1) / 2`` (scikit-image's anti-aliasing
    rule). Outside the image the crop is black.
    """
    scale = float(np.hypot(*image_to_crop[:, 0]))
    forward = np.vstack([image_to_crop, [0.0, 0.0, 1.0]])
    corners = apply_affine(np.linalg.inv(forward)[:2],
                           np.array([[0, 0], [size_px, 0], [0, size_px], [size_px, size_px]]) - 0.5)
    sigma = max(0.0, (1.0 / scale - 1.0) / 2.0)
    margin = int(np.ceil(4 * sigma)) + 2
    height, width = image.shape[:2]
    x0, y0 = np.clip(np.floor(corners.min(axis=0)).astype(int) - margin, 0, [width, height])
    x1, y1 = np.clip(np.ceil(corners.max(axis=0)).astype(int) + margin + 1, 0, [width, height])
    region = image[y0:y1, x0:x1].astype(np.float64) / 255.0
    if not region.size:  # the crop lies entirely outside the image
        return np.zeros((size_px, size_px, 3), dtype=np.uint8)
    if sigma > 0:
        region = filters.gaussian(region, sigma=sigma, channel_axis=-1)
    region_to_crop = forward @ np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])
    crop = transform.warp(region, transform.AffineTransform(matrix=region_to_crop).inverse,
                          output_shape=(size_px, size_px), order=1, mode="constant", cval=0.0)
    return to_uint8(crop)


@functools.cache
def _dlib_models() -> tuple[Any, Any]:
    """dlib's frontal face detector and 68-point shape predictor (loaded once)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the face_recognition_models package (dlib's model files) is missing")
    model = Path(spec.submodule_search_locations[0]) / "models" / \
        "shape_predictor_68_face_landmarks.dat"
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(model))


def detect_landmarks(image: np.ndarray, source: str) -> tuple[np.ndarray, int, bool]:
    """68 dlib landmarks (68, 2) of the one face in an (H, W, 3) uint8 image.

    Returns (landmarks in image pixels, number of faces detected, whether the
    upsampled image was needed). InputError naming ``source`` when no face is
    found or two faces are of similar size (see module docstring).
    """
    detector, predictor = _dlib_models()
    image = np.ascontiguousarray(image)
    shrink = min(1.0, DETECT_MAX_SIDE_PX / max(image.shape[:2]))
    small = image if shrink == 1.0 else np.ascontiguousarray(transform.rescale(
        image, shrink, channel_axis=-1, anti_aliasing=True, preserve_range=True
    ).round().astype(np.uint8))
    upsampled = False
    rects, scores, _ = detector.run(small, 0)
    if not rects:
        upsampled = True
        rects, scores, _ = detector.run(small, 1)
    if not rects:
        raise InputError(f"{source}: no face found by dlib's detector (also upsampled once)")
    faces = sorted((rect for rect, score in zip(rects, scores, strict=True)
                    if score >= WEAK_SCORE_RATIO * max(scores)),
                   key=lambda rect: rect.area(), reverse=True)
    if len(faces) > 1 and faces[1].area() >= AMBIGUOUS_AREA_RATIO * faces[0].area():
        raise InputError(f"{source}: {len(faces)} faces found, the two largest of similar size "
                         f"({faces[0].area()} and {faces[1].area()} px^2 at detection scale); "
                         "crop the image to one face or pass --landmarks-2d")
    box = faces[0]
    box = dlib.rectangle(*(round(v / shrink) for v in
                           (box.left(), box.top(), box.right(), box.bottom())))
    shape = predictor(image, box)
    landmarks = np.array([[part.x, part.y] for part in shape.parts()], dtype=np.float64)
    return landmarks, len(rects), upsampled


def read_landmarks_2d(path: str | os.PathLike) -> np.ndarray:
    """Read 68 ``x y`` rows (image pixels) -> (68, 2); InputError naming the file."""
    return load_landmarks(path, dims=2)


def align_image(image: np.ndarray, landmarks_px: np.ndarray | None = None, *,
                source: str = "image", converted: str | None = None) -> Alignment:
    """Align an (H, W, 3) uint8 image into the canonical crop.

    With ``landmarks_px`` (68, 2) given (image pixels) detection is skipped
    (method ``given``); otherwise dlib finds them (method ``dlib``).
    InputError naming ``source`` when the face is too small or its eyes lie
    outside the image.
    """
    if landmarks_px is None:
        landmarks_px, faces, upsampled = detect_landmarks(image, source)
        method: Method = "dlib"
    else:
        faces, upsampled, method = None, None, "given"
    left, right = eye_centres(landmarks_px)
    height, width = image.shape[:2]
    for eye in (left, right):
        if not (0 <= eye[0] <= width - 1 and 0 <= eye[1] <= height - 1):
            raise InputError(f"{source}: an eye centre {eye.round(1).tolist()} lies outside "
                             f"the {width}x{height} image")
    distance = float(np.linalg.norm(right - left))
    if distance < MIN_EYE_DISTANCE_PX:
        raise InputError(f"{source}: face too small (eye centres {distance:.1f} px apart, "
                         f"at least {MIN_EYE_DISTANCE_PX:g} px needed)")
    image_to_crop = similarity_to_template(landmarks_px)
    return Alignment(warp_to_crop(image, image_to_crop), apply_affine(image_to_crop, landmarks_px),
                     image_to_crop, method, faces, upsampled, converted)


def align_file(image_path: str | os.PathLike,
               landmarks_path: str | os.PathLike | None = None) -> Alignment:
    """:func:`align_image` on an image file (and an optional 2D landmark file)."""
    image, converted = load_image(image_path)
    landmarks = read_landmarks_2d(landmarks_path) if landmarks_path is not None else None
    return align_image(image, landmarks, source=str(image_path), converted=converted)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m facerecon.images.align", description=__doc__.split("\n\n")[0])
    parser.add_argument("image", type=Path, help="input image (JPEG/PNG; gray is converted)")
    parser.add_argument("--out", required=True, type=Path, help="aligned 256x256 crop (PNG)")
    parser.add_argument("--landmarks-2d", type=Path,
                        help="68 'x y' rows in the image's pixels; skips dlib detection")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    alignment = align_file(args.image, args.landmarks_2d)
    save_image(args.out, alignment.crop)
    print(json.dumps({**alignment.record(), "image": str(args.image), "crop": str(args.out)}))


if __name__ == "__main__":
    run_cli(main)
