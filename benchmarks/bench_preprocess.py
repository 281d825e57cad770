"""Benchmark: preprocessing of one scan, and exact SDF against mesh-to-sdf.

1. Full preprocessing of one FaceScape-sized scan (about 26,000 vertices) on one
   core: alignment + sphere crop + pseudo-watertight sheet, then 250,000
   samples (235,000 surface, 15,000 uniform with exact SDF). Target: <= 3 s.
2. Exact SDF (AABB tree + pseudo-normals) against mesh-to-sdf's ``sample`` and
   ``scan`` surface methods on the same 250,000 points around a finely
   tessellated sphere of radius 0.5 (units of the crop radius), with the
   DeepSDF point mix mesh-to-sdf itself uses (47% at sigma 0.0025, 47% at
   sigma 0.00025 around the surface, 6% uniform in the unit ball). Errors are
   measured against the analytic distance ``|p| - 0.5`` and against the exact
   mesh distance. Targets: >= 10x faster than ``sample``, distance error
   <= 1e-5 units.
3. The sampling step of (1) with ``--backend mesh_to_sdf`` for comparison.

Everything runs pinned to one CPU (``os.sched_setaffinity``, BLAS/OpenMP
threads 1), set before numpy starts its thread pool. By default the scan is the
generated head of ``tests/test_preprocess.py`` at a grid spacing giving about
26,000 vertices; ``--scan``/``--landmarks`` take a real one instead.

    python benchmarks/bench_preprocess.py [--scan OBJ --landmarks TXT] [--skip-mesh-to-sdf]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from functools import partial
from pathlib import Path

from _timing import pin_to_one_core, timed

ROOT = Path(__file__).resolve().parents[1]






def load_scan(args: argparse.Namespace):
    """(vertices_mm, faces, landmarks_mm) of the scan to benchmark."""
    import numpy as np

    from facerecon import io

    if args.scan is not None:
        mesh = io.load_mesh(args.scan)
        return np.asarray(mesh.vertices), np.asarray(mesh.faces), io.load_landmarks(args.landmarks)
    sys.path.insert(0, str(ROOT / "tests"))
    from test_preprocess import head_landmarks, head_mesh

    mesh = head_mesh(spacing_mm=2.45)
    return np.asarray(mesh.vertices), np.asarray(mesh.faces), head_landmarks(mesh)


def bench_scan(args: argparse.Namespace) -> list[tuple[str, str]]:
    """Rows for the full preprocessing of one scan."""
    from facerecon.preprocess import preprocess_scan
    from facerecon.sample import sample_scan

    vertices, faces, landmarks = load_scan(args)
    t_sheet, result = timed(lambda: preprocess_scan(vertices, faces, landmarks), args.repeats)
    t_sample, _ = timed(lambda: sample_scan(result.vertices_mm, result.faces,
                                            result.landmarks_mm), args.repeats)
    total = t_sheet + t_sample
    rows = [
        ("scan", f"{len(vertices)} vertices, {len(faces)} faces -> sheet "
                 f"{result.stats['vertices']} vertices, {result.stats['faces']} faces, "
                 f"{result.stats['hidden_vertices_removed']} hidden removed, "
                 f"{result.stats['boundary_loops']} boundary loop"),
        ("align + crop + sheet", f"{t_sheet:.2f} s"),
        ("235k surface + 15k uniform samples (exact SDF)", f"{t_sample:.2f} s"),
        ("**full preprocessing, one core** (target <= 3 s)",
         f"**{total:.2f} s** ({'met' if total <= 3.0 else 'MISSED'})"),
    ]
    if not args.skip_mesh_to_sdf:
        t_m2s, _ = timed(lambda: sample_scan(result.vertices_mm, result.faces,
                                             result.landmarks_mm, backend="mesh_to_sdf"), 1)
        rows.append(("same samples, `--backend mesh_to_sdf` (10M-point `sample` cloud)",
                     f"{t_m2s:.2f} s ({t_m2s / t_sample:.1f}x the exact backend)"))
    return rows


def deepsdf_points(radius: float, count: int, seed: int):
    """mesh-to-sdf's DeepSDF mix around a sphere of ``radius``: (count, 3) points."""
    import numpy as np

    from facerecon.sample import sample_unit_ball

    rng = np.random.default_rng(seed)
    near = int(count * 47 / 50) // 2
    direction = rng.standard_normal((2 * near, 3))
    surface = radius * direction / np.linalg.norm(direction, axis=1, keepdims=True)
    sigma = np.repeat([0.0025, 0.00025], near)[:, None]
    return np.concatenate([surface + sigma * rng.standard_normal(surface.shape),
                           sample_unit_ball(count - 2 * near, rng)])


