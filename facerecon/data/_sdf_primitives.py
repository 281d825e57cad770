"""Vectorised signed-distance primitives and smooth Boolean operators (numpy).

Points are a ``Pts`` triple of contiguous ``(N,)`` coordinate arrays in
millimetres (six times faster than ``(N, 3)`` rows with numpy); every function
returns an ``(N,)`` array that is negative inside. The ellipsoid and the smooth
operators are bounds rather than exact distances, which is all that marching
cubes and Newton projection onto the zero level set need.
"""

from __future__ import annotations

import numpy as np

Pts = tuple[np.ndarray, np.ndarray, np.ndarray]


def to_pts(points: np.ndarray) -> Pts:
    """``(N, 3)`` rows -> coordinate triple."""
    return tuple(np.ascontiguousarray(points[:, i], dtype=np.float64) for i in range(3))


def shifted(p: Pts, offset) -> Pts:
    """``p - offset``."""
    return p[0] - offset[0], p[1] - offset[1], p[2] - offset[2]


def mirrored(p: Pts) -> Pts:
    """Reflect to ``x >= 0`` so one evaluation serves a symmetric pair of parts."""
    return np.abs(p[0]), p[1], p[2]


def transformed(p: Pts, rotation: np.ndarray, offset) -> Pts:
    """``rotation @ p + offset`` for every point."""
    r = rotation
    return tuple(r[i, 0] * p[0] + r[i, 1] * p[1] + r[i, 2] * p[2] + offset[i] for i in range(3))


def smin(a: np.ndarray, b: np.ndarray, k_mm: float) -> np.ndarray:
    """Polynomial smooth union; blends surfaces within ``k_mm`` of each other."""
    h = np.maximum(k_mm - np.abs(a - b), 0.0) * (1.0 / k_mm)
    return np.minimum(a, b) - h * h * (0.25 * k_mm)


def smax(a: np.ndarray, b: np.ndarray, k_mm: float) -> np.ndarray:
    """Polynomial smooth intersection (and, with ``-b``, smooth subtraction)."""
    h = np.maximum(k_mm - np.abs(a - b), 0.0) * (1.0 / k_mm)
    return np.maximum(a, b) + h * h * (0.25 * k_mm)


def ellipsoid(p: Pts, centre, radii) -> np.ndarray:
    """Ellipsoid bound of Quilez: exact on the surface, close to a distance near it."""
    x, y, z = ((p[i] - centre[i]) * (1.0 / radii[i]) for i in range(3))
    k0 = np.sqrt(x * x + y * y + z * z)
    x, y, z = x * (1.0 / radii[0]), y * (1.0 / radii[1]), z * (1.0 / radii[2])
    k1 = np.sqrt(x * x + y * y + z * z)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)


def ellipse_xz(p: Pts, centre, radii) -> np.ndarray:
    """Infinite vertical elliptic cylinder (the ellipsoid bound without y; radii[1] unused)."""
    x, z = (p[0] - centre[0]) * (1.0 / radii[0]), (p[2] - centre[2]) * (1.0 / radii[2])
    k0 = np.sqrt(x * x + z * z)
    x, z = x * (1.0 / radii[0]), z * (1.0 / radii[2])
    return k0 * (k0 - 1.0) / np.maximum(np.sqrt(x * x + z * z), 1e-12)


def sphere(p: Pts, centre, radius_mm: float) -> np.ndarray:
    """Exact sphere distance."""
    x, y, z = shifted(p, centre)
    return np.sqrt(x * x + y * y + z * z) - radius_mm


def round_cone(p: Pts, a, b, ra_mm: float, rb_mm: float) -> np.ndarray:
    """Exact distance to the convex hull of two spheres (a capsule when radii match)."""
    a = np.asarray(a, dtype=np.float64)
    ba = np.asarray(b, dtype=np.float64) - a
    l2 = float(ba @ ba)
    rr = ra_mm - rb_mm
    a2 = l2 - rr * rr
    il2 = 1.0 / l2
    pa = shifted(p, a)
    y = pa[0] * ba[0] + pa[1] * ba[1] + pa[2] * ba[2]
    z = y - l2
    xv = [pa[i] * l2 - y * ba[i] for i in range(3)]
    x2 = xv[0] * xv[0] + xv[1] * xv[1] + xv[2] * xv[2]
    y2 = y * y * l2
    z2 = z * z * l2
    k = np.sign(rr) * rr * rr * x2
    out = (np.sqrt(x2 * a2 * il2) + y * rr) * il2 - ra_mm
    out = np.where(np.sign(y) * a2 * y2 < k, np.sqrt(x2 + y2) * il2 - ra_mm, out)
    return np.where(np.sign(z) * a2 * z2 > k, np.sqrt(x2 + z2) * il2 - rb_mm, out)


def rotation_x(angle_rad: float) -> np.ndarray:
    """Rotation about +x (positive turns +y towards +z)."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rotation_y(angle_rad: float) -> np.ndarray:
    """Rotation about +y (positive turns +z towards +x)."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
