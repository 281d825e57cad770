"""The whole DAG on a tiny config: tables with finite numbers, reruns only what changed.

Runs Snakemake in a temporary working directory (``-d``) with config.yaml
overlaid by tests/configs/tiny.yaml, so it never touches the repository's
results/.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import math
import os
import re
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import trimesh
import yaml

from facerecon.config import method_config
from facerecon.data import ict
from facerecon.data.facescape import TU_LANDMARKS, TU_VERTEX_COUNT
from facerecon.layout import scan_name

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
#: As after `. .venv/bin/activate`: the rules' `python` is this interpreter.
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
CONFIGS = [str(REPO / "config.yaml"), str(REPO / "tests/configs/tiny.yaml")]

pytestmark = pytest.mark.slow
#: The figures of rules/figures.smk under results/<dataset>/figures/ (PNG, PDF beside).
FIGURES = ["fig3_comparison", "fig3_errors", "fig4_ablation", "chamfer_distribution"]


def snakemake(workdir: Path, *args: str, configs: list[str] = CONFIGS,
              env: dict[str, str] = ENV) -> str:
    """Run snakemake from the repository on ``workdir``; return its output, fail loudly."""
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "workflow/Snakefile"), *args, "-d", str(workdir),
           "--cores", "2", "--configfile", *configs]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout + result.stderr


def planned_jobs(output: str) -> dict[str, int]:
    """Rule -> job count from a dry run's 'Job stats' table."""
    stats = output.split("Job stats:")[-1] if "Job stats:" in output else ""
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)
            if m[1] != "total"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("workflow")
    snakemake(work, "results/table1.csv", "results/table2.csv",
              "results/figures/chamfer_by_expression.png",
              "results/figures/alignment_overlay.png",
              "results/synthetic/figures/experts_experts_reg.png",
              *[f"results/synthetic/figures/{name}.png" for name in FIGURES])
    return work


def test_tables_have_the_contract_columns_and_finite_numbers(workdir: Path) -> None:
    tiny = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    table1 = pd.read_csv(workdir / "results/table1.csv")
    assert list(table1.columns) == ["method", "dim", "chamfer_mm", "fscore_1mm", "n_scans"]
    assert list(table1["method"]) == tiny["table1"]
    table2 = pd.read_csv(workdir / "results/table2.csv")
    assert list(table2.columns) == ["multiscale", "local_experts", "regularization",
                                    "chamfer_mm", "fscore_1mm", "n_scans"]
    assert list(table2["multiscale"]) == [False, False, True]
    assert list(table2["local_experts"]) == [False, True, True]
    assert list(table2["regularization"]) == [False, False, True]
    for table in (table1, table2):
        assert all(math.isfinite(v) and v > 0 for v in table["chamfer_mm"])
        assert all(0 <= v <= 100 for v in table["fscore_1mm"])
        assert set(table["n_scans"]) == {1}
    assert (workdir / "results/table1.md").read_text().startswith("| method | dim |")
    assert r"\begin{tabular}" in (workdir / "results/table1.tex").read_text()
    for figure in ("chamfer_by_expression.png", "alignment_overlay.png"):
        assert (workdir / "results/figures" / figure).stat().st_size > 1000
    camera = json.loads((workdir / "results/synthetic/images/3/3_mouth_stretch/camera.json")
                        .read_text())
    assert camera["reprojection_error_px"]["median"] < 2.0
    gates = json.loads((workdir / "results/synthetic/figures/experts_experts_reg.json")
                       .read_text())
    assert gates["experts"] == 2 and 0.5 <= gates["mean_max_gate"] <= 1.0
    for rule in ("synthetic_scan", "prepare_images", "preprocess", "sample", "train", "fit",
                 "mesh", "evaluate", "gate_report"):
        assert any((workdir / "results/synthetic/logs" / rule).rglob("*.log")), rule
        assert any((workdir / "results/synthetic/benchmarks" / rule).rglob("*.tsv")), rule


