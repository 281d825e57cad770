"""Cameras: the pinhole camera of a view, and the weak-perspective camera of a crop.

Conventions (OpenCV): camera axes x right, y down, z forward; a point ``X``
(scan frame, mm) goes to camera coordinates ``R @ X + t``; pixel centres lie at
integer coordinates, ``(0, 0)`` is the centre of the top-left pixel.

The weak-perspective (scaled orthographic) camera of section 2.1 maps scan
millimetres to crop pixels, ``x_px = s * R[:2] @ X_mm + t_px``. It is fitted
from the 68 landmarks detected in the crop and the scan's 68 3D landmarks
(:func:`fit_weak_perspective`) by robust least squares: each residual
coordinate counts quadratically up to :data:`HUBER_PX` and linearly beyond
(Huber loss). Detected landmarks have outliers that plain least squares lets
pull the whole camera: dlib puts the jaw points on the visible outline, where
ICT-FaceKit's 3D jaw landmarks are fixed vertices up to 10 mm inside it, and
on a wide-open mouth it can leave the lower lip points 20 px short. On 24
dlib-aligned ICT renders the Huber fit's projections of the 3D landmarks lie
a median 0.99 px from their true positions (worst render 3.4 px, dlib failing
on a mouth pulled to one side), against 1.16 px (worst 4.3 px, an open
mouth) with plain least squares; fitting only landmarks 17-67 or 27-67 was
worse (worst 5.9 and 6.8 px). With exact landmarks (renders aligned with
their projected landmarks) every residual is far below :data:`HUBER_PX` and
the fit is the least-squares one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from facerecon import io

#: Residual coordinates (pixels, of the 256-px crop in this pipeline) beyond this count
#: linearly in :func:`fit_weak_perspective` (Huber loss): dlib's typical error there.
HUBER_PX = 2.0
#: Tolerance on ``|R R^T - I|`` when a rotation is read back from JSON.
_ROTATION_TOLERANCE = 1e-6


def _as_points(points: np.ndarray, dim: int, what: str) -> np.ndarray:
    """``points`` as a float64 (N, dim) array, or ValueError naming ``what``."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != dim:
        raise ValueError(f"{what}: expected an (N, {dim}) array, got shape {points.shape}")
    return points


@dataclass(frozen=True)
class PinholeCamera:
    """A calibrated perspective camera (FaceScape's ``K`` and ``Rt``), lens distortion aside."""

    intrinsics: np.ndarray  #: (3, 3) K, pixels
    extrinsics: np.ndarray  #: (3, 4) [R | t], scan frame mm -> camera frame mm
    width_px: int
    height_px: int

    @property
    def rotation(self) -> np.ndarray:
        """(3, 3) R, scan frame -> camera frame."""
        return self.extrinsics[:, :3]

    @property
    def centre_mm(self) -> np.ndarray:
        """(3,) camera centre in the scan frame, ``-R^T t``."""
        return -self.rotation.T @ self.extrinsics[:, 3]

    @property
    def viewing_direction(self) -> np.ndarray:
        """(3,) unit optical axis (camera +z) in the scan frame."""
        return self.rotation[2] / np.linalg.norm(self.rotation[2])

    def project(self, points_mm: np.ndarray) -> np.ndarray:
        """(N, 3) scan-frame mm -> (N, 2) pixel coordinates (perspective division)."""
        points_mm = _as_points(points_mm, 3, "points")
        camera = points_mm @ self.rotation.T + self.extrinsics[:, 3]
        if (camera[:, 2] <= 0).any():
            raise ValueError("points at or behind the camera cannot be projected")
        pixels = camera @ self.intrinsics.T
        return pixels[:, :2] / pixels[:, 2:]


