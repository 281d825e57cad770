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
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from conftest import write_sphere_samples
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as tb_crc
from test_paper_model import IMAGES, SMALL, face_landmarks

from facerecon import io
from facerecon.batches import (
    Precision,
    conditioning,
    draw_points,
    load_scan_samples,
    optimisation_step,
)
from facerecon.config import MethodConfig, from_dict
from facerecon.images import save_image
from facerecon.images.camera import WeakPerspectiveCamera, camera_record
from facerecon.mesh import extract_surface, sdf_volume
from facerecon.models import MODELS, LatentCodes, build_model
from facerecon.steplog import EVENTS_FILE, STEPS_CSV, TENSORBOARD_DIR, StepLog, masked_crc32c
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
#: A tiny config of every registered implicit model (facerecon.models.MODELS), trained on
#: the spheres below (8 scans, so 2 steps an epoch).
RUNS = {
    "implicit": METHOD,
    "i3dmm": {"method": "i3", "model": {
        "name": "i3dmm", "id_dim": 4, "exp_dim": 4, "pe_frequencies": 2,
        "deform_hidden_dim": 32, "deform_layers": 2, "reference_hidden_dim": 32,
        "reference_layers": 2}, "loss": {"embedding": 10.0},
        "train": {"epochs": 12, "scans_per_batch": 4, "points_per_scan": 512, "lr": 0.002,
                  "code_lr": 0.01, "checkpoint_every_epochs": 4}},
    "paper": {"method": "ours", "model": {"name": "paper", **SMALL, **IMAGES, "experts": 8},
              "loss": {"embedding": 10.0, "smooth": 1.0, "entropy": 0.1},
              "train": {"epochs": 8, "scans_per_batch": 4, "points_per_scan": 256,
                        "lr": 0.003, "code_lr": 0.01, "checkpoint_every_epochs": 2}},
}


def write_view(folder: Path, seed: int) -> Path:
    """An images-stage folder (a random 64-px crop, a front camera seeing the unit sphere
    whole) and its preprocess record (identity transform), whose path is returned."""
    folder.mkdir()
    save_image(folder / "crop.png", np.random.default_rng(seed).random((64, 64, 3)))
    front = WeakPerspectiveCamera(31.5 / RADIUS_MM, np.diag([1.0, -1.0, -1.0]),
                                  np.array([31.5, 31.5]))
    io.write_json(folder / "camera.json", camera_record(front, np.zeros(68)))
    io.write_json(folder / "transform.json", {"transform": np.eye(4).tolist()})
    return folder / "transform.json"


