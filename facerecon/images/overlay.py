"""Figure to check image alignment by eye: crops with landmarks and projected scan vertices.

For each prepared scan (a folder written by :mod:`facerecon.images.prepare`)
one panel shows the 256x256 crop, the 68 crop landmarks (red) and a
subsample of the scan's vertices (cyan dots) projected by the estimated
weak-perspective camera, keeping the vertices whose normals face the camera
(so the back of the head does not cover the face). When the camera is right
the dots cover the face and follow its outline.

Example::

    python -m facerecon.images.overlay --prepared prep/1/1_neutral prep/2/1_neutral \\
        --scans data/1/models_reg/1_neutral.obj data/2/models_reg/1_neutral.obj --out fig.png
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

from facerecon import io  # noqa: E402
from facerecon.images import load_image  # noqa: E402
from facerecon.images.align import read_landmarks_2d  # noqa: E402
from facerecon.images.camera import WeakPerspectiveCamera, load_camera  # noqa: E402
from facerecon.images.view import CAMERA_FILE, CROP_FILE, LANDMARKS_2D_FILE  # noqa: E402

DEFAULT_POINTS = 3000
PANELS_PER_ROW = 4


def facing_vertices(normals: np.ndarray, camera: WeakPerspectiveCamera) -> np.ndarray:
    """Boolean mask (V,) of vertices whose normal (V, 3) points towards the camera."""
    return (np.asarray(normals) @ camera.rotation[2]) < 0


def plot_panel(ax: plt.Axes, prepared: Path, scan: Path, n_points: int,
               rng: np.random.Generator) -> None:
    """Draw one prepared scan onto ``ax``."""
    crop, _ = load_image(prepared / CROP_FILE)
    landmarks_px = read_landmarks_2d(prepared / LANDMARKS_2D_FILE)
    camera = load_camera(prepared / CAMERA_FILE)
    record = io.read_json(prepared / CAMERA_FILE)
    mesh = io.load_mesh(scan)
    vertices = np.asarray(mesh.vertices)
    candidates = np.flatnonzero(facing_vertices(mesh.vertex_normals, camera))
    chosen = rng.choice(candidates, size=min(n_points, len(candidates)), replace=False)
    projected = camera.project(vertices[chosen])
    ax.imshow(crop)
    ax.scatter(*projected.T, s=1.0, c="cyan", alpha=0.5, linewidths=0)
    ax.scatter(*landmarks_px.T, s=6.0, c="red", linewidths=0)
    ax.set_xlim(-0.5, crop.shape[1] - 0.5)
    ax.set_ylim(crop.shape[0] - 0.5, -0.5)
    errors = record.get("reprojection_error_px", {})
    method = record.get("alignment", {}).get("method", "?")
    ax.set_title(f"{prepared.parent.name}/{prepared.name} ({method})\nreprojection median "
                 f"{errors.get('median', float('nan')):.2f} px, max "
                 f"{errors.get('max', float('nan')):.2f} px", fontsize=8)
    ax.axis("off")


def overlay_figure(prepared: list[Path], scans: list[Path], out: Path,
                   n_points: int = DEFAULT_POINTS) -> None:
    """Write the figure (PNG) for pairs of prepared folders and scans, atomically."""
    if len(prepared) != len(scans) or not prepared:
        raise ValueError("give one scan per prepared folder (and at least one)")
    columns = min(PANELS_PER_ROW, len(prepared))
    rows = math.ceil(len(prepared) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.5 * rows), squeeze=False)
    rng = np.random.default_rng(0)
    for index, (folder, scan) in enumerate(zip(prepared, scans, strict=True)):
        plot_panel(axes.ravel()[index], folder, scan, n_points, rng)
    for ax in axes.ravel()[len(prepared):]:
        ax.axis("off")
    fig.suptitle("red: crop landmarks; cyan: scan vertices, fitted camera", fontsize=9)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.95))
    with io.atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m facerecon.images.overlay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepared", required=True, nargs="+", type=Path,
                        help="folders written by facerecon.images.prepare")
    parser.add_argument("--scans", required=True, nargs="+", type=Path,
                        help="the scans of those folders, in the same order")
    parser.add_argument("--out", required=True, type=Path, help="figure (PNG)")
    parser.add_argument("--points", type=int, default=DEFAULT_POINTS,
                        help="vertices drawn per scan")
    args = parser.parse_args(argv)
    if len(args.prepared) != len(args.scans):
        parser.error(f"{len(args.prepared)} prepared folders but {len(args.scans)} scans")
    if args.points < 1:
        parser.error("--points must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overlay_figure(args.prepared, args.scans, args.out, args.points)


if __name__ == "__main__":
    io.run_cli(main)
