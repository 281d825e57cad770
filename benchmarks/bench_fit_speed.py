"""Fitting speed: test scans fitted one at a time against all of them as one batched
problem, in the same process, and the paper's fit of 200 FaceScape scans extrapolated.

    python benchmarks/bench_fit_speed.py --profile demo --device cpu --scans 8
    python benchmarks/bench_fit_speed.py --profile paper --device cuda --scans 200 \
        --points 16384 --iterations 10

The model is `ours` (config.yaml's demo sizes, or with config/paper.yaml layered on), built
with seeded random weights (speed does not depend on them) and frozen, as fitting sees it;
the scans are spheres of assorted radii with face-like landmarks and (``--images``) a random
crop each. Each variant runs ``facerecon.fit``'s own loop (:class:`facerecon.fit.Fitting`,
every loss term of the method, the step in the precision training picked: bf16 on CUDA)
for ``--iterations`` steps (after one untimed step of one scan), timed whole (the frozen
image branch's one pass included, so short runs overstate the per-step cost a little):

* ``one_by_one``: each scan its own problem (what one job per scan did);
* ``batched``: all scans in one problem (``fit.group: all``, ``chunk_scans: 0``).

Extrapolation: ImFace's schedule, 1500 iterations x 16,384 points for each of 200 scans,
from the measured seconds per iteration at ``--points`` points (scaled linearly in the
points when fewer are measured).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _profiles import add_profile_arguments, profile_method

from facerecon.batches import Precision, ScanSamples
from facerecon.config import FitConfig, MethodConfig
from facerecon.fit import Fitting, fitting_loss
from facerecon.models import LatentCodes, build_model
from facerecon.sample import sphere_samples

PAPER_SCANS, PAPER_ITERATIONS, PAPER_POINTS = 200, 1500, 16_384


def method(profile: str, images: bool) -> MethodConfig:
    """`ours` in the profile, the image branch on or off."""
    cfg = profile_method(profile)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model,
                                                              multiscale_features=images))


def fake_scans(n: int, images: bool) -> list[ScanSamples]:
    """``n`` sphere scans (radius 0.3 - 0.6 units), 4 expressions a subject."""
    angles = np.random.default_rng(0).uniform(-0.6, 0.6, (68, 2))
    landmarks = 0.4 * np.stack([np.sin(angles[:, 0]), np.sin(angles[:, 1]),
                                np.cos(angles[:, 0]) * np.cos(angles[:, 1])], -1)
    scans = []
    for i in range(n):
        arrays = sphere_samples(0.3 + 0.3 * i / max(1, n - 1), 20_000, 5_000, i)
        tensors = {k: torch.from_numpy(arrays[k]) for k in
                   ("surface_points", "surface_normals", "space_points", "space_sdf")}
        scan = ScanSamples(str(i // 4), f"{i % 4 + 1}_x", 100.0, **tensors,
                           landmarks=torch.from_numpy(landmarks.astype(np.float32)))
        if images:
            scan.image = torch.rand(3, 256, 256, generator=torch.Generator().manual_seed(i))
            scan.camera = torch.tensor([[100.0, 0, 0, 128], [0, -100.0, 0, 128]])
        scans.append(scan)
    return scans


def main() -> None:
    """Time the variants, print a JSON line each and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_profile_arguments(parser, scans=8)
    parser.add_argument("--iterations", type=int, default=10, help="timed steps per problem")
    parser.add_argument("--variants", nargs="+", default=["one_by_one", "batched"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    cfg = method(args.profile, args.images)
    model = build_model(cfg.model).to(device).eval().requires_grad_(False)
    codes = LatentCodes(model.latent_spec(), 4, 16).to(device)
    scans = fake_scans(args.scans, args.images)
    fit = dataclasses.replace(FitConfig(), iterations=args.iterations,
                              points_per_scan=args.points, checkpoint_every_iterations=10**9)
    fitting = Fitting(model, codes, "0" * 64, "ours", fit, fitting_loss(cfg.loss),
                      cfg.train.surface_fraction, Precision.setup(cfg.train.precision, device),
                      device)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        warm_up = dataclasses.replace(fitting, fit=dataclasses.replace(fit, iterations=1))
        warm_up.fit_chunk(scans[:1], Path(tmp) / "warm_up.ckpt")  # one-off costs, untimed
        for variant in args.variants:
            problems = [[s] for s in scans] if variant == "one_by_one" else [scans]
            seconds = 0.0
            for i, problem in enumerate(problems):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                tic = time.perf_counter()
                fitted = fitting.fit_chunk(problem, Path(tmp) / f"{variant}{i}.ckpt")
                if device.type == "cuda":
                    torch.cuda.synchronize()
                seconds += time.perf_counter() - tic
                assert len(fitted) == len(problem)
            per_iteration_scan = seconds / args.iterations / len(scans)
            results[variant] = seconds
            paper_min = (per_iteration_scan * PAPER_ITERATIONS * PAPER_SCANS
                         * PAPER_POINTS / args.points / 60)
            print(json.dumps({"variant": variant, "profile": args.profile, "device": str(device),
                              "scans": len(scans), "points": args.points,
                              "seconds": round(seconds, 3),
                              "seconds_per_scan_iteration": round(per_iteration_scan, 5),
                              "paper_200_scans_minutes": round(paper_min, 1)}), flush=True)
    if len(results) == 2:
        print(json.dumps({"batched_speed_up": round(results["one_by_one"] / results["batched"],
                                                    2)}))


if __name__ == "__main__":
    main()
