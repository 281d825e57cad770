"""Painted face features for renders of scans without a texture, placed by their 68 landmarks.

An untextured render shows a face without eyebrows, lips, lashes or eyes: on
grey renders of ICT-FaceKit scans dlib guessed the brows from the shading of
the brow ridge (about 6 mm too low). This module paints what every face has
where the 68-point mark-up (Multi-PIE / iBUG 300-W, dlib's order) says it
is, as a function of the 3D surface point (so the paint is as sharp as the
image, whatever the mesh resolution):

- skin everywhere else (:data:`SKIN`);
- eyebrow hair: in the mark-up the brow points run along the *upper* edge of
  each brow, from its outer tip (17, 26) to its inner end (21, 22). The brow
  is the band from that curve down by its height: :data:`BROW_HEIGHTS` at the
  tip, the next point and the inner end (human brows taper from a thin tail
  to a head about 9 mm tall);
- lips inside the outer lip contour (48-59); what lies there more than
  :data:`MOUTH_DEPTH` behind the deepest of those landmarks (a mouth corner,
  usually: the parting line between closed lips, the inside of an open
  mouth) is the mouth's dark inside;
- lid margins and lashes: a dark rim just outside each eye contour (36-41,
  42-47), :data:`UPPER_LASH_WIDTH` along the upper lid and
  :data:`LOWER_LASH_WIDTH` along the lower one;
- eyeballs (:func:`eyeballs`, :func:`eyeball_colour`) for scans with open
  eye holes (ICT-FaceKit's scan surface has none): a sphere behind each eye
  opening with a forward-looking iris and pupil, which the renderer shows
  where a ray would otherwise see the inside of the head.

Lengths are in mm for a face whose outer eye corners (36, 45) are
:data:`EYE_SPAN` apart (adults: about 90 mm) and scale with that distance.
The regions live in a face frame fitted to the landmarks (x from the left to
the right eye, y from the mouth up towards the eyes, z out of the face): a
point belongs to a region when its (x, y) lies inside the region's outline
and its depth is near the region's landmarks, so the back of the head never
gets eyebrows. Edges are smoothed over :data:`EDGE_SOFTNESS`.
"""

from __future__ import annotations

import numpy as np

from facerecon.io import N_LANDMARKS

EYE_SPAN = 90.0  #: mm; the lengths below are for this distance between the outer eye corners
SKIN = np.array([0.80, 0.60, 0.50])
BROW_HAIR = np.array([0.16, 0.11, 0.08])
BROW_COVER = 0.9  #: share of hair in a brow's colour (the rest is skin showing through)
LIPS = np.array([0.66, 0.33, 0.33])
MOUTH_INSIDE = np.array([0.22, 0.07, 0.07])
LASHES = np.array([0.10, 0.07, 0.06])
#: Brow height (mm) at its outer tip, at the next landmark and at its inner end.
BROW_HEIGHTS = (1.5, 5.0, 9.0)
UPPER_LASH_WIDTH = 1.6
LOWER_LASH_WIDTH = 0.6
EDGE_SOFTNESS = 0.8  #: width of the smooth step at every painted edge
MOUTH_DEPTH = 3.0  #: inside the lips' outline, farther than this behind their landmarks is mouth
MOUTH_REACH = 60.0  #: ... and nearer than this (the back of the head is not mouth)
DEPTH_WINDOW = 20.0  #: brows, lips and lashes reach this far in front of and behind their landmarks

EYEBALL_RADIUS = 12.0
IRIS_RADIUS = 5.8
PUPIL_RADIUS = 2.0
EYEBALL_SETBACK = 1.0  #: the eyeball passes this far behind the lid margins' mid points
SCLERA = np.array([0.85, 0.82, 0.78])
IRIS = np.array([0.32, 0.20, 0.12])
PUPIL = np.array([0.03, 0.03, 0.03])

BROWS = (np.arange(17, 22), np.arange(26, 21, -1))  #: each from its outer tip to its inner end
OUTER_LIPS = np.arange(48, 60)
EYES = (np.arange(36, 42), np.arange(42, 48))  #: each from its corner on the image's left


