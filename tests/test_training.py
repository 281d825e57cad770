"""Training, fitting and mesh extraction on analytic shapes with known answers.

Samples are written in facerecon.sample's file format from spheres (exact SDF
|p| - r), so the model stages are tested independently of the geometry stages.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from conftest import write_sphere_samples

from facerecon.mesh import extract_surface, sdf_volume
from facerecon.trained import TrainedModel, TrainingCheckpoint

REPO = Path(__file__).resolve().parents[1]
RADIUS_MM = 100.0
METHOD = {
    "method": "spheres",
    "model": {"id_dim": 8, "exp_dim": 8, "hidden_dim": 32, "hidden_layers": 2,
              "pe_frequencies": 2, "experts": 4, "gate_hidden_dim": 16},
    "loss": {"embedding": 10.0, "smooth": 1.0, "entropy": 0.1},
    "train": {"epochs": 40, "scans_per_batch": 4, "points_per_scan": 512, "lr": 0.002,
              "code_lr": 0.01, "checkpoint_every_epochs": 5},
}


@pytest.fixture(scope="module")
def spheres(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Training spheres (4 'subjects' x 2 'expressions') and one held-out test sphere."""
    root = tmp_path_factory.mktemp("spheres")
    train = []
    for i, r in enumerate([0.30, 0.40, 0.50, 0.60]):
        for j, expression in enumerate(["1_neutral", "2_smile"]):
            path = root / f"{i}_{expression}.npz"
            write_sphere_samples(path, str(i), expression, r + 0.05 * j, 10 * i + j)
            train.append(path)
    test = root / "test.npz"
    write_sphere_samples(test, "9", "1_neutral", 0.45, 99)
    return {"root": root, "train": train, "test": test, "test_radius": 0.45}


def run(module: str, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"facerecon.{module}", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, check=False)


def train_args(spheres: dict, out: Path) -> list[object]:
    return ["--samples", *spheres["train"], "--config", json.dumps(METHOD), "--out", out,
            "--log-csv", out.with_suffix(".csv"), "--device", "cpu"]


@pytest.fixture(scope="module")
def trained(spheres: dict) -> Path:
    out = spheres["root"] / "model.pt"
    result = run("train", *train_args(spheres, out))
    assert result.returncode == 0, result.stderr
    return out


def test_training_reduces_the_loss(trained: Path) -> None:
    log = np.genfromtxt(trained.with_suffix(".csv"), delimiter=",", names=True)
    assert log["loss"][-5:].mean() < 0.25 * log["loss"][:3].mean()
    state = torch.load(trained, weights_only=True)
    assert state["subjects"] == ["0", "1", "2", "3"]
    assert len(state["scans"]) == 8
    assert not trained.with_name("model.pt.ckpt").exists()