def test_figures_are_images_and_the_report_shows_them(workdir: Path, tmp_path: Path) -> None:
    figures = workdir / "results/synthetic/figures"
    for name in FIGURES:
        image = plt.imread(figures / f"{name}.png")
        assert min(image.shape[:2]) > 150 and image[..., :3].std() > 0.05, name
        assert (figures / f"{name}.pdf").read_bytes().startswith(b"%PDF"), name
    for rule in ("figure_comparison", "figure_errors", "figure_ablation",
                 "figure_distribution", "figure_by_expression"):
        assert (workdir / f"results/synthetic/benchmarks/{rule}.tsv").is_file(), rule
    report = tmp_path / "report.html"
    # the fixture's targets: the default target also wants gate reports it did not build
    snakemake(workdir, "--report", str(report), "results/table1.csv", "results/table2.csv",
              "results/figures/chamfer_by_expression.png",
              "results/synthetic/figures/experts_experts_reg.png",
              *[f"results/synthetic/figures/{name}.png" for name in FIGURES])
    html = report.read_text()
    for name in [*FIGURES, "chamfer_by_expression", "experts_experts_reg"]:
        assert f"filename={name}.png;base64" in html, name
    for table in ("table1.csv", "table2.csv"):
        assert f"filename={table};base64" in html, table
    assert "one colour scale" in html  # a caption, rendered


def test_second_run_does_nothing(workdir: Path) -> None:
    output = snakemake(workdir, "results/table1.csv", "results/table2.csv", "-n")
    assert "Nothing to be done" in output


def test_changing_a_training_hyperparameter_reruns_only_training_and_downstream(
    workdir: Path, tmp_path: Path
) -> None:
    tiny = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    tiny["train"]["lr"] = 0.00123
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(tiny))
    output = snakemake(workdir, "results/table1.csv", "-n",
                       configs=[CONFIGS[0], str(changed)])
    jobs = planned_jobs(output)
    assert jobs.get("train") == 2, output[-3000:]
    assert {"fit", "mesh", "evaluate", "table"} <= set(jobs)
    assert not {"synthetic_scan", "preprocess", "sample"} & set(jobs)


def test_one_subject_report(workdir: Path) -> None:
    snakemake(workdir, "results/synthetic/subjects/3.csv")
    report = pd.read_csv(workdir / "results/synthetic/subjects/3.csv", dtype={"subject": str})
    assert set(report["subject"]) == {"3"}
    assert set(report["method"]) == {"single", "experts", "experts_reg"}


def test_unknown_method_in_config_fails_with_its_name(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"table1": ["no_such_method"]}))
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "workflow/Snakefile"), "-n", "-d", str(tmp_path),
           "--configfile", CONFIGS[0], str(bad)]
    result = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "no_such_method" in result.stdout + result.stderr


def overlay(tmp_path: Path, data: dict) -> list[str]:
    """config.yaml, the tiny config and ``data`` on top, as --configfile arguments."""
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(data))
    return [*CONFIGS, str(path)]


def test_ict_dataset_runs_end_to_end(tmp_path: Path) -> None:
    """On the ICT model shipped in the package: nothing from ../shared, nothing fetched."""
    split = {"train_subjects": [1, 2], "test_subjects": [3], "train_expressions": [1, 3],
             "test_expressions": [5]}
    configs = overlay(tmp_path, {"dataset": "ict", "ict": {"subjects": 3, "split": split}})
    snakemake(tmp_path, "results/table1.csv", configs=configs)
    table = pd.read_csv(tmp_path / "results/table1.csv")
    assert all(math.isfinite(v) for v in table["chamfer_mm"])
    assert (tmp_path / "results/ict/raw/3/models_reg/5_jaw_left.obj").is_file()
    assert not (tmp_path / "results/synthetic").exists()


