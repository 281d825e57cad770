"""Tables' Markdown and LaTeX: means, per-scan spread, published numbers, copies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facerecon import aggregate

FLAGS = {"multiscale": True, "local_experts": True, "regularization": True}
TABLE1 = {"ours": {"dim": 256, **FLAGS},
          "nearest_train": {"dim": 0, "multiscale": False, "local_experts": False,
                            "regularization": False}}
TABLE2 = {"ours": {"dim": 256, **FLAGS},
          "ablation_a": {"dim": 256, "multiscale": False, "local_experts": False,
                         "regularization": False}}
CHAMFER = {"ours": [0.5, 0.7, 0.9], "nearest_train": [1.0, 2.0, 4.0], "ablation_a": [0.8]}
FSCORE = {"ours": [90.0, 94.0, 98.0], "nearest_train": [40.0, 50.0, 75.0], "ablation_a": [88.0]}


def metric_files(root: Path, methods: list[str]) -> list[Path]:
    """Hand-made metric JSON files in the workflow's layout, one scan per value."""
    paths = []
    for method in methods:
        for i, (chamfer, fscore) in enumerate(zip(CHAMFER[method], FSCORE[method], strict=True)):
            path = root / "metrics" / method / f"{i + 1}" / "1_neutral.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps({"chamfer_mm": chamfer, "fscore": fscore,
                                        "precision": fscore, "recall": fscore,
                                        "chamfer_p2s_mm": chamfer / 2}))
            paths.append(path)
    return paths


def build(tmp_path: Path, kind: str, methods: dict) -> Path:
    """Run the command line for ``kind`` and return the CSV path."""
    out = tmp_path / "results" / "my_data" / f"{kind}.csv"
    aggregate.main([kind, "--metrics", *map(str, metric_files(tmp_path, list(methods))),
                    "--methods-json", json.dumps(methods), "--dataset", "my_data",
                    "--out", str(out)])
    return out


def rows(markdown: str) -> dict[str, list[str]]:
    """Markdown table rows by their first cell (header included)."""
    cells = [[c.strip() for c in line.strip("|").split("|")]
             for line in markdown.splitlines() if line.startswith("| ")]
    return {row[0]: row for row in cells}


def test_table1_markdown_has_means_spreads_and_published_numbers(tmp_path: Path) -> None:
    out = build(tmp_path, "table1", TABLE1)
    assert list(pd.read_csv(out).columns) == aggregate.TABLE1_COLUMNS
    text = out.with_suffix(".md").read_text()
    assert text.startswith("| method | dim |")
    table = rows(text)
    assert table["method"] == ["method", "dim", "chamfer_mm", "fscore_1mm", "chamfer_p2s_mm",
                               "n_scans", "paper_chamfer_mm", "paper_fscore_1mm"]
    spread = np.std(CHAMFER["nearest_train"], ddof=1)
    assert table["ours"] == ["ours", "256", "0.700 ± 0.200", "94.00 ± 4.00", "0.350", "3",
                             "0.553", "93.74"]
    assert table["nearest_train"] == ["nearest_train", "0", f"2.333 ± {spread:.3f}",
                                      "55.00 ± 18.03", "1.167", "3", "", ""]
    assert "Dataset: my_data." in text
    assert "the skirt is excluded from scoring" in text
    assert "point-to-surface" in text and "ddof=1" in text
    assert "FaceScape" in text and "not the configured dataset's (my_data)" in text


def test_table2_keys_published_numbers_by_switches_and_single_scan_has_no_spread(
        tmp_path: Path) -> None:
    out = build(tmp_path, "table2", TABLE2)
    assert list(pd.read_csv(out).columns) == aggregate.TABLE2_COLUMNS
    lines = list(rows(out.with_suffix(".md").read_text()).values())
    assert lines[1] == ["✓", "✓", "✓", "0.700 ± 0.200", "94.00 ± 4.00", "0.350", "3",
                        "0.553", "93.74"]
    assert lines[2] == ["", "", "", "0.800", "88.00", "0.400", "1", "", ""]


@pytest.mark.parametrize("kind, methods", [("table1", TABLE1), ("table2", TABLE2)])
def test_latex_is_one_balanced_booktabs_tabular(tmp_path: Path, kind: str,
                                               methods: dict) -> None:
    tex = build(tmp_path, kind, methods).with_suffix(".tex").read_text()
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    assert body.count("{") == body.count("}")
    assert body.count(r"\begin{tabular}") == body.count(r"\end{tabular}") == 1
    assert body.startswith(r"\begin{tabular}{lllllllll}" if kind == "table2"
                           else r"\begin{tabular}{llllllll}")
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert body.count(rule) == 1
    assert body.index(r"\toprule") < body.index(r"\midrule") < body.index(r"\bottomrule")
    assert "_" not in body.replace(r"\_", "")
    assert r"0.700 $\pm$ 0.200 & 94.00 $\pm$ 4.00 & 0.350 & 3 & 0.553 & 93.74 \\" in body
    if kind == "table1":
        assert r"nearest\_train & 0 &" in body
        assert r"1.167 & 3 &  &  \\" in body
    else:
        assert r"\checkmark & \checkmark & \checkmark &" in body
    assert "% Dataset: my_data." in tex


def test_publish_copies_csv_markdown_and_latex(tmp_path: Path) -> None:
    table = build(tmp_path, "table1", TABLE1)
    out = tmp_path / "results" / "table1.csv"
    aggregate.main(["publish", "--table", str(table), "--out", str(out)])
    for suffix in (".csv", ".md", ".tex"):
        assert out.with_suffix(suffix).read_text() == table.with_suffix(suffix).read_text()
