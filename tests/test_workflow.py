"""The whole DAG on a tiny config: tables with finite numbers, reruns only what changed.

Runs Snakemake in a temporary working directory (``-d``) with config.yaml
overlaid by tests/configs/tiny.yaml, so it never touches the repository's
results/.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
#: As after `. .venv/bin/activate`: the rules' `python` is this interpreter.
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
CONFIGS = [str(REPO / "config.yaml"), str(REPO / "tests/configs/tiny.yaml")]

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str, configs: list[str] = CONFIGS) -> str:
    """Run snakemake from the repository on ``workdir``; return its output, fail loudly."""
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "workflow/Snakefile"), *args, "-d", str(workdir),
           "--cores", "2", "--configfile", *configs]
    result = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, check=False)
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
              "results/figures/chamfer_by_expression.png")
    return work


def test_tables_have_the_contract_columns_and_finite_numbers(workdir: Path) -> None:
    tiny = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    table1 = pd.read_csv(workdir / "results/table1.csv")
    assert list(table1.columns) == ["method", "dim", "chamfer_mm", "fscore_1mm", "n_scans"]
    assert list(table1["method"]) == tiny["table1"]
    table2 = pd.read_csv(workdir / "results/table2.csv")
    assert list(table2.columns) == ["multiscale", "local_experts", "regularization",
                                    "chamfer_mm", "fscore_1mm", "n_scans"]
    assert list(table2["local_experts"]) == [False, True, True]
    assert list(table2["regularization"]) == [False, False, True]
    for table in (table1, table2):
        assert all(math.isfinite(v) and v > 0 for v in table["chamfer_mm"])
        assert all(0 <= v <= 100 for v in table["fscore_1mm"])
        assert set(table["n_scans"]) == {1}
    assert (workdir / "results/table1.md").read_text().startswith("| method | dim |")
    assert (workdir / "results/figures/chamfer_by_expression.png").stat().st_size > 1000
    for rule in ("synthetic_scan", "preprocess", "sample", "train", "fit", "mesh", "evaluate"):
        assert any((workdir / "results/synthetic/logs" / rule).rglob("*.log")), rule
        assert any((workdir / "results/synthetic/benchmarks" / rule).rglob("*.tsv")), rule


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