@dataclass(frozen=True)
class WeakPerspectiveCamera:
    """Scaled orthographic camera: ``x_px = scale * rotation[:2] @ X_mm + translation_px``."""

    scale_px_per_mm: float
    rotation: np.ndarray  #: (3, 3) orthonormal, det +1; scan frame -> camera axes
    translation_px: np.ndarray  #: (2,)

    def matrix(self) -> np.ndarray:
        """(2, 4) affine matrix ``M`` with ``x_px = M @ [X_mm, 1]`` (also usable in torch)."""
        return np.hstack([self.scale_px_per_mm * self.rotation[:2], self.translation_px[:, None]])

    def project(self, points_mm: np.ndarray) -> np.ndarray:
        """(N, 3) scan-frame mm -> (N, 2) crop pixels."""
        points_mm = _as_points(points_mm, 3, "points")
        matrix = self.matrix()
        return points_mm @ matrix[:, :3].T + matrix[:, 3]

    def matrix_for_crop_frame(self, transform: np.ndarray, radius_mm: float) -> np.ndarray:
        """(2, 4) matrix projecting points of the network's frame to crop pixels.

        The network sees ``p = (T @ [X_mm, 1])[:3] / radius_mm`` (unit sphere),
        with ``T`` (4, 4) the scan-frame mm -> crop-frame mm transform written by
        :mod:`facerecon.preprocess`; so ``X_mm = T^-1 @ [radius_mm * p, 1]``.
        """
        transform = np.asarray(transform, dtype=np.float64)
        if transform.shape != (4, 4):
            raise ValueError(f"transform: expected a (4, 4) matrix, got shape {transform.shape}")
        unit_to_mm = np.diag([radius_mm, radius_mm, radius_mm, 1.0])
        return self.matrix() @ np.linalg.inv(transform) @ unit_to_mm

    def project_crop_frame(self, points: np.ndarray, transform: np.ndarray,
                           radius_mm: float) -> np.ndarray:
        """(N, 3) points of the network's unit-sphere frame -> (N, 2) crop pixels."""
        points = _as_points(points, 3, "points")
        matrix = self.matrix_for_crop_frame(transform, radius_mm)
        return points @ matrix[:, :3].T + matrix[:, 3]


def _initial_fit(landmarks_px: np.ndarray, landmarks_mm: np.ndarray) -> WeakPerspectiveCamera:
    """Least-squares 2x4 affine camera, projected onto the nearest scaled rotation.

    The 2x3 part ``A = U S V^T`` becomes ``s * U V^T`` with ``s`` the mean
    singular value (the Frobenius-nearest scaled matrix with orthonormal rows);
    the third row of R is the cross product of the first two.
    """
    homogeneous = np.hstack([landmarks_mm, np.ones((len(landmarks_mm), 1))])
    affine, *_ = np.linalg.lstsq(homogeneous, landmarks_px, rcond=None)  # (4, 2)
    u, singular, vt = np.linalg.svd(affine[:3].T, full_matrices=False)
    rows = u @ vt
    rotation = np.vstack([rows, np.cross(rows[0], rows[1])])
    scale = float(singular.mean())
    translation = landmarks_px.mean(axis=0) - scale * rows @ landmarks_mm.mean(axis=0)
    return WeakPerspectiveCamera(scale, rotation, translation)


