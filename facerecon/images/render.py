"""Render a scan with a known pinhole camera by ray casting (trimesh + embreex).

Shading is Lambertian under an ambient term and three directional lights
fixed to the camera (a key light from the upper left, a fill light from the
right, a top light), times the ambient occlusion of the surface
(:func:`vertex_openness`: nostrils, the inside of the mouth, creases and the
underside of the chin are darker, as in photographs); normals are
interpolated from the vertices. Albedo: the mesh's per-vertex colours when it
has them (PLY files keep them; :func:`facerecon.io.load_mesh` reads OBJs as
geometry only); otherwise, given the scan's 68 landmarks, skin with eyebrows,
lips, lashes and a dark mouth inside painted where the landmarks put them
(:mod:`facerecon.images.albedo`), and plain skin without landmarks. Rays that
hit the inside of the surface (through an open mouth or the neck cut) see a
dark interior; through open eye holes (ICT-FaceKit's scan surface has no
eyeballs) they see eyeballs placed behind the eye contours, when the
landmarks are given. Each pixel averages ``supersample`` x ``supersample``
rays (antialiasing, so that landmark detectors see smooth edges).

Why paint: on plain grey renders of 12 ICT-FaceKit scans (``facerecon.data.ict``,
seed 0, subjects 1-12, assorted expressions) dlib put the brows about 7 px
(6 mm) below the scans' brow landmarks, guessing them from the brow ridge's
shading, and agreed with the 68 landmarks to per-render medians of
2.4-4.3 px (256-px crop); painted, with occlusion and eyeballs, 1.8-3.0 px
(``tests/test_images_scans.py`` checks six of them).

The default camera (:func:`portrait_camera`) sits on the +z axis of the scan
frame, looks towards -z with the image's up along +y, 3 m from the face (a
telephoto portrait), with a focal length that makes the landmarks span half
the image. At 3 m the head's depth changes the image scale by a few percent
only, so the weak-perspective camera of section 2.1 fits a render to about
0.3 px at the landmarks and 4 px at the back of the head's outline; at 1 m
these were 0.8 px and 9 px (256-px crop).

Example (writes ``DIR/0.png`` and ``DIR/params.json`` in FaceScape's format)::

    python -m facerecon.images.render --scan 1_neutral.obj --out-dir images/1_neutral
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import trimesh

from facerecon import io
from facerecon.images import save_image
from facerecon.images.albedo import SKIN, eyeball_colour, eyeballs, painted_albedo
from facerecon.images.camera import PinholeCamera
from facerecon.images.views import PARAMS_FILE, write_params

DEFAULT_SIZE_PX = 512
DEFAULT_DISTANCE_MM = 3000.0
#: Share of the image side spanned by the larger side of the landmarks' bounding box.
LANDMARK_FILL = 0.5
BACKGROUND = np.array([0.42, 0.45, 0.50])
AMBIENT = 0.25
INTERIOR = 0.05  #: brightness factor of surfaces seen from inside
OCCLUSION_RAYS = 32  #: ambient-occlusion rays per vertex
OCCLUSION_REACH_MM = 30.0  #: surfaces farther than this do not occlude
#: (direction towards the light in camera axes (x right, y down, z forward), intensity)
LIGHTS: tuple[tuple[tuple[float, float, float], float], ...] = (
    ((-0.5, -0.6, -1.0), 0.55),
    ((0.8, -0.1, -1.0), 0.25),
    ((0.0, -1.0, -0.2), 0.15),
)
#: Scan frame -> camera axes of the default view: x stays, y and z flip.
FRONTAL_ROTATION = np.diag([1.0, -1.0, -1.0])


def portrait_camera(landmarks_mm: np.ndarray, size_px: int = DEFAULT_SIZE_PX,
                    distance_mm: float = DEFAULT_DISTANCE_MM) -> PinholeCamera:
    """Square frontal camera framing the (68, 3) landmarks (scan frame, mm).

    The camera looks along -z from ``distance_mm`` in front of the landmarks'
    mean depth, centred on their bounding box in x and y; the focal length
    makes the box's larger side span :data:`LANDMARK_FILL` of ``size_px``.
    """
    landmarks_mm = np.asarray(landmarks_mm, dtype=np.float64)
    low, high = landmarks_mm.min(axis=0), landmarks_mm.max(axis=0)
    centre_mm = np.array([(low[0] + high[0]) / 2, (low[1] + high[1]) / 2,
                          landmarks_mm[:, 2].mean() + distance_mm])
    extent_mm = max(high[0] - low[0], high[1] - low[1])
    focal_px = LANDMARK_FILL * size_px * distance_mm / extent_mm
    principal_px = (size_px - 1) / 2
    intrinsics = np.array([[focal_px, 0.0, principal_px],
                           [0.0, focal_px, principal_px],
                           [0.0, 0.0, 1.0]])
    extrinsics = np.hstack([FRONTAL_ROTATION, (-FRONTAL_ROTATION @ centre_mm)[:, None]])
    return PinholeCamera(intrinsics, extrinsics, size_px, size_px)


def _pixel_rays(camera: PinholeCamera, supersample: int) -> tuple[np.ndarray, np.ndarray]:
    """Ray origin (3,) and unit directions (H * W * supersample^2, 3) in the scan frame.

    Rays are grouped by pixel (row-major), each pixel's sub-samples together.
    """
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    u = (np.arange(camera.width_px)[:, None] + offsets).ravel()
    v = (np.arange(camera.height_px)[:, None] + offsets).ravel()
    to_scan = camera.rotation.T @ np.linalg.inv(camera.intrinsics)  # [u, v, 1] -> direction
    directions = (to_scan[:, 0, None, None] * u + to_scan[:, 1, None, None] * v[:, None]
                  + to_scan[:, 2, None, None])  # (3, H * ss, W * ss)
    directions = directions.reshape(3, camera.height_px, supersample, camera.width_px,
                                    supersample).transpose(1, 3, 2, 4, 0).reshape(-1, 3)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return camera.centre_mm, directions


def vertex_albedo(mesh: trimesh.Trimesh) -> np.ndarray:
    """(V, 3) albedo in [0, 1]: the mesh's vertex colours, else plain skin (``albedo.SKIN``)."""
    if mesh.visual.kind == "vertex":
        return np.asarray(mesh.visual.vertex_colors, dtype=np.float64)[:, :3] / 255.0
    return np.broadcast_to(SKIN, (len(mesh.vertices), 3))


