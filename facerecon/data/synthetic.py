"""Procedural synthetic face dataset in FaceScape's layout (offline, deterministic).

Writes ``<out>/<subject>/models_reg/<k>_<expression>.obj`` for FaceScape's 20
expressions with the 68 dlib-order landmarks beside each scan, in the frame of
FaceScape TU models: millimetres, face towards +z, head top towards +y, origin
between the ears. The subject faces +z with +y up, so the subject's LEFT is +x
(dlib's jaw line runs from landmark 0 at -x to 16 at +x).

How a scan is made:
1. Identity: 18 shape parameters per subject drawn from
   ``np.random.default_rng([seed, subject_id])`` (:class:`Identity`).
2. Expression: one row of :data:`EXPRESSION_TABLE`, a vector of 17 named
   muscle controls (:class:`Controls`), applied to one shape function: bone
   motion (a rigid jaw), soft-tissue motion (a smooth warp of Gaussian
   handles) and a few shape terms (lip part, pucker, cheek puff, eyelids).
3. The head is a signed distance function of smooth unions/subtractions of
   primitives, including a mouth cavity, nostril channels and eye sockets
   with eyeballs behind the lids, so visibility-based hole filling has work.
4. Meshing: narrow-band marching cubes on a 2 mm grid, one conforming 1-to-4
   refinement of the face (to about 1 mm), Newton projection onto the zero
   level set, then a displacement along the normal by the fine-detail field:
   pores seeded per subject (about 0.1 mm deep) and wrinkles that deepen with
   the expression (forehead and frown lines, crow's feet 0.05-0.4 mm,
   nasolabial folds up to 0.5 mm). The mesh is closed (flat neck cut),
   outward-oriented and in one piece.
5. Landmarks: procedural rest positions, posed like the surface, snapped to
   the closest point of the final mesh.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree
from skimage import measure

from facerecon import io, layout
from facerecon.data import add_build_arguments, build_selection, write_scan
from facerecon.data._sdf_primitives import (
    Pts,
    ellipse_xz,
    ellipsoid,
    mirrored,
    rotation_x,
    rotation_y,
    round_cone,
    shifted,
    smax,
    smin,
    sphere,
    to_pts,
    transformed,
)

# --------------------------------------------------------------------------------------
# Parameters


def _param(mean: float, sd: float, doc: str) -> float:
    """A dataclass field whose default is the population mean; ``sd`` drives sampling."""
    return field(default=mean, metadata={"sd": sd, "doc": doc})


@dataclass(frozen=True)
class Identity:
    """Per-subject shape parameters; defaults are the population means.

    Each is drawn as ``mean + sd * z`` with ``z`` a standard normal clipped to
    [-2, 2], in field order, from the subject's own generator.
    """

    head_width_mm: float = _param(152.0, 5.0, "cranial breadth; scales x")
    head_height_mm: float = _param(228.0, 7.0, "vertex to chin; scales y")
    head_depth_mm: float = _param(192.0, 4.0, "glabella to back of head; scales z")
    nose_length_mm: float = _param(50.0, 3.0, "nasion to subnasale")
    nose_width_mm: float = _param(34.0, 2.5, "alar width")
    nose_projection_mm: float = _param(19.0, 2.0, "tip ahead of the subnasale")
    brow_ridge_mm: float = _param(3.0, 1.2, "glabella and brow ridge protrusion")
    chin_projection_mm: float = _param(0.0, 2.5, "chin forward of the mean")
    chin_height_mm: float = _param(0.0, 3.0, "chin lower than the mean")
    cheekbone_mm: float = _param(3.0, 1.2, "malar (cheekbone) prominence")
    cheek_fullness_mm: float = _param(0.0, 1.5, "soft-tissue cheek thickness")
    lip_thickness_mm: float = _param(10.0, 1.5, "upper plus lower vermilion height")
    eye_spacing_mm: float = _param(63.0, 2.5, "distance between the eyeball centres")
    eye_depth_mm: float = _param(0.0, 1.2, "eyeballs and lids set back by")
    jaw_width_mm: float = _param(102.0, 5.0, "bigonial (jaw angle) width")
    mouth_width_mm: float = _param(50.0, 3.0, "corner-to-corner mouth width")
    wrinkle_depth_mm: float = _param(0.12, 0.03, "base depth of wrinkles (age)")
    pore_depth_mm: float = _param(0.08, 0.015, "depth of skin pores")

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Identity:
        """Draw every parameter from its clipped normal, in field order."""
        fields = dataclasses.fields(cls)
        z = np.clip(rng.standard_normal(len(fields)), -2.0, 2.0)
        return cls(**{f.name: f.default + f.metadata["sd"] * zf
                      for f, zf in zip(fields, z, strict=True)})


def _control(doc: str) -> float:
    """A muscle control field, 0 at rest."""
    return field(default=0.0, metadata={"doc": doc})


@dataclass(frozen=True)
class Controls:
    """Muscle controls of one expression (0 = neutral; the sizes are at 1)."""

    jaw_open: float = _control("jaw turns 25 deg about the ear axis, condyles slide 15 mm on")
    jaw_side: float = _control("jaw to the subject's left (+x): 6 mm shift and 4 deg yaw")
    jaw_forward: float = _control("jaw protrudes 7 mm")
    mouth_side: float = _control("mouth region shifts 9 mm to the subject's left (-1: right)")
    corner_up: float = _control("mouth corners 7 mm up (-1: down)")
    mouth_widen: float = _control("mouth corners 8 mm outward and 3 mm back (-1: inward)")
    lip_part: float = _control("lip lines part 6 mm each at the centre, jaw still")
    lip_pucker: float = _control("mouth region 9 mm forward, lips 3 mm further and fuller")
    lip_roll: float = _control("lips 4 mm back and 60% thinner: rolled in")
    chin_raise: float = _control("chin 4 mm up and 2 mm on, lower lip pushed up")
    cheek_puff: float = _control("cheeks inflated: buccal volume 12 mm larger")
    cheek_raise: float = _control("cheeks 3 mm up and out, deeper crow's feet and folds")
    dimple: float = _control("3 mm dents beside the mouth corners, corners back")
    brow_raise: float = _control("brows 7-8 mm up, forehead lines deepen")
    brow_inner_raise: float = _control("inner brows 8 mm up, forehead lines deepen")
    brow_lower: float = _control("brows 3-6 mm down and 3 mm together, frown lines deepen")
    eye_close: float = _control("eyelids close (1 = shut), crow's feet deepen")


#: One row of muscle controls per FaceScape expression (numbers as in layout.EXPRESSIONS).
EXPRESSION_TABLE: dict[int, Controls] = {
    1: Controls(),
    2: Controls(corner_up=1.0, mouth_widen=0.7, cheek_raise=1.0, eye_close=0.2),
    3: Controls(jaw_open=1.0, mouth_widen=0.4, lip_part=0.3, brow_raise=0.2),
    4: Controls(brow_lower=1.0, lip_roll=0.4, chin_raise=0.4, corner_up=-0.4),
    5: Controls(jaw_open=0.3, jaw_side=1.0),
    6: Controls(jaw_open=0.3, jaw_side=-1.0),
    7: Controls(jaw_open=0.25, jaw_forward=1.0),
    8: Controls(mouth_side=1.0, corner_up=0.1),
    9: Controls(mouth_side=-1.0, corner_up=0.1),
    10: Controls(dimple=1.0, mouth_widen=0.3, corner_up=0.15),
    11: Controls(chin_raise=1.0, corner_up=-0.3),
    12: Controls(lip_pucker=1.0, mouth_widen=-0.9),
    13: Controls(lip_pucker=0.8, mouth_widen=-0.6, lip_part=0.8, jaw_open=0.15),
    14: Controls(brow_inner_raise=1.0, corner_up=-0.8, chin_raise=0.3, eye_close=0.15),
    15: Controls(lip_roll=1.0, mouth_widen=0.1),
    16: Controls(corner_up=0.8, mouth_widen=1.0, lip_part=0.7, jaw_open=0.15,
                 cheek_raise=0.8, eye_close=0.15),
    17: Controls(cheek_puff=1.0, lip_pucker=0.3, mouth_widen=-0.2),
    18: Controls(eye_close=1.0),
    19: Controls(brow_raise=1.0),
    20: Controls(brow_lower=1.0, eye_close=0.1),
}

SdfFn = Callable[[np.ndarray], np.ndarray]  # (N, 3) points in mm -> (N,) values
_CHUNK = 16384  # points per SDF evaluation batch
GRID_MM = 2.0  # marching-cubes spacing; the face is refined once to about 1 mm
NECK_CUT_MM = -165.0  # flat cut of the neck (scaled by head height)

# --------------------------------------------------------------------------------------
# Shape


def _smoothstep(t: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, a cubic in between."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _bump(x_mm: np.ndarray, half_width_mm: float) -> np.ndarray:
    """1 at x = 0 falling to 0 at +-half_width (parabolic), 0 beyond."""
    return np.maximum(1.0 - (x_mm * (1.0 / half_width_mm)) ** 2, 0.0)


@dataclass(frozen=True)
class _Eye:
    """Eyeball and lids of one eye; the fissure is drawn in the eye's frame (mm)."""

    centre: np.ndarray  # eyeball centre
    side: float  # +1 for the subject's left eye (+x), -1 for the right
    half_chord_mm: float = 14.0
    upper_sagitta_mm: float = 5.0
    lower_sagitta_mm: float = 4.0
    tilt_rad: float = float(np.deg2rad(5.0))
    eyeball_mm: float = 12.0
    lid_mm: float = 14.5

    def arcs(self, close: float) -> tuple[float, float, float]:
        """Upper and lower lid sagitta and the fissure erosion (mm) for a closure in [0, 1]."""
        upper = self.upper_sagitta_mm * (1.0 - 0.6 * close)
        erosion = close * (0.5 * (self.upper_sagitta_mm + self.lower_sagitta_mm) + 0.8)
        return upper, self.lower_sagitta_mm, erosion

    def sdf(self, p: Pts, close: float) -> np.ndarray:
        """Eyeball plus lids: a ball 2.5 mm larger than the eyeball, cut by the almond
        fissure (two intersecting disks through the corners, extruded along z)."""
        upper, lower, erosion = self.arcs(close)
        cos, sin = np.cos(self.tilt_rad), np.sin(self.tilt_rad)
        u = (p[0] - self.centre[0]) * self.side - 0.5
        v = p[1] - self.centre[1]
        x, y = cos * u + sin * v, cos * v - sin * u
        c = self.half_chord_mm
        r_u = (c * c + upper * upper) / (2 * upper)
        r_l = (c * c + lower * lower) / (2 * lower)
        fissure = np.maximum(np.hypot(x, y - (upper - r_u)) - r_u,
                             np.hypot(x, y - (r_l - lower)) - r_l) + erosion
        lids = smax(sphere(p, self.centre, self.lid_mm), -fissure, 3.0)
        return smin(sphere(p, self.centre, self.eyeball_mm), lids, 1.0)

    def lid_points(self, close: float) -> np.ndarray:
        """Outer corner, upper lid (outer, inner), inner corner, lower lid (inner, outer)
        on the lid sphere: dlib's order for the right eye. Closed lids meet midway."""
        upper, lower, _ = self.arcs(close)
        c = self.half_chord_mm
        xs = np.array([c, c / 3, -c / 3, -c, -c / 3, c / 3])
        fall = 1 - (xs / c) ** 2
        mid = 0.5 * (upper - lower) * fall
        ys = mid + (1 - close) * np.where(np.arange(6) < 3, upper * fall - mid,
                                          -lower * fall - mid)
        cos, sin = np.cos(self.tilt_rad), np.sin(self.tilt_rad)
        x = (cos * xs - sin * ys + 0.5) * self.side + self.centre[0]
        y = sin * xs + cos * ys + self.centre[1]
        r2 = self.lid_mm**2 - (x - self.centre[0]) ** 2 - (y - self.centre[1]) ** 2
        return np.stack([x, y, self.centre[2] + np.sqrt(np.maximum(r2, 0.0))], axis=1)