def fit_weak_perspective(
    landmarks_px: np.ndarray, landmarks_mm: np.ndarray, huber_px: float | None = HUBER_PX
) -> tuple[WeakPerspectiveCamera, np.ndarray]:
    """Robust least-squares weak-perspective camera from 2D-3D correspondences.

    ``landmarks_px`` (N, 2) image or crop pixels, ``landmarks_mm`` (N, 3) scan
    frame, N >= 4 and not coplanar. Starts from the affine fit projected onto
    the nearest scaled rotation (:func:`_initial_fit`), then minimises the
    reprojection error over (scale, rotation, translation) exactly (the
    projection alone is not the constrained optimum), under the Huber loss
    of scale ``huber_px`` on each residual coordinate (None: plain least
    squares). Returns the camera and the per-point reprojection error in
    pixels (N,).
    """
    landmarks_px = _as_points(landmarks_px, 2, "2D landmarks")
    landmarks_mm = _as_points(landmarks_mm, 3, "3D landmarks")
    if len(landmarks_px) != len(landmarks_mm):
        raise ValueError(f"{len(landmarks_px)} 2D landmarks but {len(landmarks_mm)} 3D ones")
    centred = landmarks_mm - landmarks_mm.mean(axis=0)
    if len(landmarks_mm) < 4 or np.linalg.svd(centred, compute_uv=False)[2] < 1e-9 * max(
            1.0, float(np.abs(centred).max())):
        raise ValueError("a weak-perspective fit needs at least 4 non-coplanar 3D landmarks")
    initial = _initial_fit(landmarks_px, landmarks_mm)

    def camera_of(params: np.ndarray) -> WeakPerspectiveCamera:
        rotation = Rotation.from_rotvec(params[:3]).as_matrix() @ initial.rotation
        return WeakPerspectiveCamera(float(params[3]), rotation, params[4:6])

    def residuals(params: np.ndarray) -> np.ndarray:
        return (camera_of(params).project(landmarks_mm) - landmarks_px).ravel()

    start = np.concatenate([np.zeros(3), [initial.scale_px_per_mm], initial.translation_px])
    if huber_px is None:
        solution = least_squares(residuals, start, method="lm")
    else:
        if huber_px <= 0:
            raise ValueError("huber_px must be positive (or None for plain least squares)")
        solution = least_squares(residuals, start, loss="huber", f_scale=huber_px)
    camera = camera_of(solution.x)
    errors_px = np.linalg.norm(camera.project(landmarks_mm) - landmarks_px, axis=1)
    return camera, errors_px


def error_summary(errors_px: np.ndarray) -> dict[str, Any]:
    """Median, mean, max and the per-landmark reprojection errors (pixels) for JSON."""
    errors_px = np.asarray(errors_px, dtype=np.float64)
    return {
        "median": float(np.median(errors_px)),
        "mean": float(errors_px.mean()),
        "max": float(errors_px.max()),
        "per_landmark": [round(float(e), 4) for e in errors_px],
    }


def camera_record(camera: WeakPerspectiveCamera, errors_px: np.ndarray) -> dict[str, Any]:
    """The JSON-ready record of a fitted camera (read back by :func:`load_camera`)."""
    return {
        "model": "weak perspective: x_px = scale_px_per_mm * rotation[:2] @ X_mm + "
                 "translation_px (scan frame mm -> crop pixels, pixel centres at integers)",
        "scale_px_per_mm": camera.scale_px_per_mm,
        "rotation": camera.rotation.tolist(),
        "translation_px": camera.translation_px.tolist(),
        "matrix_2x4": camera.matrix().tolist(),
        "reprojection_error_px": error_summary(errors_px),
    }


def load_camera(path: str | os.PathLike) -> WeakPerspectiveCamera:
    """Read a JSON file holding a :func:`camera_record`; InputError naming the file if invalid."""
    record = io.read_json(path)
    try:
        scale = float(record["scale_px_per_mm"])
        rotation = np.asarray(record["rotation"], dtype=np.float64)
        translation = np.asarray(record["translation_px"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise io.InputError(f"{path}: not a weak-perspective camera record ({exc!r})") from exc
    if rotation.shape != (3, 3) or translation.shape != (2,):
        raise io.InputError(f"{path}: rotation must be 3x3 and translation_px 2 numbers")
    if not (np.isfinite(scale) and scale > 0 and np.isfinite(rotation).all()
            and np.isfinite(translation).all()):
        raise io.InputError(f"{path}: camera values must be finite, scale positive")
    if (np.abs(rotation @ rotation.T - np.eye(3)).max() > _ROTATION_TOLERANCE
            or np.linalg.det(rotation) < 0):
        raise io.InputError(f"{path}: rotation is not a proper rotation matrix")
    return WeakPerspectiveCamera(scale, rotation, translation)