def _hemisphere_directions(count: int) -> np.ndarray:
    """(count, 3) cosine-weighted directions about +z (a Fibonacci spiral, deterministic)."""
    index = np.arange(count) + 0.5
    radius = np.sqrt(index / count)
    angle = index * np.pi * (3.0 - np.sqrt(5.0))
    return np.column_stack([radius * np.cos(angle), radius * np.sin(angle),
                            np.sqrt(1.0 - radius**2)])


def vertex_openness(mesh: trimesh.Trimesh, vertex_ids: np.ndarray | None = None,
                    rays_per_vertex: int = OCCLUSION_RAYS,
                    reach_mm: float = OCCLUSION_REACH_MM) -> np.ndarray:
    """(V,) share of each vertex's cosine-weighted hemisphere not blocked within ``reach_mm``.

    Ambient occlusion: about 1 on open surface, small in the nostrils, the
    mouth's inside, the creases of the ears and under the chin. Computed for
    ``vertex_ids`` only (default all; the others get 1), then averaged once
    with the computed neighbours of each vertex, against sampling noise.
    """
    vertex_ids = np.arange(len(mesh.vertices)) if vertex_ids is None else np.asarray(vertex_ids)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)[vertex_ids]
    normals = np.asarray(mesh.vertex_normals, dtype=np.float64)[vertex_ids]
    pattern = _hemisphere_directions(rays_per_vertex)
    # an orthonormal frame per vertex, turned by a per-vertex angle against banding
    helper = np.where(np.abs(normals[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    tangent = np.cross(normals, helper)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-12)
    bitangent = np.cross(normals, tangent)
    turn = np.random.default_rng(0).uniform(0.0, 2 * np.pi, len(vertices))
    cos, sin = np.cos(turn)[:, None], np.sin(turn)[:, None]
    tangent, bitangent = cos * tangent + sin * bitangent, cos * bitangent - sin * tangent
    directions = (pattern[None, :, 0, None] * tangent[:, None] + pattern[None, :, 1, None]
                  * bitangent[:, None] + pattern[None, :, 2, None] * normals[:, None])
    directions = directions.reshape(-1, 3)
    origins = np.repeat(vertices + 1e-3 * reach_mm * normals, rays_per_vertex, axis=0)
    _, rays, locations = mesh.ray.intersects_id(origins, directions, multiple_hits=False,
                                                return_locations=True)
    blocked = np.zeros(len(directions), dtype=bool)
    blocked[rays] = np.linalg.norm(locations - origins[rays], axis=1) < reach_mm
    computed = np.zeros(len(mesh.vertices), dtype=bool)
    computed[vertex_ids] = True
    openness = np.ones(len(mesh.vertices))
    openness[vertex_ids] = 1.0 - blocked.reshape(len(vertices), rays_per_vertex).mean(axis=1)
    edges = np.asarray(mesh.edges_unique)
    edges = edges[computed[edges].all(axis=1)]
    total, count = openness * computed, computed.astype(np.float64)
    for a, b in (edges.T, edges.T[::-1]):
        total += np.bincount(a, weights=openness[b], minlength=len(openness))
        count += np.bincount(a, minlength=len(openness))
    return np.where(computed, total / np.maximum(count, 1.0), 1.0)


def _sphere_hits(origin: np.ndarray, directions: np.ndarray, centre: np.ndarray,
                 radius: float) -> np.ndarray:
    """(N,) distance along each unit ray from ``origin`` to a sphere's near side; inf if missed."""
    offset = origin - centre
    along = directions @ offset
    discriminant = along**2 - (offset @ offset - radius**2)
    distance = np.full(len(directions), np.inf)
    hit = discriminant > 0
    distance[hit] = -along[hit] - np.sqrt(discriminant[hit])
    distance[distance <= 0] = np.inf
    return distance


def render(mesh: trimesh.Trimesh, camera: PinholeCamera, supersample: int = 2,
           landmarks_mm: np.ndarray | None = None, occlusion: bool = True) -> np.ndarray:
    """Shaded image (H, W, 3) float in [0, 1] of ``mesh`` (scan frame, mm) seen by ``camera``.

    ``landmarks_mm`` (68, 3), the scan's landmarks, turn on the painted face
    features (meshes without vertex colours) and the eyeballs seen through
    open eyes; ``occlusion`` the ambient occlusion (see the module docstring).
    """
    if supersample < 1:
        raise ValueError("supersample must be at least 1")
    origin, directions = _pixel_rays(camera, supersample)
    triangles, rays, locations = mesh.ray.intersects_id(
        np.broadcast_to(origin, directions.shape), directions, multiple_hits=False,
        return_locations=True)
    faces = np.asarray(mesh.faces)[triangles]
    barycentric = trimesh.triangles.points_to_barycentric(mesh.triangles[triangles], locations)
    normals = np.einsum("nk,nkd->nd", barycentric, np.asarray(mesh.vertex_normals)[faces])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    if mesh.visual.kind == "vertex" or landmarks_mm is None:
        albedo = np.einsum("nk,nkd->nd", barycentric, vertex_albedo(mesh)[faces])
    else:
        albedo = painted_albedo(locations, landmarks_mm)

    lights = []
    for direction_camera, intensity in LIGHTS:
        towards_light = camera.rotation.T @ np.asarray(direction_camera)
        lights.append((towards_light / np.linalg.norm(towards_light), intensity))

    def lambert(normals: np.ndarray) -> np.ndarray:
        shading = np.full(len(normals), AMBIENT)
        for towards_light, intensity in lights:
            shading += intensity * np.clip(normals @ towards_light, 0.0, None)
        return shading

    shading = lambert(normals)
    if occlusion:
        openness = vertex_openness(mesh, np.unique(faces))
        shading *= np.einsum("nk,nk->n", barycentric, openness[faces])
    inside = np.einsum("nd,nd->n", mesh.face_normals[triangles], directions[rays]) > 0
    shading[inside] = INTERIOR
    colours = np.tile(BACKGROUND, (len(directions), 1))
    colours[rays] = albedo * shading[:, None]

    if landmarks_mm is not None:  # rays through open eyes, which see the inside, see eyeballs
        sees_inside = np.zeros(len(directions), dtype=bool)
        sees_inside[rays[inside]] = True
        surface_mm = np.full(len(directions), np.inf)
        surface_mm[rays] = np.linalg.norm(locations - origin, axis=1)
        for centre, radius, gaze in eyeballs(landmarks_mm):
            distance = _sphere_hits(origin, directions, centre, radius)
            seen = np.flatnonzero(sees_inside & (distance < surface_mm))
            points = origin + distance[seen, None] * directions[seen]
            colours[seen] = (eyeball_colour(points, centre, radius, gaze)
                             * lambert((points - centre) / radius)[:, None])

    image = colours.reshape(camera.height_px, camera.width_px, supersample**2, 3).mean(axis=2)
    return np.clip(image, 0.0, 1.0)


def render_view(mesh: trimesh.Trimesh, camera: PinholeCamera, out_dir: str | os.PathLike,
                supersample: int = 2, landmarks_mm: np.ndarray | None = None) -> Path:
    """Render, write ``out_dir/0.png`` and ``out_dir/params.json`` (view "0"); returns the PNG."""
    out_dir = Path(out_dir)
    image_path = out_dir / "0.png"
    save_image(image_path, render(mesh, camera, supersample, landmarks_mm))
    write_params(out_dir / PARAMS_FILE, {"0": camera})
    return image_path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m facerecon.images.render", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scan", required=True, type=Path, help="scan mesh (OBJ/PLY), mm")
    parser.add_argument("--landmarks", type=Path,
                        help="68 landmarks (x y z mm) framing the view; default: the "
                             "<scan stem>.landmarks.txt file beside the scan")
    parser.add_argument("--out-dir", required=True, type=Path,
                        help="folder for 0.png and params.json")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE_PX, help="image side, pixels")
    parser.add_argument("--distance-mm", type=float, default=DEFAULT_DISTANCE_MM)
    parser.add_argument("--supersample", type=int, default=2, help="rays per pixel per axis")
    args = parser.parse_args(argv)
    if args.size < 64:
        parser.error("--size must be at least 64")
    if args.distance_mm <= 0 or args.supersample < 1:
        parser.error("--distance-mm must be positive and --supersample at least 1")
    if args.landmarks is None:
        args.landmarks = args.scan.with_suffix(".landmarks.txt")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    mesh = io.load_mesh(args.scan)
    landmarks = io.load_landmarks(args.landmarks)
    camera = portrait_camera(landmarks, args.size, args.distance_mm)
    render_view(mesh, camera, args.out_dir, args.supersample, landmarks)


if __name__ == "__main__":
    io.run_cli(main)
