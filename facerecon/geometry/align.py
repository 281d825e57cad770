"""Rigid alignment of a scan into the crop frame (ImFace protocol).

The crop frame is the canonical FaceScape frame (millimetres, face towards +z,
head top towards +y) translated so that the crop sphere's centre, ``offset_mm``
behind the nose tip along z, is the origin.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

#: Index of the nose tip among the 68 dlib landmarks.
NOSE_TIP = 30

AlignMode = Literal["translate", "landmarks"]
ALIGN_MODES: tuple[str, ...] = ("translate", "landmarks")


def apply_transform(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (4, 4) homogeneous transform to (N, 3) points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ transform[:3, :3].T + transform[:3, 3]


def translation(offset: np.ndarray) -> np.ndarray:
    """(4, 4) transform adding ``offset`` (3,)."""
    transform = np.eye(4)
    transform[:3, 3] = offset
    return transform


def rigid_fit(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(4, 4) rotation + translation (no scale) minimising ``sum |R s_i + t - t_i|^2``.

    Kabsch / Umeyama without scale on corresponding (N, 3) point sets; the
    reflection case is excluded so ``det(R) = +1``.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    covariance = (target - mu_t).T @ (source - mu_s)
    u, _, vt = np.linalg.svd(covariance)
    d = 1.0 if np.linalg.det(u @ vt) >= 0 else -1.0
    rotation = u @ np.diag([1.0, 1.0, d]) @ vt
    transform = np.eye(4)
    transform[:3, :3] = rotation
    transform[:3, 3] = mu_t - rotation @ mu_s
    return transform


def crop_frame_transform(
    landmarks_mm: np.ndarray,
    offset_mm: float = 40.0,
    align: AlignMode = "translate",
    template_mm: np.ndarray | None = None,
) -> np.ndarray:
    """(4, 4) transform from scan-frame millimetres to crop-frame millimetres.

    ``translate``: the scan is already in the canonical frame (FaceScape TU
    meshes); only translate. ``landmarks``: first rigidly fit the scan's
    (68, 3) landmarks onto ``template_mm`` (68, 3) in the canonical frame.
    Then the sphere centre, the (aligned) nose tip minus ``offset_mm`` along
    z, goes to the origin.
    """
    if align == "translate":
        to_canonical = np.eye(4)
    elif align == "landmarks":
        if template_mm is None:
            raise ValueError("align='landmarks' needs template landmarks")
        to_canonical = rigid_fit(landmarks_mm, template_mm)
    else:
        raise ValueError(f"unknown align mode {align!r} (valid: {', '.join(ALIGN_MODES)})")
    nose_tip = apply_transform(to_canonical, np.asarray(landmarks_mm)[NOSE_TIP:NOSE_TIP + 1])[0]
    centre = nose_tip - np.array([0.0, 0.0, offset_mm])
    return translation(-centre) @ to_canonical
