"""Train -> fit -> mesh of the engine on one device (a GPU check; CI never runs it).

    python benchmarks/check_device.py --device cuda --out DIR

Spheres of known radius as samples (facerecon.sample's format), a small expert model,
then: the trained-model file loads with weights_only, fitting recovers a held-out
sphere, and the mesh's mean radius is reported against the truth. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import trimesh

from facerecon.io import save_npz
from facerecon.sample import sphere_samples

METHOD = {"method": "check", "model": {"id_dim": 8, "exp_dim": 8, "hidden_dim": 32,
                                       "hidden_layers": 2, "pe_frequencies": 2, "experts": 4},
          "loss": {"embedding": 10.0, "smooth": 1.0, "entropy": 0.1},
          "train": {"epochs": 40, "scans_per_batch": 4, "points_per_scan": 512, "lr": 0.002,
                    "code_lr": 0.01, "checkpoint_every_epochs": 5}}


def write_spheres(path: Path, subject: str, radius: float, seed: int) -> None:
    """A sample file of a sphere (facerecon.sample.sphere_samples)."""
    save_npz(path, **sphere_samples(radius, 4000, 2000, seed), subject=np.array(subject),
             expression=np.array("1_neutral"))


def run(*args: object) -> float:
    tic = time.perf_counter()
    subprocess.run([sys.executable, "-m", *map(str, args)], check=True)
    return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    train = [args.out / f"{i}.npz" for i in range(4)]
    for i, path in enumerate(train):
        write_spheres(path, str(i), 0.3 + 0.1 * i, i)
    write_spheres(args.out / "test.npz", "9", 0.45, 99)
    model, codes, mesh = args.out / "model.pt", args.out / "codes.pt", args.out / "mesh.ply"
    seconds = {
        "train": run("facerecon.train", "--config", json.dumps(METHOD), "--samples", *train,
                     "--out", model, "--log-csv", args.out / "log.csv", "--device", args.device),
        "fit": run("facerecon.fit", "--model", model, "--samples", args.out / "test.npz",
                   "--config", json.dumps({"method": "check", "fit": {
                       "iterations": 100, "lr": 0.01, "points_per_scan": 1024}}),
                   "--out", codes, "--device", args.device),
        "mesh": run("facerecon.mesh", "--model", model, "--codes", codes, "--out", mesh,
                    "--resolution", 64, "--coarse-resolution", 16, "--device", args.device),
    }
    radii = np.linalg.norm(trimesh.load(mesh).vertices, axis=1)
    print(json.dumps({"device": args.device, "seconds": seconds,
                      "mesh_radius_mm": float(radii.mean()), "truth_mm": 45.0,
                      "radius_std_mm": float(radii.std())}))


if __name__ == "__main__":
    main()