def face_frame(landmarks_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Origin (3,), axes (3, 3) (rows x, y, z) and the outer eye-corner distance (mm).

    x points from the centre of the eye on the image's left (36-41) to the
    other; y from the mouth's centre (48-67) towards the eyes, made orthogonal
    to x; z is their cross product, out of the face for a face seen from the
    front. None when the landmarks do not span such a frame (not a face).
    """
    landmarks_mm = np.asarray(landmarks_mm, dtype=np.float64)
    if landmarks_mm.shape != (N_LANDMARKS, 3) or not np.isfinite(landmarks_mm).all():
        raise ValueError(f"expected ({N_LANDMARKS}, 3) finite landmarks, got {landmarks_mm.shape}")
    left, right = landmarks_mm[EYES[0]].mean(axis=0), landmarks_mm[EYES[1]].mean(axis=0)
    x = right - left
    y = (left + right) / 2 - landmarks_mm[48:68].mean(axis=0)
    eye_span = float(np.linalg.norm(landmarks_mm[45] - landmarks_mm[36]))
    if np.linalg.norm(x) < 1e-6 or eye_span < 1e-6:
        return None
    x /= np.linalg.norm(x)
    y -= (y @ x) * x
    if np.linalg.norm(y) < 1e-3 * eye_span:
        return None
    y /= np.linalg.norm(y)
    return landmarks_mm.mean(axis=0), np.stack([x, y, np.cross(x, y)]), eye_span


def polygon_signed_distance(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Signed distance (N,) of 2D points (N, 2) to a closed polygon (M, 2); negative inside.

    Inside follows the even-odd rule, so an outline that folds onto itself
    (the inner lips of a closed mouth) has no inside.
    """
    start, end = polygon, np.roll(polygon, -1, axis=0)
    edge = end - start
    relative = points[:, None, :] - start[None]  # (N, M, 2)
    t = np.clip((relative * edge).sum(axis=2) / np.maximum((edge**2).sum(axis=1), 1e-12),
                0.0, 1.0)
    distance = np.linalg.norm(relative - t[..., None] * edge, axis=2).min(axis=1)
    y = points[:, 1, None]
    crosses = (start[None, :, 1] > y) != (end[None, :, 1] > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = start[None, :, 0] + (y - start[None, :, 1]) * edge[None, :, 0] / edge[None, :, 1]
    inside = (crosses & (points[:, 0, None] < x_at)).sum(axis=1) % 2 == 1
    return np.where(inside, -distance, distance)


def _coverage(signed_distance: np.ndarray, softness: float) -> np.ndarray:
    """Smooth step from 1 (inside) to 0 (outside) over ``softness`` centred on the outline."""
    t = np.clip(0.5 - signed_distance / softness, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def brow_outline(brow_xy: np.ndarray, unit: float) -> np.ndarray:
    """(10, 2) outline of one brow (face frame): its five landmarks from outer tip to inner
    end (the upper edge), then the same points lowered by the brow's height there."""
    heights = np.interp(np.arange(len(brow_xy)), [0, 1, len(brow_xy) - 1], BROW_HEIGHTS) * unit
    lower = brow_xy - np.column_stack([np.zeros(len(brow_xy)), heights])
    return np.vstack([brow_xy, lower[::-1]])


def painted_albedo(points_mm: np.ndarray, landmarks_mm: np.ndarray) -> np.ndarray:
    """(N, 3) albedo in [0, 1] of surface points (N, 3) of a face with 68 landmarks (68, 3).

    Plain :data:`SKIN` when the landmarks span no face frame.
    """
    points_mm = np.asarray(points_mm, dtype=np.float64)
    albedo = np.tile(SKIN, (len(points_mm), 1))
    frame = face_frame(landmarks_mm)
    if frame is None:
        return albedo
    origin, axes, eye_span = frame
    unit = eye_span / EYE_SPAN
    local = (points_mm - origin) @ axes.T
    marks = (np.asarray(landmarks_mm, dtype=np.float64) - origin) @ axes.T
    softness = EDGE_SOFTNESS * unit
    window = DEPTH_WINDOW * unit

    def near(outline: np.ndarray, margin: float, depth_low: float,
             depth_high: float) -> np.ndarray:
        """Indices of the points within ``margin`` of the outline's box, depth in range."""
        low, high = outline.min(axis=0) - margin, outline.max(axis=0) + margin
        return np.flatnonzero((local[:, 0] >= low[0]) & (local[:, 0] <= high[0])
                              & (local[:, 1] >= low[1]) & (local[:, 1] <= high[1])
                              & (local[:, 2] >= depth_low) & (local[:, 2] <= depth_high))

    def paint(outline: np.ndarray, colour: np.ndarray, amount: float, depth_low: float,
              depth_high: float) -> None:
        """Blend ``colour`` into the points inside ``outline`` with depth in the range."""
        chosen = near(outline, softness, depth_low, depth_high)
        weight = amount * _coverage(polygon_signed_distance(local[chosen, :2], outline),
                                    softness)
        albedo[chosen] += weight[:, None] * (colour - albedo[chosen])

    for brow in BROWS:
        depth = marks[brow, 2]
        paint(brow_outline(marks[brow, :2], unit), BROW_HAIR, BROW_COVER,
              depth.min() - window, depth.max() + window)

    lips, lips_depth = marks[OUTER_LIPS, :2], marks[OUTER_LIPS, 2]
    mouth_from = lips_depth.min() - MOUTH_DEPTH * unit
    paint(lips, LIPS, 1.0, mouth_from, lips_depth.max() + window)
    paint(lips, MOUTH_INSIDE, 1.0, mouth_from - MOUTH_REACH * unit, mouth_from)

    for eye in EYES:
        contour, depth = marks[eye, :2], marks[eye, 2]
        chosen = near(contour, UPPER_LASH_WIDTH * unit + softness, depth.min() - window,
                      depth.max() + window)
        signed = polygon_signed_distance(local[chosen, :2], contour)
        corners_y = np.interp(local[chosen, 0], contour[[0, 3], 0], contour[[0, 3], 1])
        width = np.where(local[chosen, 1] > corners_y, UPPER_LASH_WIDTH,
                         LOWER_LASH_WIDTH) * unit
        weight = _coverage(signed - width, softness / 2) * (signed > -softness)
        albedo[chosen] += weight[:, None] * (LASHES - albedo[chosen])
    return albedo


def eyeballs(landmarks_mm: np.ndarray) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """Per eye: the eyeball's centre (3,), radius (mm) and gaze (3,), the face frame's z.

    The sphere passes :data:`EYEBALL_SETBACK` behind the mid points of the
    upper and lower lid margins (37, 38, 40, 41 and 43, 44, 46, 47). Empty
    when the landmarks span no face frame.
    """
    frame = face_frame(landmarks_mm)
    if frame is None:
        return []
    landmarks_mm = np.asarray(landmarks_mm, dtype=np.float64)
    _, axes, eye_span = frame
    unit = eye_span / EYE_SPAN
    radius = EYEBALL_RADIUS * unit
    balls = []
    for eye in EYES:
        margins = landmarks_mm[eye[[1, 2, 4, 5]]]
        middle = margins.mean(axis=0)
        half_height = float(np.linalg.norm((margins - middle) @ axes[:2].T, axis=1).mean())
        depth = np.sqrt(max(radius**2 - half_height**2, 0.0))
        balls.append((middle - axes[2] * (depth + EYEBALL_SETBACK * unit), radius, axes[2]))
    return balls


def eyeball_colour(points_mm: np.ndarray, centre: np.ndarray, radius: float,
                   gaze: np.ndarray) -> np.ndarray:
    """(N, 3) albedo of points (N, 3) on an eyeball: sclera, and iris and pupil around ``gaze``."""
    offset = np.asarray(points_mm, dtype=np.float64) - centre
    from_axis = np.linalg.norm(np.cross(offset, gaze), axis=1)
    in_front = offset @ gaze > 0
    unit = radius / EYEBALL_RADIUS
    softness = EDGE_SOFTNESS * unit / 2
    iris = _coverage(from_axis - IRIS_RADIUS * unit, softness) * in_front
    pupil = _coverage(from_axis - PUPIL_RADIUS * unit, softness) * in_front
    colour = SCLERA + iris[:, None] * (IRIS - SCLERA)
    return colour + pupil[:, None] * (PUPIL - colour)