@pytest.fixture(scope="module")
def spheres(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Training spheres (4 'subjects' x 2 'expressions', with face-like landmarks and a
    view each) and one held-out test sphere."""
    root = tmp_path_factory.mktemp("spheres")
    train, views, transforms = [], [], []
    for i, r in enumerate([0.30, 0.40, 0.50, 0.60]):
        for j, expression in enumerate(["1_neutral", "2_smile"]):
            path = root / f"{i}_{expression}.npz"
            radius = r + 0.05 * j
            write_sphere_samples(path, str(i), expression, radius, 10 * i + j,
                                 landmarks=face_landmarks(len(train)).numpy() * radius / 0.4)
            train.append(path)
            views.append(root / f"view_{i}_{expression}")
            transforms.append(write_view(views[-1], len(train)))
    test = root / "test.npz"
    write_sphere_samples(test, "9", "1_neutral", 0.45, 99)
    return {"root": root, "train": train, "views": views, "transforms": transforms,
            "test": test, "test_radius": 0.45}


def run(module: str, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"facerecon.{module}", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, check=False)


def train_args(spheres: dict, out: Path, name: str = "implicit") -> list[object]:
    """Arguments of facerecon.train for model ``name``'s tiny run, writing ``out``; the
    step logs go to their defaults beside it."""
    config = RUNS[name]
    views = (["--views", *spheres["views"], "--transforms", *spheres["transforms"]]
             if config["model"].get("multiscale_features") else [])
    return ["--samples", *spheres["train"], *views, "--config", json.dumps(config),
            "--out", out, "--log-csv", out.with_suffix(".csv"), "--device", "cpu"]


@pytest.fixture(scope="module")
def reference(spheres: dict) -> Callable[[str], Path]:
    """The uninterrupted run of a model's tiny config (each trained once per module), its
    step logs written where ``--steps-csv`` and ``--tensorboard-dir`` say."""
    runs: dict[str, Path] = {}

    def trained_once(name: str) -> Path:
        if name not in runs:
            out = spheres["root"] / name / "model.pt"
            result = run("train", *train_args(spheres, out, name), "--steps-csv",
                         out.parent / "steps.csv", "--tensorboard-dir", out.parent / "tb")
            assert result.returncode == 0, result.stderr
            runs[name] = out
        return runs[name]

    return trained_once


@pytest.fixture(scope="module")
def trained(reference: Callable[[str], Path]) -> Path:
    return reference("implicit")


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


def csv_rows(path: Path) -> list[dict[str, str]]:
    """The complete rows of a CSV log (a row being written is left out)."""
    lines = path.read_text().splitlines(keepends=True) if path.exists() else []
    lines = [line.rstrip("\n").split(",") for line in lines if line.endswith("\n")]
    return [dict(zip(lines[0], cells, strict=True)) for cells in lines[1:]]


def kill_between_checkpoints(args: list[object], ckpt: Path, steps_per_epoch: int) -> int:
    """Start facerecon.train with ``args`` and SIGKILL it once a checkpoint exists and the
    step log has gone past it (it is stopped first, so the state checked is the state
    killed); return the number of steps it logged."""
    process = subprocess.Popen([sys.executable, "-m", "facerecon.train", *map(str, args)],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    steps_csv = ckpt.parent / STEPS_CSV
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if ckpt.exists():
            process.send_signal(signal.SIGSTOP)
            logged = len(csv_rows(steps_csv))
            epoch = torch.load(ckpt, weights_only=True)["epoch"]
            if logged > epoch * steps_per_epoch:
                process.send_signal(signal.SIGKILL)
                process.wait()
                return logged
            process.send_signal(signal.SIGCONT)
        time.sleep(0.005)
    process.kill()
    process.wait()
    pytest.fail("the run ended before it was killed between two checkpoints")


def without(rows: list[dict[str, str]], column: str) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != column} for row in rows]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_interrupted_training_resumes_bit_for_bit(spheres: dict, reference: Callable[[str], Path],
                                                  tmp_path: Path, name: str) -> None:
    """Killed (SIGKILL) after a checkpoint and rerun, training ends where an uninterrupted
    run ends: same weights, codes, per-epoch history and per-step log, each step once."""
    train_cfg = RUNS[name]["train"]
    steps_per_epoch = -(-len(spheres["train"]) // train_cfg["scans_per_batch"])
    out, ckpt = tmp_path / "model.pt", tmp_path / "model.pt.ckpt"
    killed_at = kill_between_checkpoints(train_args(spheres, out, name), ckpt, steps_per_epoch)
    assert ckpt.exists() and not out.exists(), "the run should have been killed mid-way"
    result = run("train", *train_args(spheres, out, name))
    assert result.returncode == 0, result.stderr
    assert "resuming from" in result.stdout
    assert '{"device": "cpu", "precision": "fp32", "tf32": false}' in result.stdout
    expected = reference(name)
    resumed, uninterrupted = torch.load(out, weights_only=True), torch.load(expected,
                                                                             weights_only=True)
    for part in ("network", "codes"):
        assert resumed[part].keys() == uninterrupted[part].keys()
        for key, value in uninterrupted[part].items():
            torch.testing.assert_close(resumed[part][key], value, rtol=0, atol=0)
    history = [without(csv_rows(path.with_suffix(".csv")), "seconds")
               for path in (out, expected)]
    assert history[0] == history[1] and len(history[0]) == train_cfg["epochs"]
    steps = csv_rows(tmp_path / STEPS_CSV)
    n_steps = train_cfg["epochs"] * steps_per_epoch
    assert killed_at < n_steps
    assert [int(row["step"]) for row in steps] == list(range(1, n_steps + 1))
    assert without(steps, "wall_time") == without(csv_rows(expected.parent / "steps.csv"),
                                                  "wall_time")
    for logs in (tmp_path / TENSORBOARD_DIR, expected.parent / "tb"):
        events = EventAccumulator(str(logs), size_guidance={"scalars": 0})
        events.Reload()
        scalars = events.Scalars("train/loss")
        assert [e.step for e in scalars] == list(range(1, n_steps + 1))
        assert [e.value for e in scalars] == [float(np.float32(r["loss"])) for r in steps]


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


def test_auto_precision_on_cpu_is_plain_float32(spheres: dict) -> None:
    """'auto' on CPU is fp32 without autocast: optimisation_step gives bit for bit the
    losses and weights of the step as it was before precision existed. An explicit 'bf16'
    runs the loss under CPU autocast and keeps the weights and gradients float32."""
    cpu = torch.device("cpu")
    precision = Precision.setup("auto", cpu)
    assert (precision.name, precision.tf32) == ("fp32", False)
    cfg = from_dict(MethodConfig, {k: METHOD[k] for k in ("model", "loss")})
    scans = [load_scan_samples(path) for path in spheres["train"][:2]]
    runs = []
    for plain in (True, False, None):  # the step as it was, fp32, bf16
        if plain is None:
            precision = Precision.setup("bf16", cpu)
            assert (precision.name, precision.tf32) == ("bf16", False)
        torch.manual_seed(0)
        model = build_model(cfg.model)
        codes = LatentCodes(model.latent_spec(), 1, 2)
        optimizer = torch.optim.Adam([*model.parameters(), *codes.parameters()], lr=0.01)
        generator = torch.Generator().manual_seed(0)
        losses = []
        for _ in range(3):
            batch = draw_points(scans, 256, 0.5, generator, cpu)
            cond = conditioning(codes(torch.tensor([0, 0]), torch.tensor([0, 1])), scans, cpu)
            if plain:
                loss = sum(model.get_loss_dict(batch, cond, cfg.loss).values())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            else:
                losses.append(optimisation_step(model.get_loss_dict, batch, cond, cfg.loss,
                                                optimizer, precision)["loss"])
        runs.append((losses, {**model.state_dict(), **codes.state_dict()}))
    assert runs[0][0] == runs[1][0]
    for key, value in runs[0][1].items():
        torch.testing.assert_close(runs[1][1][key], value, rtol=0, atol=0)
    bf16, fp32 = runs[2][0], runs[1][0]  # the same start, then the trajectories part
    assert bf16[0] != fp32[0] and abs(bf16[0] - fp32[0]) < 0.01 * fp32[0]
    assert np.isfinite(bf16).all()
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32
               for p in model.parameters() if p.grad is not None)


def test_step_log_cuts_back_widens_and_drops_a_row_cut_short(tmp_path: Path) -> None:
    """The CSV and the TensorBoard events hold each kept step once, in order."""
    steps_csv, logs = tmp_path / "steps.csv", tmp_path / "tb"
    log = StepLog(steps_csv, logs, keep_steps=0)
    for step in (1, 2, 3):
        log.append({"epoch": 1, "step": step, "wall_time": 1e9 + step, "loss": step / 3})
    log.close()
    with steps_csv.open("a") as f:
        f.write("2,4,1000000004.0,0.")  # a kill in the middle of a row
    log = StepLog(steps_csv, logs, keep_steps=2)  # resume from a checkpoint after step 2
    log.append({"epoch": 2, "step": 3, "wall_time": 1e9 + 5, "loss": 0.5, "smooth": 0.25})
    log.append({"epoch": 2, "step": 4, "wall_time": 1e9 + 6, "loss": 0.125})
    log.close()
    assert steps_csv.read_text() == (
        "epoch,step,wall_time,loss,smooth\n"
        f"1,1,1000000001.0,{1 / 3!r},\n1,2,1000000002.0,{2 / 3!r},\n"
        "2,3,1000000005.0,0.5,0.25\n2,4,1000000006.0,0.125,\n")
    assert [p.name for p in logs.iterdir()] == [EVENTS_FILE]
    events = EventAccumulator(str(logs), size_guidance={"scalars": 0})
    events.Reload()
    assert [(e.step, e.wall_time, e.value) for e in events.Scalars("train/loss")] == [
        (1, 1e9 + 1, float(np.float32(1 / 3))), (2, 1e9 + 2, float(np.float32(2 / 3))),
        (3, 1e9 + 5, 0.5), (4, 1e9 + 6, 0.125)]
    assert [(e.step, e.value) for e in events.Scalars("train/smooth")] == [(3, 0.25)]
    for data in (b"", b"123456789", bytes(range(256)) * 3):  # TFRecord's checksum
        assert masked_crc32c(data) == tb_crc(data)


@pytest.fixture(scope="module")
def test_pair(spheres: dict) -> list[Path]:
    """Two held-out scans of one test subject: spheres of radius 0.35 and 0.55 units."""
    paths = []
    for expression, radius, seed in (("1_neutral", 0.35, 97), ("3_mouth_stretch", 0.55, 98)):
        paths.append(spheres["root"] / f"pair_{expression}.npz")
        write_sphere_samples(paths[-1], "9", expression, radius, seed)
    return paths


def fit_pair(trained: Path, test_pair: list[Path], folder: Path, **fit: object
             ) -> subprocess.CompletedProcess:
    """facerecon.fit of both scans of ``test_pair`` in one call, codes into ``folder``."""
    fit = {"iterations": 100, "lr": 0.01, "points_per_scan": 1024, **fit}
    return run("fit", "--model", trained, "--samples", *test_pair, "--out",
               folder / "a.pt", folder / "b.pt", "--config", json.dumps({"fit": fit}),
               "--device", "cpu")


def mesh_radii_mm(trained: Path, codes: list[Path]) -> list[float]:
    """Mean vertex radius of the mesh of each of ``codes`` (64^3, one facerecon.mesh call
    for all), in mm."""
    outs = [c.with_suffix(".ply") for c in codes]
    result = run("mesh", "--model", trained, "--codes", *codes, "--out", *outs,
                 "--resolution", 64, "--coarse-resolution", 16, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    return [float(np.linalg.norm(trimesh.load(o).vertices, axis=1).mean()) for o in outs]


@pytest.mark.parametrize("share_identity", [False, True])
def test_scans_fitted_together_each_get_their_own_shape(trained: Path, test_pair: list[Path],
                                                        tmp_path: Path,
                                                        share_identity: bool) -> None:
    """One batched fit of two scans of one subject recovers each sphere; with
    share_identity their identity codes are one code, else two."""
    result = fit_pair(trained, test_pair, tmp_path, share_identity=share_identity)
    assert result.returncode == 0, result.stderr
    assert "with 2 scans in this job" in result.stdout
    a, b = (torch.load(tmp_path / n, weights_only=True) for n in ("a.pt", "b.pt"))
    assert (a["subject"], a["expression"], b["expression"]) == ("9", "1_neutral",
                                                              "3_mouth_stretch")
    assert torch.equal(a["codes"]["identity"], b["codes"]["identity"]) == share_identity
    assert not torch.equal(a["codes"]["expression"], b["codes"]["expression"])
    radii = mesh_radii_mm(trained, [tmp_path / "a.pt", tmp_path / "b.pt"])
    for radius_mm, radius in zip(radii, (0.35, 0.55), strict=True):
        assert abs(radius_mm - radius * RADIUS_MM) < 4.0
    assert not list(tmp_path.glob("*.ckpt"))


def test_interrupted_fit_resumes_bit_for_bit(trained: Path, test_pair: list[Path],
                                             tmp_path: Path) -> None:
    """Killed (SIGKILL) after a checkpoint and rerun, a batched fit ends with the codes of
    an uninterrupted fit, exactly."""
    fit = {"iterations": 300, "checkpoint_every_iterations": 20}
    (tmp_path / "ref").mkdir()
    assert fit_pair(trained, test_pair, tmp_path / "ref", **fit).returncode == 0
    args = ["--model", trained, "--samples", *test_pair, "--out", tmp_path / "a.pt",
            tmp_path / "b.pt", "--config", json.dumps({"fit": {
                "iterations": 100, "lr": 0.01, "points_per_scan": 1024, **fit}}),
            "--device", "cpu"]
    process = subprocess.Popen([sys.executable, "-m", "facerecon.fit", *map(str, args)],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "a.pt.ckpt"
    deadline = time.monotonic() + 120
    while process.poll() is None and not ckpt.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert torch.load(ckpt, weights_only=True)["step"] < fit["iterations"], "killed too late"
    assert not (tmp_path / "a.pt").exists()
    result = run("fit", *args)
    assert result.returncode == 0, result.stderr
    assert "resuming from" in result.stdout
    for name in ("a.pt", "b.pt"):
        resumed = torch.load(tmp_path / name, weights_only=True)
        expected = torch.load(tmp_path / "ref" / name, weights_only=True)
        for space, code in expected["codes"].items():
            torch.testing.assert_close(resumed["codes"][space], code, rtol=0, atol=0)
        assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in expected["history"]]
    assert not ckpt.exists()


def test_fit_arguments_that_do_not_match_are_named(trained: Path, test_pair: list[Path],
                                                   tmp_path: Path) -> None:
    result = run("fit", "--model", trained, "--samples", *test_pair, "--out", tmp_path / "a.pt",
                 "--device", "cpu")
    assert result.returncode == 2 and "--out: 1 paths for 2 sample files" in result.stderr
    result = run("fit", "--model", trained, "--samples", test_pair[0], test_pair[0], "--out",
                 tmp_path / "a.pt", tmp_path / "b.pt", "--device", "cpu")
    assert result.returncode == 2 and f"{test_pair[0]}: scan 9/1_neutral is also given" in \
        result.stderr
    assert not list(tmp_path.iterdir())
