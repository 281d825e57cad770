"""Bad values and broken files end in one line naming the key or file, exit code 2, no
traceback, and nothing already computed is lost (issue 12). Real files, real commands."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import trimesh
import yaml
from conftest import write_sphere_samples

from facerecon.io import save_landmarks, save_npz

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
TINY = [str(REPO / "config.yaml"), str(REPO / "tests/configs/tiny.yaml")]


def run(args: list[object], preexec_fn: Callable[[], None] | None = None
        ) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=REPO, env=ENV, capture_output=True,
                          text=True, check=False, preexec_fn=preexec_fn)


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit code 2, no traceback, and the error is one line holding every needle."""
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def python(module: str, *args: object) -> list[object]:
    return [sys.executable, "-m", module, *args]


@pytest.mark.parametrize(("override", "key"), [
    ({"train": {"epochs": 0}}, "config.train.epochs: must be >= 1"),
    ({"train": {"scans_per_batch": 0}}, "config.train.scans_per_batch: must be >= 1"),
    ({"train": {"checkpoint_every_epochs": 0}}, "config.train.checkpoint_every_epochs"),
    ({"mesh": {"resolution": 1}}, "config.mesh.resolution: must be >= 8"),
    ({"train": {"lr": -1}}, "config.train.lr: must be > 0"),
    ({"fit": {"iterations": 0}}, "config.fit.iterations: must be >= 1"),
    ({"methods": {"single": {"loss": {"smooth": -1.0}}}}, "config.methods.single.loss.smooth"),
    ({"synthetic": {"split": {"test_subjects": []}}}, "test_subjects: must not be empty"),
])
def test_a_bad_config_value_stops_before_any_job(tmp_path: Path, override: dict,
                                                 key: str) -> None:
    overlay = tmp_path / "bad.yaml"
    overlay.write_text(yaml.safe_dump(override))
    result = run([BIN / "snakemake", "-s", REPO / "workflow/Snakefile", "-n", "-d", tmp_path,
                  "--configfile", *TINY, overlay])
    assert_one_line_error(result, key)
    assert not (tmp_path / "results").exists()


TRAIN_CONFIG = json.dumps({"method": "m", "model": {"id_dim": 4, "exp_dim": 4,
                                                    "hidden_dim": 8, "hidden_layers": 1},
                           "train": {"epochs": 2, "points_per_scan": 64,
                                     "checkpoint_every_epochs": 1}})


def train_command(samples: Path, out: Path) -> list[object]:
    return python("facerecon.train", "--config", TRAIN_CONFIG, "--samples", samples,
                  "--out", out, "--log-csv", out.with_suffix(".csv"), "--device", "cpu")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "wrong shape", "npy"])
def test_a_broken_sample_file_is_named(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "samples.npz"
    write_sphere_samples(path, surface_points=400, uniform_points=200)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00garbage" * 100)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "npy":
        np.save(tmp_path / "array.npy", np.zeros((4, 3)))
        (tmp_path / "array.npy").replace(path)
    else:
        arrays = dict(np.load(path))
        arrays["surface_normals"] = arrays["surface_normals"][:-1]
        save_npz(path, **arrays)
    result = run(train_command(path, tmp_path / "model.pt"))
    assert_one_line_error(result, str(path))
    assert not (tmp_path / "model.pt").exists()


@pytest.mark.parametrize(("module", "flag", "name", "content", "problem"), [
    ("facerecon.fit", "--model", "model.pt", b"PK\x03\x04 truncated zip", "cannot read"),
    ("facerecon.preprocess", "--scan", "scan.obj", b"v 1 2\nf 1 2 3\n", "malformed vertex"),
    ("facerecon.aggregate", "--metrics", "7/1_neutral.json", b"{\"chamfer_mm\": 1.", "JSON"),
    ("facerecon.images.align", "", "photo.png", b"not an image at all", "not a readable image"),
])
def test_a_broken_input_file_is_named(tmp_path: Path, module: str, flag: str, name: str,
                                      content: bytes, problem: str) -> None:
    bad = tmp_path / name
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(content)
    samples, landmarks = tmp_path / "s.npz", tmp_path / "l.txt"
    write_sphere_samples(samples, surface_points=400, uniform_points=200)
    save_landmarks(landmarks, np.zeros((68, 3)))
    out = tmp_path / "out"
    args = {
        "facerecon.fit": ["--model", bad, "--samples", samples, "--out", out / "c.pt"],
        "facerecon.preprocess": ["--scan", bad, "--landmarks", landmarks, "--out-mesh",
                                 out / "m.ply", "--out-landmarks", out / "l.txt",
                                 "--out-transform", out / "t.json"],
        "facerecon.aggregate": ["collect", "--metrics", bad, "--out", out / "s.csv"],
        "facerecon.images.align": [bad, "--out", out / "crop.png"],
    }[module]
    result = run(python(module, *args))
    line = assert_one_line_error(result, str(bad), problem)
    assert "pip install" not in result.stderr, line
    assert not out.exists()


def file_size_limit(n_bytes: int) -> Callable[[], None]:
    """A child process that cannot write files past ``n_bytes``: a full disk, as writes see it."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, n_bytes))
    return apply


def sheet_files(tmp_path: Path) -> tuple[Path, Path]:
    """A preprocessed-like sheet (a 40 mm sphere, crop frame) and its landmarks."""
    mesh, landmarks = tmp_path / "sheet.ply", tmp_path / "sheet.landmarks.txt"
    trimesh.creation.icosphere(subdivisions=3, radius=40.0).export(mesh)
    save_landmarks(landmarks, np.zeros((68, 3)))
    return mesh, landmarks


def test_a_full_disk_names_the_output_and_keeps_the_previous_file(tmp_path: Path) -> None:
    mesh, landmarks = sheet_files(tmp_path)
    out = tmp_path / "out" / "samples.npz"
    out.parent.mkdir()
    out.write_bytes(b"an earlier result")
    command = python("facerecon.sample", "--mesh", mesh, "--landmarks", landmarks, "--out", out,
                     "--subject", "1", "--expression", "1_neutral", "--surface-points", 20000,
                     "--uniform-points", 2000)
    result = run(command, preexec_fn=file_size_limit(50_000))
    assert_one_line_error(result, str(out), "cannot write", "File too large")
    assert out.read_bytes() == b"an earlier result"
    assert sorted(p.name for p in out.parent.iterdir()) == ["samples.npz"]  # no temp left
    assert run(command).returncode == 0  # with room, the same command succeeds


def test_a_full_disk_while_saving_a_checkpoint_names_it(tmp_path: Path) -> None:
    samples = tmp_path / "samples.npz"
    write_sphere_samples(samples, surface_points=400, uniform_points=200)
    out = tmp_path / "model.pt"
    result = run(train_command(samples, out), preexec_fn=file_size_limit(2_000))
    assert_one_line_error(result, str(out) + ".ckpt", "cannot write")
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_output_under_a_file_is_named(tmp_path: Path) -> None:
    mesh, landmarks = sheet_files(tmp_path)
    blocker = tmp_path / "results"
    blocker.write_text("a file where a folder should be")
    out = blocker / "samples.npz"
    result = run(python("facerecon.sample", "--mesh", mesh, "--landmarks", landmarks, "--out",
                        out, "--subject", "1", "--expression", "1_neutral",
                        "--surface-points", 100, "--uniform-points", 100))
    assert_one_line_error(result, str(out), "cannot write")
