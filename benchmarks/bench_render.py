"""Benchmark: rendering, alignment and the per-scan image preparation, on one core.

Scans: an ICT-FaceKit scan (``facerecon.data.ict``: dataset seed 0, subject 1,
neutral; about 26,000 faces) built from the packaged ICT model, and a synthetic
scan (``facerecon.data.synthetic``, about 175,000 faces). For each: ray-cast
renders at 256 px (1 ray a pixel) and 512 px (2x2 rays a pixel, the default)
with the painted features, eyeballs and ambient occlusion, the 512-px render
without them, dlib alignment of the 512-px render (detection + 68 landmarks +
warp, models already loaded), alignment with given landmarks, the robust
weak-perspective fit, and the whole ``prepare_scan`` (render path) including
file writes. Reports the median of ``--repeats`` runs.

    python benchmarks/bench_render.py [--ict-npz PATH] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from functools import partial
from pathlib import Path

from _timing import pin_to_one_core, timed

ROOT = Path(__file__).resolve().parents[1]






def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ict-npz", type=Path, default=None,
                        help="ICT model (default: the compact one shipped with facerecon)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    cpu = pin_to_one_core()
    sys.path.insert(0, str(ROOT))

    import trimesh

    from facerecon import io
    from facerecon.data import ict
    from facerecon.data.synthetic import build_subject
    from facerecon.images import to_uint8
    from facerecon.images.align import _dlib_models, align_image
    from facerecon.images.camera import fit_weak_perspective
    from facerecon.images.prepare import prepare_scan
    from facerecon.images.render import portrait_camera, render

    work = Path(tempfile.mkdtemp(prefix="bench_render_"))
    model = ict.load_model(args.ict_npz or ict.PACKAGED_MODEL)
    ict_obj = ict.build_subject(model, work / "ict", 1, 0, [1])[0]
    synthetic_obj = build_subject(work / "synthetic", 1, 0, [1])[0]
    _dlib_models()

    print(f"# bench_render on {platform.processor() or platform.machine()}, CPU {cpu} only, "
          f"trimesh {trimesh.__version__}, ray backend "
          f"{'embree' if trimesh.ray.has_embree else 'triangle'}\n")
    print("| scan | faces | what | median |\n|---|---|---|---|")
    for name, obj in (("ICT head", ict_obj), ("synthetic", synthetic_obj)):
        mesh = io.load_mesh(obj)
        landmarks = io.load_landmarks(obj.with_suffix(".landmarks.txt"))
        camera_256, camera_512 = portrait_camera(landmarks, 256), portrait_camera(landmarks, 512)
        image = to_uint8(render(mesh, camera_512, landmarks_mm=landmarks))
        given = camera_512.project(landmarks)
        crop_landmarks = align_image(image, given).landmarks_px
        rows = [
            ("render 256 px, 1 ray/px", partial(render, mesh, camera_256, 1, landmarks)),
            ("render 512 px, 2x2 rays/px", partial(render, mesh, camera_512, 2, landmarks)),
            ("render 512 px, unpainted, no occlusion",
             partial(render, mesh, camera_512, 2, None, False)),
            ("align, dlib (detect + 68 points + warp)", partial(align_image, image)),
            ("align, given landmarks (warp)", partial(align_image, image, given)),
            ("weak-perspective fit", partial(fit_weak_perspective, crop_landmarks, landmarks)),
            ("prepare_scan (load, render, align, fit, write)",
             partial(prepare_scan, obj, obj.with_suffix(".landmarks.txt"), work / "out" / name)),
        ]
        for what, function in rows:
            seconds, _ = timed(function, args.repeats, warm_up=True)
            print(f"| {name} | {len(mesh.faces)} | {what} | {seconds * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