class _Face:
    """Rest geometry of one identity: where every primitive and landmark sits, in mm."""

    def __init__(self, idn: Identity) -> None:
        self.idn = idn
        sx, sy, sz = idn.head_width_mm / 152, idn.head_height_mm / 228, idn.head_depth_mm / 192
        self.scale = s = np.array([sx, sy, sz])
        self.cranium_c, self.cranium_r = np.array([0, 28, -9]) * s, np.array([76, 100, 96]) * s
        self.neck_c, self.neck_r = np.array([0, 0, -20]) * s, np.array([50, 0, 46]) * s
        self.neck_top_mm, self.cut_mm = 0.0, NECK_CUT_MM * sy
        self.ear_c, self.ear_r = np.array([74, 0, -12]) * s, np.array([7.0, 28, 16])

        self.eye_y = 10 * sy
        self.brow_y = 30 * sy
        self.nasion = np.array([0, 20 * sy, 80 * sz])
        self.subnasale = np.array([0, self.nasion[1] - idn.nose_length_mm, 84 * sz])
        self.tip = self.subnasale + [0, 8, idn.nose_projection_mm]
        self.stomion = m = np.array([0, self.subnasale[1] - 20 * sy, 84 * sz])
        self.menton_y = m[1] - 50 * sy - idn.chin_height_mm
        self.pivot = np.array([0, -6 * sy, -4 * sz])

        ex = idn.eye_spacing_mm / 2
        eye_z = 58 * sz - idn.eye_depth_mm
        self.eyes = (_Eye(np.array([-ex, self.eye_y, eye_z]), -1.0),
                     _Eye(np.array([ex, self.eye_y, eye_z]), 1.0))
        self.socket_c, self.socket_r = self.eyes[1].centre + [0, 0, 12], np.array([18, 12, 13.0])

        br = idn.brow_ridge_mm
        self.brow_mid = np.array([0, 27 * sy, self.cranium_front_z(0, 27 * sy) + br - 9])
        self.brow_side = np.array([42 * sx, 31 * sy,
                                   self.cranium_front_z(42 * sx, 31 * sy) + 0.5 * br - 8])

        self.midface_c, self.midface_r = np.array([0, -8, 22]) * s, np.array([60, 42, 56]) * s
        self.cheekbone_c = np.array([43, -4, 50]) * s
        self.cheekbone_r = np.array([19, 13, 13 + idn.cheekbone_mm])
        self.cheek_top = np.array([40, -20, 44]) * s
        self.cheek_bottom = np.array([38 * sx, m[1] - 22 * sy, 36 * sz])
        self.cheek_radius_mm = 18 + idn.cheek_fullness_mm
        self.buccal_c = np.array([35 * sx, m[1] + 2, 44 * sz])
        self.upper_muzzle_c = np.array([0, m[1] + 8 * sy, 61 * sz])
        self.upper_muzzle_r = np.array([29 * sx, 18 * sy, 22 * sz])
        self.lower_face_c = np.array([0, m[1] - 6 * sy, 18 * sz])
        self.lower_face_r = np.array([idn.jaw_width_mm / 2 + 6, 46 * sy, 60 * sz])
        self.lower_muzzle_c = np.array([0, m[1] - 9 * sy, 60 * sz])
        self.lower_muzzle_r = np.array([26 * sx, 15 * sy, 21 * sz])
        self.chin_c = np.array([0, self.menton_y + 14, 64 * sz + idn.chin_projection_mm])
        self.chin_r = np.array([21.0, 14, 13])
        self.tongue_c, self.tongue_r = m + [0, -12, -37 * sz], np.array([20.0, 9, 28])

        nw = idn.nose_width_mm
        sn = self.subnasale
        self.nose_base_c, self.nose_base_r = sn + [0, 4, 3], np.array([nw / 2 - 3, 6, 9])
        self.ala_c, self.ala_r = sn + [nw / 2 - 7, 4, -3], np.array([7.0, 6.5, 8])
        self.dorsum_a, self.dorsum_b = self.nasion + [0, -2, -6], self.tip + [0, 5, -8]
        self.nostril_a = sn + [6.5 * nw / 34, -3, 7]
        self.nostril_b = sn + [7.5 * nw / 34, 9, 4]
        self.nostril_mm = 3.0 * nw / 34

        self.mouth_half_width_mm = hw = idn.mouth_width_mm / 2
        self.arch_per_mm = 6.5 / hw**2  # the corners sit 6.5 mm behind the centre
        self.upper_lip_mm = 0.45 * idn.lip_thickness_mm
        self.lower_lip_mm = 0.55 * idn.lip_thickness_mm

    def cranium_front_z(self, x: float, y: float) -> float:
        """z of the cranium ellipsoid's front surface at (x, y)."""
        q = 1 - (x / self.cranium_r[0]) ** 2 - ((y - self.cranium_c[1]) / self.cranium_r[1]) ** 2
        return float(self.cranium_c[2] + self.cranium_r[2] * np.sqrt(max(q, 0.0)))

    def face_weight(self, points: np.ndarray) -> np.ndarray:
        """1 on the face, fading to 0 towards the edge of the refined region; (N,)."""
        top, bottom = self.brow_y + 52, self.menton_y - 40
        e = (points[:, 0] / 64) ** 2 + ((points[:, 1] - 0.5 * (top + bottom))
                                          / (0.5 * (top - bottom))) ** 2
        return _smoothstep((1 - e) / 0.15) * _smoothstep((points[:, 2] - 20) / 15)

    def nasolabial_fold(self, side: float) -> np.ndarray:
        """(13, 2) xy polyline from beside the nostril wing to below the mouth corner."""
        nw, sn, m = self.idn.nose_width_mm, self.subnasale, self.stomion
        a = np.array([side * (nw / 2 + 1), sn[1] + 2])
        b = np.array([side * (nw / 2 + 10), m[1] + 6])
        e = np.array([side * (self.mouth_half_width_mm + 8), m[1] - 16])
        t = np.linspace(0, 1, 13)[:, None]
        return (1 - t) ** 2 * a + 2 * t * (1 - t) * b + t**2 * e

    def landmark_guesses(self) -> tuple[np.ndarray, np.ndarray]:
        """Rough rest positions of the 68 landmarks (dlib order; projected onto the
        surface later) and how much each one follows the jaw (0..1)."""
        pts, jaw = np.zeros((68, 3)), np.zeros(68)
        t = np.linspace(-np.pi / 2, np.pi / 2, 17)  # jaw line, subject's right ear first
        top_y = self.eye_y - 4
        pts[:17] = np.stack([0.93 * self.cranium_r[0] * np.sin(t),
                             top_y - (top_y - self.menton_y) * np.cos(t),
                             10 + 60 * np.cos(t)], axis=1)
        jaw[:17] = np.clip((1 - np.abs(t) / (np.pi / 2)) / 0.45, 0, 1)
        brow_x = np.array([48, 40, 31, 22, 13.0]) * self.scale[0]
        brow_y = self.brow_y + np.array([-3, 1, 3, 2, 0.0])
        for k, (x, y) in enumerate(zip(brow_x, brow_y, strict=True)):
            pts[17 + k] = [-x, y, self.cranium_front_z(x, y) + 2]
            pts[26 - k] = [x, y, self.cranium_front_z(x, y) + 2]
        for k, f in enumerate(np.linspace(0, 1, 4)):  # nose bridge to the tip
            pts[27 + k] = self.nasion + f * (self.tip - self.nasion)
        nw, sn = self.idn.nose_width_mm, self.subnasale
        pts[31:36] = sn + np.array([[-0.3 * nw, 3, 3], [-0.15 * nw, 1.5, 5], [0, 1, 6],
                                    [0.15 * nw, 1.5, 5], [0.3 * nw, 3, 3]])
        hw, hu, hl = self.mouth_half_width_mm, self.upper_lip_mm, self.lower_lip_mm
        outer = np.array([[-1, 0], [-0.55, 1.3 * hu], [-0.22, 1.55 * hu], [0, 1.4 * hu],
                          [0.22, 1.55 * hu], [0.55, 1.3 * hu], [1, 0], [0.55, -1.2 * hl],
                          [0.22, -1.5 * hl], [0, -1.55 * hl], [-0.22, -1.5 * hl],
                          [-0.55, -1.2 * hl]])
        inner = np.array([[-0.92, 0], [-0.4, 0], [0, 0], [0.4, 0], [0.92, 0], [0.4, 0], [0, 0],
                          [-0.4, 0]])
        for first, table, front_mm in ((48, outer, 2.0), (60, inner, 1.0)):
            x = table[:, 0] * hw
            pts[first:first + len(table)] = np.stack(
                [x, self.stomion[1] + table[:, 1],
                 self.stomion[2] + front_mm - self.arch_per_mm * x**2], axis=1)
        jaw[[48, 54, 60, 64]] = 0.5
        jaw[55:60] = jaw[65:68] = 1.0
        return pts, jaw