def bench_sphere(args: argparse.Namespace) -> list[tuple[str, str]]:
    """Rows comparing exact SDF and mesh-to-sdf on an analytic sphere."""
    import numpy as np
    import trimesh

    from facerecon.geometry.sdf import MeshSDF

    radius = 0.5
    sphere = trimesh.creation.icosphere(subdivisions=args.sphere_subdivisions, radius=radius)
    plane = np.einsum("ij,ij->i", sphere.face_normals, sphere.triangles[:, 0])
    tessellation = radius - plane.min()
    points = deepsdf_points(radius, args.points, seed=0)
    analytic = np.linalg.norm(points, axis=1) - radius
    t_exact, exact = timed(lambda: MeshSDF(sphere.vertices, sphere.faces).query(points).sdf,
                           args.repeats)

    def errors(sdf) -> str:
        clear = np.abs(analytic) > tessellation
        sign = np.mean(np.sign(sdf[clear]) != np.sign(analytic[clear]))
        return (f"max {np.abs(sdf - analytic).max():.1e}, mean {np.abs(sdf - analytic).mean():.1e};"
                f" distance vs exact: max {np.abs(np.abs(sdf) - np.abs(exact)).max():.1e};"
                f" wrong signs {100 * sign:.2f}%")

    rows = [
        ("sphere", f"r = {radius}, {len(sphere.faces)} faces, tessellation error "
                   f"{tessellation:.1e}; {len(points)} query points (DeepSDF mix)"),
        ("exact SDF: time", f"{t_exact:.2f} s"),
        ("exact SDF: error vs analytic (target <= 1e-5)", errors(exact)),
    ]
    if args.skip_mesh_to_sdf:
        return rows
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    import mesh_to_sdf

    for method in ("sample", "scan"):
        run = partial(mesh_to_sdf.mesh_to_sdf, sphere, points, surface_point_method=method,
                      sign_method="normal")
        try:
            t_m2s, sdf = timed(run, 1)
        except Exception as exc:  # e.g. no headless OpenGL for the scan renderer
            rows.append((f"mesh-to-sdf `{method}`", f"failed: {type(exc).__name__}: {exc}"))
            continue
        rows.append((f"mesh-to-sdf `{method}`: time",
                     f"{t_m2s:.2f} s (exact is **{t_m2s / t_exact:.1f}x** faster)"))
        rows.append((f"mesh-to-sdf `{method}`: error vs analytic", errors(np.asarray(sdf))))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scan", type=Path, help="scan OBJ in mm (default: generated head)")
    parser.add_argument("--landmarks", type=Path, help="its 68 landmarks (with --scan)")
    parser.add_argument("--points", type=int, default=250_000)
    parser.add_argument("--sphere-subdivisions", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-mesh-to-sdf", action="store_true")
    args = parser.parse_args(argv)
    if (args.scan is None) != (args.landmarks is None):
        parser.error("--scan and --landmarks go together")
    cpu = pin_to_one_core()

    rows = [
        ("date", datetime.datetime.now().isoformat(timespec="seconds")),
        ("machine", f"{platform.platform()}, {platform.processor() or platform.machine()}, "
                    f"os.cpu_count() = {os.cpu_count()}, pinned to CPU {cpu}"),
        ("command", "`python " + " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])
         + "`"),
    ]
    rows += bench_scan(args)
    rows += bench_sphere(args)
    print("| what | result |\n|---|---|")
    for what, result in rows:
        print(f"| {what} | {result} |")


if __name__ == "__main__":
    main()