@contextlib.contextmanager
def token_server(directory: Path) -> Iterator[int]:
    """A loopback HTTP server of ``directory`` that wants TokenHandler's token; its port."""
    handler = functools.partial(TokenHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


class TokenHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder, only to requests that carry the expected bearer token."""

    token = "s3cret-token-value"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            self.send_error(403)
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def tu_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real faces shaped like FaceScape TU meshes, zipped like facescape_trainset_*.zip.

    ICT-FaceKit scans (subjects 1, 2; neutral and jaw_left) with their vertices
    reordered so the 68 landmarks sit at the TU landmark indices, padded to the TU
    vertex count by a small fan hidden inside the head (hole filling removes it).
    """
    model = ict.load_model(ict.PACKAGED_MODEL)
    surface = ict.ScanSurface.of(model)
    path = tmp_path_factory.mktemp("tu") / "facescape_trainset_001_100.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for subject in (1, 2):
            identity = ict.identity_vertices_cm(model, surface, 0, subject)
            for expression in (1, 5):
                mesh, landmarks = ict.make_scan(model, surface, identity, expression)
                vertices, faces = tu_shaped(mesh, landmarks)
                obj = trimesh.exchange.obj.export_obj(
                    trimesh.Trimesh(vertices, faces, process=False), include_normals=False)
                zf.writestr(f"facescape_trainset_001_100/{subject}/models_reg/"
                            f"{scan_name(expression)}.obj", obj)
    return path


def tu_shaped(mesh: trimesh.Trimesh, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (TU_VERTEX_COUNT, 3) and faces of ``mesh`` with landmark i at TU_LANDMARKS[i]."""
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    landmark_vertex = [int(np.argmin(np.linalg.norm(vertices - p, axis=1))) for p in landmarks]
    n_fan = TU_VERTEX_COUNT - len(vertices)
    angles = np.linspace(0, 2 * np.pi, n_fan - 1, endpoint=False)
    centre = vertices.mean(axis=0) - [0.0, 0.0, 30.0]
    fan = centre + 5.0 * np.c_[np.cos(angles), np.sin(angles), np.zeros_like(angles)]
    ring = len(vertices) + 1 + np.arange(n_fan - 1)
    fan_faces = np.c_[np.full(n_fan - 1, len(vertices)), np.roll(ring, -1), ring]
    vertices = np.vstack([vertices, centre, fan])
    faces = np.vstack([faces, fan_faces])
    new_index = np.full(len(vertices), -1)
    new_index[landmark_vertex] = TU_LANDMARKS
    free = np.setdiff1d(np.arange(len(vertices)), TU_LANDMARKS)
    new_index[new_index < 0] = free
    reordered = np.empty_like(vertices)
    reordered[new_index] = vertices
    return reordered, new_index[faces]


def test_facescape_from_a_link_with_a_token(tmp_path: Path, tu_archive: Path) -> None:
    """Download (token from the environment, signed link), import, train, table; the
    secret and the link's signature appear in no file the workflow wrote."""
    with token_server(tu_archive.parent) as port:
        signature = "Signature=abcdef0123456789"
        url = f"http://127.0.0.1:{port}/{tu_archive.name}?{signature}"
        split = {"train_subjects": [1], "test_subjects": [2], "train_expressions": [1, 5],
                 "test_expressions": [5]}
        configs = overlay(tmp_path, {"dataset": "facescape", "facescape": {
            "urls": [url], "token_env": "FACESCAPE_TOKEN", "split": split}})
        work = tmp_path / "work"
        snakemake(work, "results/table1.csv", configs=configs,
                  env={**ENV, "FACESCAPE_TOKEN": TokenHandler.token})
    assert math.isfinite(pd.read_csv(work / "results/table1.csv")["chamfer_mm"].iloc[0])
    assert (work / "results/facescape/raw/2/models_reg/5_jaw_left.landmarks.txt").is_file()
    for path in work.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            data = path.read_bytes()
            assert TokenHandler.token.encode() not in data, path
            assert signature.encode() not in data, path


#: One key of each section, and the stage that reads it first (with what comes before it).
SECTION_CHANGES = [
    ({"synthetic": {"seed": 5}}, "synthetic_scan", []),
    ({"preprocess": {"offset_mm": 41.0}}, "preprocess", ["synthetic_scan"]),
    ({"sampling": {"seed": 4}}, "sample", ["synthetic_scan", "preprocess"]),
    ({"model": {"hidden_dim": 24}}, "train", ["synthetic_scan", "preprocess", "sample"]),
    ({"loss": {"eikonal": 40.0}}, "train", ["synthetic_scan", "preprocess", "sample"]),
    ({"train": {"seed": 3}}, "train", ["synthetic_scan", "preprocess", "sample"]),
    ({"fit": {"lr": 0.004}}, "fit", ["synthetic_scan", "preprocess", "sample", "train"]),
    ({"mesh": {"resolution": 40}}, "mesh", ["synthetic_scan", "preprocess", "sample", "train",
                                             "fit"]),
    ({"evaluate": {"seed": 2}}, "evaluate", ["synthetic_scan", "preprocess", "sample", "train",
                                             "fit", "mesh"]),
]


@pytest.mark.parametrize(("change", "first", "upstream"), SECTION_CHANGES,
                         ids=[next(iter(c[0])) for c in SECTION_CHANGES])
def test_changing_one_key_reruns_exactly_its_stage_and_what_follows(
    workdir: Path, tmp_path: Path, change: dict, first: str, upstream: list[str]
) -> None:
    tiny = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    for section, values in change.items():
        tiny[section] = {**tiny.get(section, {}), **values}
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(tiny))
    output = snakemake(workdir, "results/table1.csv", "-n", configs=[CONFIGS[0], str(changed)])
    jobs = planned_jobs(output)
    assert first in jobs, output[-3000:]
    assert {"evaluate", "table", "publish_table"} <= set(jobs), output[-3000:]
    assert not set(upstream) & set(jobs), output[-3000:]


def test_adding_a_subject_builds_only_that_subject(workdir: Path, tmp_path: Path) -> None:
    """A built subject depends on (seed, id) alone: growing the dataset by one subject
    plans that subject's scans and nothing already built."""
    tiny = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    split = tiny["synthetic"]["split"]
    tiny["synthetic"] = {**tiny["synthetic"], "subjects": 4,
                         "split": {**split, "train_subjects": [*split["train_subjects"], 4]}}
    changed = tmp_path / "more_subjects.yaml"
    changed.write_text(yaml.safe_dump(tiny))
    output = snakemake(workdir, "results/table1.csv", "-n", configs=[CONFIGS[0], str(changed)])
    jobs = planned_jobs(output)
    assert jobs.get("synthetic_scan") == len(split["train_expressions"]), output[-3000:]
    assert "results/synthetic/raw/4/models_reg/" in output


def test_tables_live_per_dataset_and_name_it(workdir: Path) -> None:
    for table in ("table1", "table2"):
        own = workdir / f"results/synthetic/{table}.csv"
        assert own.read_text() == (workdir / f"results/{table}.csv").read_text()
        assert "Dataset: synthetic." in (workdir / f"results/{table}.md").read_text()


def test_a_mesh_kind_method_is_fitted_evaluated_and_tabled_like_the_others(
    workdir: Path, tmp_path: Path
) -> None:
    tiny = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    tiny["methods"]["nearest_train"] = {"model": {"name": "nearest_train", "samples": 5000}}
    tiny["table1"] = ["nearest_train", *tiny["table1"]]
    changed = tmp_path / "with_nearest.yaml"
    changed.write_text(yaml.safe_dump(tiny))
    output = snakemake(workdir, "results/table1.csv", configs=[CONFIGS[0], str(changed)])
    assert "rule fit_mesh" in output and "rule train" not in output
    table = pd.read_csv(workdir / "results/table1.csv")
    assert list(table["method"]) == tiny["table1"]
    row = table.set_index("method").loc["nearest_train"]
    assert math.isfinite(row["chamfer_mm"]) and row["dim"] == 0
    mesh = trimesh.load(workdir / "results/synthetic/meshes/nearest_train/3/3_mouth_stretch.ply")
    train_sheets = [trimesh.load(p) for p in
                    (workdir / "results/synthetic/preprocessed").glob("[12]/*.ply")]
    assert any(len(s.vertices) == len(mesh.vertices)
               and np.array_equal(s.vertices, mesh.vertices) for s in train_sheets)


def test_an_archive_path_with_a_space_imports(tmp_path: Path, tu_archive: Path) -> None:
    folder = tmp_path / "my archives"
    folder.mkdir()
    archive = folder / tu_archive.name
    archive.write_bytes(tu_archive.read_bytes())
    split = {"train_subjects": [1], "test_subjects": [2], "train_expressions": [1],
             "test_expressions": [5]}
    configs = overlay(tmp_path, {"dataset": "facescape",
                                 "facescape": {"archives": [str(archive)], "split": split}})
    work = tmp_path / "work dir"
    snakemake(work, "results/facescape/raw/2/models_reg/5_jaw_left.obj", configs=configs)
    assert (work / "results/facescape/raw/2/models_reg/5_jaw_left.landmarks.txt").is_file()


@pytest.mark.parametrize("secret", ["s3cret-QZ7-XK9\r", "s3cret-QZ7\nXK9-tail"])
def test_a_token_with_control_characters_never_prints(tmp_path: Path, tu_archive: Path,
                                                      secret: str) -> None:
    """The workflow refuses the token before any request, and the secret (or a part of it)
    appears in no output, log or result."""
    with token_server(tu_archive.parent) as port:
        url = f"http://127.0.0.1:{port}/{tu_archive.name}"
        split = {"train_subjects": [1], "test_subjects": [2], "train_expressions": [1, 5],
                 "test_expressions": [5]}
        configs = overlay(tmp_path, {"dataset": "facescape", "facescape": {
            "urls": [url], "token_env": "FACESCAPE_TOKEN", "split": split}})
        work = tmp_path / "work"
        cmd = [str(SNAKEMAKE), "-s", str(REPO / "workflow/Snakefile"), "results/table1.csv",
               "-d", str(work), "--cores", "2", "--configfile", *configs]
        result = subprocess.run(cmd, cwd=REPO, env={**ENV, "FACESCAPE_TOKEN": secret},
                                capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "FACESCAPE_TOKEN" in result.stdout + result.stderr
    parts = [p for p in secret.replace("\r", "\n").split("\n") if p]
    for part in parts:
        assert part not in result.stdout + result.stderr
        for path in work.rglob("*"):
            if path.is_file():
                assert part.encode() not in path.read_bytes(), path


def test_a_method_that_reads_images_gets_each_scans_view(workdir: Path, tmp_path: Path) -> None:
    """The paper model with its image branch: the images stage runs for the training and
    test scans, and train, fit and mesh get each scan's crop, camera and transform."""
    tiny = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    tiny["methods"]["images"] = {
        "model": {"name": "paper", "id_dim": 8, "exp_dim": 8, "pe_frequencies": 2,
                  "landmark_hidden_dim": 16, "deform_hidden_dim": 8, "deform_layers": 1,
                  "hyper_hidden_dim": 8, "template_hidden_dim": 16, "template_layers": 2,
                  "hidden_dim": 8, "hidden_layers": 1, "experts": 8, "gate_hidden_dim": 8,
                  "multiscale_features": True, "trunk_stages": 2, "branch_channels": 4,
                  "image_channels": 8, "feature_resolution": 8, "fusion_dim": 4,
                  "freeze_backbone_epochs": 5},
        "loss": {"smooth": 1.0, "entropy": 0.1}, "train": {"epochs": 8}}
    changed = tmp_path / "images.yaml"
    changed.write_text(yaml.safe_dump(tiny))
    target = "results/synthetic/metrics/images/3/3_mouth_stretch.json"
    output = snakemake(workdir, target, "-p", configs=[CONFIGS[0], str(changed)])
    for rule in ("train", "fit", "mesh"):
        command = next(line for line in output.splitlines()
                       if f"-m facerecon.{rule} " in line)
        assert "--views results/synthetic/images/" in command, command
        assert "--transforms results/synthetic/preprocessed/" in command, command
    assert (workdir / "results/synthetic/images/1/1_neutral/crop.png").is_file()
    metrics = json.loads((workdir / target).read_text())
    assert math.isfinite(metrics["chamfer_mm"])
    log = pd.read_csv(workdir / "results/synthetic/models/images/train_log.csv")
    assert {"gate_supervision", "landmark", "eikonal_template"} <= set(log.columns)


@pytest.mark.parametrize("group, jobs_per_method", [("scan", 8), ("subject", 2), ("all", 1)])
def test_fit_jobs_follow_the_fit_group(tmp_path: Path, group: str,
                                       jobs_per_method: int) -> None:
    """The default config's 2 test subjects x 4 expressions: one fit job per scan, per
    subject or in all, for every implicit method of Table 1."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    implicit = [m for m in config["table1"] if method_config(config, m).kind == "implicit"]
    output = snakemake(tmp_path, "results/table1.csv", "-n", "--config", f"fit={{group: {group}}}",
                       configs=[CONFIGS[0]])
    assert planned_jobs(output)["fit"] == jobs_per_method * len(implicit)


def test_refitting_one_subject_refreshes_the_tables_and_nothing_upstream(workdir: Path) -> None:
    """README's command: force the subject's fits and meshes, ask for both tables."""
    data = workdir / "results/synthetic"
    tiny = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    methods = set(tiny["table1"] + tiny["table2"])  # other tests add methods to this folder
    forced = sorted(str(p.relative_to(workdir)) for p in [*data.glob("fits/*/3/*.pt"),
                                                         *data.glob("meshes/*/3/*.ply")]
                    if p.parent.parent.name in methods)
    output = snakemake(workdir, "results/table1.csv", "results/table2.csv", "-n",
                       "--forcerun", *forced)
    jobs = planned_jobs(output)
    assert jobs["fit"] == 3 and jobs["table"] == 2, output[-3000:]
    assert not {"train", "sample", "preprocess"} & set(jobs)