def test_fit_and_mesh_recover_a_held_out_sphere(spheres: dict, trained: Path) -> None:
    codes = spheres["root"] / "codes.pt"
    fit = {"iterations": 100, "lr": 0.01, "points_per_scan": 1024}
    result = run("fit", "--model", trained, "--samples", spheres["test"],
                 "--config", json.dumps({"fit": fit}), "--out", codes, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    mesh_path = spheres["root"] / "mesh.ply"
    result = run("mesh", "--model", trained, "--codes", codes, "--out", mesh_path,
                 "--resolution", 64, "--coarse-resolution", 16, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    mesh = trimesh.load(mesh_path)
    radii_mm = np.linalg.norm(mesh.vertices, axis=1)
    expected_mm = spheres["test_radius"] * RADIUS_MM
    assert abs(radii_mm.mean() - expected_mm) < 3.0
    assert radii_mm.std() < 2.0
    # outward orientation: normals point towards positive SDF
    assert np.mean(np.einsum("ij,ij->i", mesh.face_normals, mesh.triangles_center)) > 0


def test_interrupted_training_resumes_to_the_same_weights(spheres: dict, trained: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "model.pt"
    ckpt = tmp_path / "model.pt.ckpt"
    process = subprocess.Popen([sys.executable, "-m", "facerecon.train",
                                *map(str, train_args(spheres, out))], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not ckpt.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert ckpt.exists() and not out.exists(), "the run should have been killed mid-way"
    result = run("train", *train_args(spheres, out))
    assert result.returncode == 0, result.stderr
    assert "resuming from" in result.stdout
    resumed = torch.load(out, weights_only=True)
    reference = torch.load(trained, weights_only=True)
    for key, value in reference["network"].items():
        torch.testing.assert_close(resumed["network"][key], value, rtol=0, atol=0)
    for key, value in reference["codes"].items():
        torch.testing.assert_close(resumed["codes"][key], value, rtol=0, atol=0)


def test_bad_samples_file_is_named(spheres: dict, tmp_path: Path) -> None:
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not an npz")
    result = run("train", "--samples", broken, "--config", json.dumps(METHOD),
                 "--out", tmp_path / "m.pt", "--log-csv", tmp_path / "m.csv")
    assert result.returncode == 2
    assert str(broken) in result.stderr and "Traceback" not in result.stderr


def test_marching_cubes_grid_has_no_scale_defect() -> None:
    """A sphere of radius 0.5 comes back at 0.5 (not 0.5 * 256/255), coarse-to-fine or not."""
    def sphere(p: np.ndarray) -> np.ndarray:
        return np.linalg.norm(p, axis=1) - 0.5

    for coarse in (0, 16):
        vertices, _ = extract_surface(sdf_volume(sphere, 64, coarse))
        assert abs(np.linalg.norm(vertices, axis=1).mean() - 0.5) < 1e-3


def fit_args(spheres: dict, model_path: Path, out: Path, **sections: object) -> list[object]:
    fit = {"iterations": 5, "lr": 0.01, "points_per_scan": 256}
    return ["--model", model_path, "--samples", spheres["test"], "--out", out, "--device", "cpu",
            "--config", json.dumps({"fit": fit, **sections})]


def test_a_model_of_another_method_or_config_is_refused(spheres: dict, trained: Path,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "codes.pt"
    result = run("fit", *fit_args(spheres, trained, out, method="other"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(trained) in result.stderr and "'spheres', not 'other'" in result.stderr
    other_loss = {**METHOD["loss"], "sdf": 1.0}
    result = run("fit", *fit_args(spheres, trained, out, method="spheres", loss=other_loss))
    assert result.returncode == 2 and "other loss settings" in result.stderr
    assert not out.exists()
    result = run("fit", *fit_args(spheres, trained, out, method="spheres",
                                  **{k: METHOD[k] for k in ("model", "loss", "train")}))
    assert result.returncode == 0, result.stderr


def test_codes_fitted_to_another_model_are_refused(spheres: dict, trained: Path,
                                                   tmp_path: Path) -> None:
    codes = tmp_path / "codes.pt"
    assert run("fit", *fit_args(spheres, trained, codes)).returncode == 0
    other = TrainedModel.load(trained)
    name = next(iter(other.network))
    other.network[name] = other.network[name] + 0.01
    other_path = tmp_path / "other.pt"
    other.save(other_path)
    result = run("mesh", "--model", other_path, "--codes", codes, "--out", tmp_path / "m.ply",
                 "--resolution", 32, "--coarse-resolution", 0, "--device", "cpu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(codes) in result.stderr and "another model" in result.stderr
    assert not (tmp_path / "m.ply").exists()


class _Marker:
    """Pickles to a call that creates a file: what a crafted model file could run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.path,))


def test_loading_a_crafted_file_runs_no_code(spheres: dict, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    crafted = tmp_path / "model.pt"
    torch.save({"format": "facerecon.trained_model", "version": 1, "x": _Marker(marker)},
               crafted)
    result = run("fit", *fit_args(spheres, crafted, tmp_path / "codes.pt"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(crafted) in result.stderr and "cannot read trained model" in result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["other data", "corrupt"])
def test_a_checkpoint_that_does_not_match_is_set_aside(spheres: dict, trained: Path,
                                                       tmp_path: Path, kind: str) -> None:
    out = tmp_path / "model.pt"
    ckpt = tmp_path / "model.pt.ckpt"
    if kind == "corrupt":
        ckpt.write_bytes(b"truncated")
    else:  # a real checkpoint, written as if the samples had been others
        model = TrainedModel.load(trained)
        model.samples_digest = "0" * 64
        TrainingCheckpoint(model, 35, {}, {}, torch.Generator().get_state(),
                           torch.get_rng_state()).save(ckpt)
    result = run("train", *train_args(spheres, out))
    assert result.returncode == 0, result.stderr
    assert "not resuming from" in result.stdout and "resuming from" not in result.stdout.replace(
        "not resuming from", "")
    assert len(list(tmp_path.glob("model.pt.ckpt.set-aside-*"))) == 1
    reference, retrained = TrainedModel.load(trained), TrainedModel.load(out)
    for key, value in reference.network.items():  # trained from scratch: the same weights
        torch.testing.assert_close(retrained.network[key], value, rtol=0, atol=0)