@dataclass(frozen=True)
class _Handle:
    """A soft-tissue handle: ``vector_mm`` fading as an anisotropic Gaussian."""

    centre: np.ndarray
    sigma_mm: np.ndarray
    vector_mm: np.ndarray

    def weight(self, p: Pts) -> np.ndarray:
        """How much of the displacement each point gets (0..1)."""
        x, y, z = ((p[i] - self.centre[i]) * (1.0 / self.sigma_mm[i]) for i in range(3))
        return np.exp(-0.5 * (x * x + y * y + z * z))


class _Pose:
    """The head of one identity under one expression: its SDF and landmark motion.

    Forward model: rest point -> rigid jaw (jaw-borne parts) -> soft-tissue
    displacement D. The SDF evaluates primitives at ``s = x - D(x)`` (the inverse
    warp; D is small and smooth) and jaw-borne ones at the inverse jaw transform
    of ``s``. Cheeks bridge skull and jaw, so an open jaw stretches them.
    """

    JAW_OPEN_DEG = 25.0

    def __init__(self, face: _Face, controls: Controls) -> None:
        self.face, self.c = face, controls
        f, c = face, controls
        self.jaw_rot = rotation_y(np.deg2rad(4.0 * c.jaw_side)) @ rotation_x(
            np.deg2rad(self.JAW_OPEN_DEG * c.jaw_open))
        # the condyles slide forward as the jaw opens
        self.jaw_shift = np.array([6.0 * c.jaw_side, -5.0 * c.jaw_open,
                                   15.0 * c.jaw_open + 7.0 * c.jaw_forward])
        m, hw, crz = f.stomion, f.mouth_half_width_mm, f.cranium_front_z
        handles = [
            _Handle(m + [0, 0, -4], np.full(3, 20.0),
                    np.array([9.0 * c.mouth_side, 2.5 * c.chin_raise,
                              9.0 * c.lip_pucker - 2.0 * c.lip_roll])),
            _Handle(self.jaw_forward(f.chin_c + [0, 5, 14]), np.full(3, 13.0),
                    np.array([0.0, 4.0 * c.chin_raise, 2.0 * c.chin_raise])),
        ]
        for side in (-1.0, 1.0):
            handles += [
                _Handle(np.array([side * hw, m[1], m[2] - 6.0]), np.full(3, 11.0),
                        np.array([side * 8.0 * c.mouth_widen,
                                  7.0 * c.corner_up + 1.5 * c.cheek_raise,
                                  -3.0 * max(c.mouth_widen, 0.0) - 2.0 * c.dimple])),
                _Handle(np.array([side * (hw + 9.0), m[1] - 2.0, m[2] - 12.0]),
                        np.array([4.0, 5.0, 20.0]), np.array([0.0, 0.0, -3.0 * c.dimple])),
                _Handle(np.array([side * 16.0, f.brow_y, crz(16.0, f.brow_y)]), np.full(3, 11.0),
                        np.array([-side * 3.0 * c.brow_lower,
                                  8.0 * (c.brow_raise + c.brow_inner_raise) - 6.0 * c.brow_lower,
                                  1.0 * c.brow_lower])),
                _Handle(np.array([side * 42.0, f.brow_y + 2.0, crz(42.0, f.brow_y)]),
                        np.full(3, 12.0),
                        np.array([0.0, 7.0 * c.brow_raise - 3.0 * c.brow_lower
                                  - 1.0 * c.brow_inner_raise, 0.0])),
                _Handle(np.array([side * 40.0, -22.0, 62.0]) * f.scale, np.full(3, 15.0),
                        np.array([0.0, 3.0 * c.cheek_raise, 3.0 * c.cheek_raise])),
            ]
        self.handles = [h for h in handles if np.any(h.vector_mm != 0.0)]
        self.cheek_bottoms = [self.jaw_forward(f.cheek_bottom * [side, 1, 1])
                              for side in (-1.0, 1.0)]

    # -- motion ------------------------------------------------------------------------

    def jaw_forward(self, p: np.ndarray) -> np.ndarray:
        """Rest -> posed for jaw-borne points, (..., 3) rows."""
        return (p - self.face.pivot) @ self.jaw_rot.T + self.face.pivot + self.jaw_shift

    def _jaw_inverse(self, p: Pts) -> Pts:
        """Posed -> rest for jaw-borne points."""
        q = shifted(p, self.face.pivot + self.jaw_shift)
        return transformed(q, self.jaw_rot.T, self.face.pivot)

    def _unwarp(self, p: Pts) -> Pts:
        """Skin (rest) coordinates of posed points: ``p - D(p)``."""
        out = list(p)
        for h in self.handles:
            w = h.weight(p)
            for i in range(3):
                if h.vector_mm[i] != 0.0:
                    out[i] = out[i] - w * h.vector_mm[i]
        return tuple(out)

    def unwarp(self, points: np.ndarray) -> np.ndarray:
        """``p - D(p)`` for (N, 3) rows."""
        return np.stack(self._unwarp(to_pts(points)), axis=1)

    def warp(self, rest: np.ndarray, iterations: int = 12) -> np.ndarray:
        """Posed positions of rest points: solves ``x - D(x) = rest`` by fixed point."""
        x = rest
        for _ in range(iterations if self.handles else 0):
            x = rest + (x - self.unwarp(x))
        return x

    def landmarks(self, rest: np.ndarray, jaw_weight: np.ndarray) -> np.ndarray:
        """Posed landmarks from projected rest ones (eyelids and inner lips follow the
        controls, jaw-borne ones the jaw, all of them the soft tissue)."""
        f, c = self.face, self.c
        pts = rest.copy()
        pts[36:42] = f.eyes[0].lid_points(c.eye_close)
        pts[42:48] = f.eyes[1].lid_points(c.eye_close)[[3, 2, 1, 0, 5, 4]]
        part = self._lip_part_mm(pts[60:68, 0])
        pts[61:64, 1] += part[1:4]
        pts[65:68, 1] -= part[5:8]
        pts += jaw_weight[:, None] * (self.jaw_forward(pts) - pts)
        return self.warp(pts)

    # -- shape -------------------------------------------------------------------------

    def sdf(self, points: np.ndarray) -> np.ndarray:
        """Signed distance bound of the posed head (mm, negative inside) at (N, 3) rows.

        Evaluated in chunks that stay in cache (2-3 times faster); every value
        depends on its own point only.
        """
        return np.concatenate([self._sdf(to_pts(points[i:i + _CHUNK]))
                               for i in range(0, len(points), _CHUNK)] or [np.zeros(0)])

    def _sdf(self, p: Pts) -> np.ndarray:
        """The SDF of one batch: skull parts, jaw parts, bridges, then the features."""
        f, c = self.face, self.c
        s = self._unwarp(p)
        j = self._jaw_inverse(s)
        sm = mirrored(s)

        head = smin(ellipsoid(s, f.cranium_c, f.cranium_r),
                    ellipsoid(s, f.midface_c, f.midface_r), 20.0)
        neck = np.maximum(ellipse_xz(s, f.neck_c, f.neck_r), s[1] - f.neck_top_mm)
        head = smin(head, neck, 25.0)
        head = smin(head, ellipsoid(sm, f.ear_c, f.ear_r), 4.0)
        head = smin(head, round_cone(sm, f.brow_mid, f.brow_side, 9.0, 8.0), 10.0)
        head = smin(head, ellipsoid(sm, f.cheekbone_c, f.cheekbone_r), 12.0)
        head = smin(head, ellipsoid(s, f.upper_muzzle_c, f.upper_muzzle_r), 12.0)

        jaw = smin(ellipsoid(j, f.lower_face_c, f.lower_face_r),
                   ellipsoid(j, f.chin_c, f.chin_r), 16.0)
        jaw = smin(jaw, ellipsoid(j, f.lower_muzzle_c, f.lower_muzzle_r), 10.0)
        head = smin(head, jaw, 15.0)
        for side, bottom in zip((-1.0, 1.0), self.cheek_bottoms, strict=True):
            cheek = round_cone(s, f.cheek_top * [side, 1, 1], bottom, f.cheek_radius_mm,
                               f.cheek_radius_mm)
            head = smin(head, cheek, 10.0)
        puff = c.cheek_puff
        head = smin(head, ellipsoid(sm, f.buccal_c + [4 * puff, 0, 6 * puff],
                                    np.array([10.0, 12, 10]) + 12 * puff), 8.0)

        nose = smin(round_cone(s, f.dorsum_a, f.dorsum_b, 6.0, 7.0),
                    sphere(s, f.tip - [0, 0, 9], 9.0), 6.0)
        nose = smin(nose, ellipsoid(s, f.nose_base_c, f.nose_base_r), 5.0)
        nose = smin(nose, ellipsoid(sm, f.ala_c, f.ala_r), 4.0)
        head = smin(head, nose, 5.0)
        nostrils = round_cone(sm, f.nostril_a, f.nostril_b, f.nostril_mm, f.nostril_mm)
        head = smax(head, -nostrils, 1.5)

        upper_frame, lower_frame = self._mouth_frames(s, j)
        head = smax(head, -self._cavity(upper_frame, lower_frame), 2.0)
        head = smin(head, self._lips(upper_frame, lower_frame), 4.0)
        head = smin(head, ellipsoid(j, f.tongue_c, f.tongue_r), 1.0)

        head = smax(head, -ellipsoid(sm, f.socket_c, f.socket_r), 8.0)
        head = smin(head, f.eyes[1].sdf(sm, c.eye_close), 5.0)
        return np.maximum(head, f.cut_mm - s[1])

    def _lip_part_mm(self, x_mm: np.ndarray) -> np.ndarray:
        """How far each lip line moves away from the stomion line at ``x`` (mm)."""
        return 6.0 * self.c.lip_part * _bump(x_mm, self.face.mouth_half_width_mm)

    def _mouth_frames(self, s: Pts, j: Pts) -> tuple[Pts, Pts]:
        """Frames of the upper (skull) and lower (jaw) lip: origin at the stomion,
        the dental arch bent flat, the lip lines bent apart by ``lip_part``."""
        f = self.face
        frames = []
        for p, sign in ((s, -1.0), (j, 1.0)):
            x, y, z = shifted(p, f.stomion)
            frames.append((x, y + sign * self._lip_part_mm(x), z + f.arch_per_mm * x * x))
        return frames[0], frames[1]

    def _lips(self, upper_frame: Pts, lower_frame: Pts) -> np.ndarray:
        """Upper and lower lip as ellipsoids in their frames."""
        f, c = self.face, self.c
        z = -4.0 + 3.0 * c.lip_pucker - 4.0 * c.lip_roll
        depth = 6.5 + 2.0 * c.lip_pucker - 3.0 * c.lip_roll
        keep = 1.0 - 0.6 * c.lip_roll
        hu, hl = f.upper_lip_mm * keep, f.lower_lip_mm * keep
        upper = ellipsoid(upper_frame, (0, 0.5 * hu, z),
                          (f.mouth_half_width_mm + 1, 1.1 * hu + c.lip_pucker, depth))
        lower = ellipsoid(lower_frame, (0, -0.5 * hl + 1.5 * c.chin_raise, z - 0.5),
                          (f.mouth_half_width_mm, 1.1 * hl + c.lip_pucker, depth))
        return np.minimum(upper, lower)

    def _cavity(self, upper_frame: Pts, lower_frame: Pts) -> np.ndarray:
        """Mouth cavity between the two lip lines (closed by 1 mm when they touch),
        bounded by the mouth corners and the throat."""
        bound = ellipse_xz(upper_frame, (0.0, 0, -34), (self.face.mouth_half_width_mm + 1, 0, 40))
        return np.maximum(np.maximum(upper_frame[1], -lower_frame[1]), bound) + 1.0


# --------------------------------------------------------------------------------------
# Meshing

_SQRT3 = float(np.sqrt(3.0))
_LIPSCHITZ = 2.5  # slope bound assumed near the surface


def _narrow_band_values(sdf: SdfFn, origin: np.ndarray, coarse_cells: np.ndarray, h_mm: float,
                        levels: int = 3) -> np.ndarray:
    """SDF on a grid of spacing ``h_mm``, evaluated exactly only near the surface.

    Starts on a grid ``2**(levels-1)`` times coarser. A finer node is evaluated
    when, with the SDF's slope at most ``_LIPSCHITZ``, its parent's value cannot
    rule out the surface within one fine cell diagonal; the others keep the
    parent's sign and a lower bound of the magnitude. Marching cubes then sees
    the zero crossings of a fully evaluated grid (checked on all expressions of
    several subjects) for a quarter to a half of the evaluations.
    """
    step = 2 ** (levels - 1)
    n = np.asarray(coarse_cells) + 1
    index = np.stack(np.meshgrid(*[np.arange(k) for k in n], indexing="ij"), -1).reshape(-1, 3)
    values = sdf(origin + index * (step * h_mm)).reshape(n)
    for _ in range(levels - 1):
        step //= 2
        n = 2 * (n - 1) + 1
        parent = values[np.ix_(*[np.arange(k) // 2 for k in n])]
        slack = _LIPSCHITZ * step * h_mm * _SQRT3
        bound = np.abs(parent) - slack
        need = bound <= slack
        values = np.sign(parent) * np.maximum(bound, slack)
        values[need] = sdf(origin + np.argwhere(need) * (step * h_mm))
    return values


def _marching_cubes(values: np.ndarray, origin: np.ndarray, h_mm: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Zero level set of a grid as an outward-oriented triangle mesh (largest part only)."""
    # keep values off zero so that no vertex lands (almost) on a grid node: no slivers
    clear = 0.02 * h_mm
    values = np.where(np.abs(values) < clear, np.where(values < 0, -clear, clear), values)
    vertices, faces, _, _ = measure.marching_cubes(values, 0.0, spacing=(h_mm,) * 3,
                                                   allow_degenerate=False)
    n = len(vertices)
    adjacency = sparse.coo_matrix((np.ones(faces.size), (faces.ravel(),
                                                         np.roll(faces, 1, axis=1).ravel())),
                                  shape=(n, n))
    _, label = csgraph.connected_components(adjacency, directed=False)
    keep = label == np.argmax(np.bincount(label))
    faces = faces[keep[faces[:, 0]]]
    new_index = np.cumsum(keep) - 1
    return vertices[keep] + origin, new_index[faces]


def _refine(vertices: np.ndarray, faces: np.ndarray, selected: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Split every edge of the selected faces at its midpoint, conformingly.

    Faces with three split edges become four, faces with one or two split edges
    (the neighbours of the selection) become two or three, so the mesh stays
    closed. Orientation is preserved.
    """
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    keys, edge_of = np.unique(edges[:, 0] * len(vertices) + edges[:, 1], return_inverse=True)
    edge_of = edge_of.reshape(-1, 3)  # edge k of a face joins corners k and k+1
    split = np.zeros(len(keys), dtype=bool)
    split[edge_of[selected].ravel()] = True
    midpoint = np.full(len(keys), -1)
    midpoint[split] = len(vertices) + np.arange(split.sum())
    ends = np.stack(np.divmod(keys[split], len(vertices)), axis=1)
    vertices = np.vstack([vertices, vertices[ends].mean(axis=1)])

    pattern = split[edge_of]
    count = pattern.sum(axis=1)
    # rotate faces so that the split edges come first: 1 -> edge 0; 2 -> edges 0 and 1
    first = np.where(count == 1, np.argmax(pattern, axis=1),
                     np.where(count == 2, (np.argmin(pattern, axis=1) + 1) % 3, 0))
    roll = (first[:, None] + np.arange(3)) % 3
    a, b, c = np.take_along_axis(faces, roll, axis=1).T
    ab, bc, ca = np.take_along_axis(midpoint[edge_of], roll, axis=1).T
    out = [np.stack([a, b, c], 1)[count == 0]]
    one = count == 1
    out += [np.stack([a, ab, c], 1)[one], np.stack([ab, b, c], 1)[one]]
    two = count == 2
    out += [np.stack([a, ab, c], 1)[two], np.stack([ab, b, bc], 1)[two],
            np.stack([ab, bc, c], 1)[two]]
    three = count == 3
    out += [np.stack(t, 1)[three] for t in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))]
    return vertices, np.vstack(out)


_TETRA = np.array([[1.0, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, 1, 1]])


def _project(sdf: SdfFn, points: np.ndarray, iterations: int, max_step_mm: float,
             eps_mm: float = 0.05) -> np.ndarray:
    """Newton steps onto the zero level set along the (tetrahedral) SDF gradient."""
    points = points.copy()
    for _ in range(iterations):
        values = sdf((points[:, None, :] + eps_mm * _TETRA).reshape(-1, 3)).reshape(-1, 4)
        gradient = values @ _TETRA / (4 * eps_mm)
        step = values.mean(axis=1, keepdims=True) * gradient / np.maximum(
            np.einsum("ij,ij->i", gradient, gradient), 1e-12)[:, None]
        length = np.linalg.norm(step, axis=1, keepdims=True)
        points -= step * np.minimum(1.0, max_step_mm / np.maximum(length, 1e-12))
    return points


def _face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unnormalised face normals (length = twice the area)."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    return np.cross(b - a, c - a)


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals."""
    n = _face_normals(vertices, faces)
    out = np.stack([np.bincount(faces.ravel(), np.repeat(n[:, k], 3), len(vertices))
                    for k in range(3)], axis=1)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def _settle(sdf: SdfFn, vertices: np.ndarray, faces: np.ndarray, movable: np.ndarray) -> np.ndarray:
    """Project the movable vertices onto the zero level set (two Newton steps),
    undoing the move around any triangle that would flip or collapse."""
    moved = vertices.copy()
    moved[movable] = _project(sdf, vertices[movable], iterations=2, max_step_mm=0.5 * GRID_MM)
    before = _face_normals(vertices, faces)
    for _ in range(5):
        after = _face_normals(moved, faces)
        bad = np.einsum("ij,ij->i", before, after) <= 0.01 * np.einsum("ij,ij->i", before, before)
        if not bad.any():
            break
        corners = faces[bad].ravel()
        moved[corners] = vertices[corners]
    return moved


def _closest_points(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray,
                    neighbours: int = 16) -> np.ndarray:
    """Closest points on a triangle mesh, searched among the faces around the
    ``neighbours`` nearest vertices: exact for points near a mesh of small
    triangles like ours, and much faster than building a triangle index."""
    _, near = cKDTree(vertices).query(points, k=neighbours)
    corner_order = np.argsort(faces.ravel(), kind="stable")
    starts = np.searchsorted(faces.ravel()[corner_order], np.arange(len(vertices) + 1))
    out = np.empty_like(points)
    for i, (point, vs) in enumerate(zip(points, near, strict=True)):
        candidates = np.unique(np.concatenate(
            [corner_order[starts[v]:starts[v + 1]] // 3 for v in vs]))
        closest = trimesh.triangles.closest_point(
            vertices[faces[candidates]], np.repeat(point[None], len(candidates), axis=0))
        out[i] = closest[np.argmin(np.linalg.norm(closest - point, axis=1))]
    return out


# --------------------------------------------------------------------------------------
# Fine detail


def _groove(x: np.ndarray, y: np.ndarray, polyline: np.ndarray, width_mm: float) -> np.ndarray:
    """Profile (0..1) of a groove along a 2-D polyline in the xy plane, tapered at its ends."""
    a, b = polyline[:-1], polyline[1:]
    ab = b - a
    seg_len = np.linalg.norm(ab, axis=1)
    start = np.concatenate([[0.0], np.cumsum(seg_len)])[:-1]
    px, py = x[:, None] - a[:, 0], y[:, None] - a[:, 1]
    t = np.clip((px * ab[:, 0] + py * ab[:, 1]) / seg_len**2, 0.0, 1.0)
    d2 = (px - t * ab[:, 0]) ** 2 + (py - t * ab[:, 1]) ** 2
    nearest = np.argmin(d2, axis=1)
    rows = np.arange(len(x))
    along = (start[nearest] + t[rows, nearest] * seg_len[nearest]) / seg_len.sum()
    return np.exp(-d2[rows, nearest] / width_mm**2) * np.sin(np.pi * along)


@dataclass(frozen=True)
class _Detail:
    """Per-subject fine-detail layout (pores, wrinkle strengths), shared by all scans."""

    pores: cKDTree  # pore centres in (arc length around the face, y), mm
    pore_depth_mm: np.ndarray
    line_strength: np.ndarray  # forehead lines, depth factors
    line_phase: np.ndarray

    PORE_SPACING_MM = 2.4
    PORE_SIGMA_MM = 0.5
    ARC_RADIUS_MM = 80.0

    @classmethod
    def sample(cls, idn: Identity, rng: np.random.Generator) -> _Detail:
        """Pores on a jittered grid, random depths; four forehead lines."""
        s = cls.PORE_SPACING_MM
        u, v = np.meshgrid(np.arange(-95, 95, s), np.arange(-150, 95, s), indexing="ij")
        centres = np.stack([u.ravel(), v.ravel()], axis=1)
        centres += rng.uniform(-0.4 * s, 0.4 * s, centres.shape)
        depth = idn.pore_depth_mm * rng.uniform(0.5, 1.5, len(centres))
        return cls(cKDTree(centres), depth, rng.uniform(0.6, 1.2, 4), rng.uniform(0, 2 * np.pi, 4))

    def depth_mm(self, face: _Face, c: Controls, r: np.ndarray) -> np.ndarray:
        """Inward displacement (mm) of the skin at rest-frame points ``r`` (N, 3):
        forehead and frown lines, crow's feet, nasolabial folds and pores."""
        x, y, z = r.T
        wrinkle = face.idn.wrinkle_depth_mm
        out = np.zeros(len(r))
        span = np.clip(1 - (x / 42) ** 2, 0, None)
        lift = 0.5 + 2.0 * c.brow_raise + 1.5 * c.brow_inner_raise
        lines = zip(self.line_strength, self.line_phase, strict=True)
        for k, (strength, phase) in enumerate(lines):
            line_y = face.brow_y + 15 + 8.5 * k + 1.2 * np.sin(x / 15 + phase)
            out += wrinkle * strength * lift * span * np.exp(-((y - line_y) / 1.0) ** 2)
        frown = _smoothstep((y - face.brow_y + 6) / 4) * _smoothstep((face.brow_y + 12 - y) / 4)
        out += wrinkle * (0.3 + 2.5 * c.brow_lower) * frown * np.exp(-((np.abs(x) - 6) / 0.9) ** 2)

        squint = 0.4 + 1.6 * c.cheek_raise + 1.2 * c.eye_close
        fold = 1.0 + 2.0 * c.cheek_raise + max(c.corner_up, 0.0) + 0.5 * max(c.mouth_widen, 0.0)
        for eye in face.eyes:
            corner = eye.centre[:2] + [eye.side * (eye.half_chord_mm + 1.0), 1.5]
            for angle in np.deg2rad([-35.0, -12.0, 10.0, 32.0]):
                direction = np.array([eye.side * np.cos(angle), np.sin(angle)])
                out += wrinkle * squint * _groove(x, y, corner + np.outer([4.0, 16.0], direction),
                                                  0.7)
        for side in (-1.0, 1.0):
            out += wrinkle * fold * _groove(x, y, face.nasolabial_fold(side), 1.5)

        u = self.ARC_RADIUS_MM * np.arctan2(x, z + 10)
        distance, index = self.pores.query(np.stack([u, y], 1), k=2,
                                           distance_upper_bound=4 * self.PORE_SIGMA_MM)
        found = np.isfinite(distance)
        bump = np.zeros(distance.shape)
        bump[found] = self.pore_depth_mm[index[found]] * np.exp(
            -0.5 * (distance[found] / self.PORE_SIGMA_MM) ** 2)
        hw, m = face.mouth_half_width_mm, face.stomion
        bare = np.exp(-((x / (hw + 4)) ** 2 + ((y - m[1]) / 11) ** 2) ** 3)  # lips
        for eye in face.eyes:
            e = ((x - eye.centre[0]) / 17) ** 2 + ((y - eye.centre[1]) / 10) ** 2
            bare += np.exp(-(e**3))
        out += bump.sum(axis=1) * np.clip(1 - bare, 0, 1)
        return out


# --------------------------------------------------------------------------------------
# Scans


@dataclass(frozen=True)
class Subject:
    """Everything about one subject that its 20 scans share."""

    face: _Face
    detail: _Detail
    rest_landmarks: np.ndarray  # (68, 3) on the neutral surface
    landmark_jaw: np.ndarray  # (68,) how much each landmark follows the jaw
    grid_origin: np.ndarray
    grid_cells: np.ndarray  # coarse cells (4 * GRID_MM) per axis

    @property
    def identity(self) -> Identity:
        return self.face.idn


def make_subject(seed: int, subject_id: int) -> Subject:
    """Draw a subject from ``np.random.default_rng([seed, subject_id])``: identity
    first, then its detail layout; place its landmarks and its grid."""
    rng = np.random.default_rng([seed, subject_id])
    identity = Identity.sample(rng)
    face = _Face(identity)
    detail = _Detail.sample(identity, rng)
    guesses, jaw = face.landmark_guesses()
    rest = _project(_Pose(face, Controls()).sdf, guesses, iterations=12, max_step_mm=4.0)
    half_width = face.ear_c[0] + face.ear_r[0] + 6
    lo = np.array([-half_width, face.cut_mm - 2 * GRID_MM,
                   face.cranium_c[2] - face.cranium_r[2] - 6])
    hi = np.array([half_width, face.cranium_c[1] + face.cranium_r[1] + 6,
                   max(face.tip[2], face.stomion[2] + 14) + 10])
    cells = np.ceil((hi - lo) / (4 * GRID_MM)).astype(int)
    return Subject(face, detail, rest, jaw, lo, cells)


def make_scan(subject: Subject, expression: int, *, detail: bool = True
              ) -> tuple[trimesh.Trimesh, np.ndarray]:
    """Mesh and 68 landmarks of one expression (``detail=False`` leaves out the
    fine-detail displacement, for comparison)."""
    pose = _Pose(subject.face, EXPRESSION_TABLE[expression])
    values = _narrow_band_values(pose.sdf, subject.grid_origin, subject.grid_cells, GRID_MM)
    vertices, faces = _marching_cubes(values, subject.grid_origin, GRID_MM)
    on_face = subject.face.face_weight(vertices[faces].mean(axis=1)) > 0
    n_coarse, touched = len(vertices), faces[on_face].ravel()
    vertices, faces = _refine(vertices, faces, on_face)
    movable = np.arange(len(vertices)) >= n_coarse  # the new midpoints
    movable[touched] = True
    vertices = _settle(pose.sdf, vertices, faces, movable)
    if detail:
        weight = subject.face.face_weight(vertices)
        on_face = weight > 0
        normals = _vertex_normals(vertices, faces)[on_face]
        depth = subject.detail.depth_mm(subject.face, pose.c, pose.unwarp(vertices[on_face]))
        vertices[on_face] -= (weight[on_face] * depth)[:, None] * normals
    landmarks = pose.landmarks(subject.rest_landmarks, subject.landmark_jaw)
    return trimesh.Trimesh(vertices, faces, process=False), _closest_points(vertices, faces,
                                                                            landmarks)


def build_subject(out_root: str | Path, subject_id: int, seed: int,
                  expressions: Sequence[int]) -> list[Path]:
    """Write the scans and landmarks of one subject; returns the OBJ paths.

    Files depend only on (seed, subject_id, expression), never on what else is built.
    """
    subject = make_subject(seed, subject_id)
    written = []
    for expression in expressions:
        start = time.perf_counter()
        mesh, landmarks = make_scan(subject, expression)
        path = write_scan(out_root, subject_id, expression, mesh, landmarks)
        written.append(path)
        print(f"subject {subject_id} {layout.scan_name(expression)}: "
              f"{len(mesh.vertices)} vertices, {len(mesh.faces)} faces, "
              f"{time.perf_counter() - start:.2f} s", flush=True)
    return written


# --------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> None:
    """Build the requested subjects, printing one line per scan."""
    parser = argparse.ArgumentParser(
        prog="python -m facerecon.data.synthetic",
        description="Build the procedural synthetic face dataset in FaceScape's layout.")
    add_build_arguments(parser)
    args = parser.parse_args(argv)
    subjects, expressions = build_selection(parser, args)
    for subject_id in subjects:
        build_subject(args.out, subject_id, args.seed, expressions)


if __name__ == "__main__":
    io.run_cli(main)
