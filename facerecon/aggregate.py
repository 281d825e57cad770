"""Collect per-scan metrics and build the paper's tables (CSV, with Markdown and LaTeX beside it).

    python -m facerecon.aggregate collect --metrics M.json ... --out scans.csv
    python -m facerecon.aggregate table1 --metrics M.json ... --methods-json JSON \
        --dataset NAME --out results/NAME/table1.csv
    python -m facerecon.aggregate table2 ... (the same for the ablation)
    python -m facerecon.aggregate publish --table results/NAME/table1.csv --out results/table1.csv

Metric files live at ``.../metrics/<method>/<subject>/<expression>.json`` (the
workflow's layout): the path names the method, subject and expression.
``--methods-json`` maps each table row's method name to ``{"dim": int,
"multiscale": bool, "local_experts": bool, "regularization": bool}`` in row order.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from facerecon.io import InputError, read_json, run_cli, write_text

SCAN_COLUMNS = ["method", "subject", "expression", "chamfer_mm", "fscore", "precision",
                "recall", "chamfer_p2s_mm"]
TABLE1_COLUMNS = ["method", "dim", "chamfer_mm", "fscore_1mm", "n_scans"]
TABLE2_COLUMNS = ["multiscale", "local_experts", "regularization", "chamfer_mm", "fscore_1mm",
                  "n_scans"]

# Published (Chamfer mm, F-score@1mm) on FaceScape, from the paper's Table 1 (by our
# method names; latent dims i3DMM 256, FaceScape bilinear 352, ImFace 256, Ours 256) and
# Table 2, the ablation (by the multiscale, local_experts, regularization switches).
PUBLISHED_TABLE1 = {"i3dmm": (1.635, 42.26), "facescape_bilinear": (0.929, 67.09),
                    "imface": (0.625, 91.11), "ours": (0.553, 93.74)}
PUBLISHED_TABLE2 = {(True, False, False): (0.602, 91.82), (False, True, False): (0.619, 91.59),
                    (True, True, False): (0.569, 92.53), (False, True, True): (0.575, 92.96),
                    (True, True, True): (0.553, 93.74)}
LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                 "^": r"\textasciicircum{}"}


def collect(metric_paths: list[Path]) -> pd.DataFrame:
    """One row per scan and method, from metric JSON files; errors name the file."""
    rows = []
    for path in metric_paths:
        metrics = read_json(path)
        row = {"method": path.parent.parent.name, "subject": path.parent.name,
               "expression": path.stem}
        for key in SCAN_COLUMNS[3:]:
            value = metrics.get(key)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"{path}: metric {key!r} missing or not finite ({value!r})")
            row[key] = float(value)
        rows.append(row)
    if not rows:
        raise InputError("no metric files given")
    return pd.DataFrame(rows, columns=SCAN_COLUMNS).sort_values(SCAN_COLUMNS[:3])


def summarise(scans: pd.DataFrame, methods: dict[str, dict]) -> pd.DataFrame:
    """Mean metrics per method, in the order of ``methods``, with its description columns
    and the per-scan spread (sample standard deviation, ddof=1; NaN for a single scan)."""
    rows = []
    for name, info in methods.items():
        own = scans[scans["method"] == name]
        if own.empty:
            raise InputError(f"no evaluated scans for method {name!r}")
        rows.append({"method": name, **info, "chamfer_mm": own["chamfer_mm"].mean(),
                     "fscore_1mm": own["fscore"].mean(),
                     "chamfer_p2s_mm": own["chamfer_p2s_mm"].mean(), "n_scans": len(own),
                     "chamfer_std": own["chamfer_mm"].std(ddof=1),
                     "fscore_std": own["fscore"].std(ddof=1)})
    return pd.DataFrame(rows)


def published(kind: str, row: pd.Series) -> tuple[float, float] | None:
    """The paper's (Chamfer mm, F-score) for a row of table ``kind``, or None if it has none."""
    if kind == "table1":
        return PUBLISHED_TABLE1.get(row["method"])
    return PUBLISHED_TABLE2.get(tuple(bool(row[c]) for c in TABLE2_COLUMNS[:3]))


def display(table: pd.DataFrame, kind: str, checkmark: str, pm: str,
            escape: Callable[[str], str]) -> tuple[list[str], list[list[str]]]:
    """Header and text cells of a table's human-readable form: the CSV's description
    columns, mean ± per-scan spread, the exact Chamfer, n_scans, the published numbers;
    ``escape`` applies to the header and the text taken from the table."""
    columns = TABLE1_COLUMNS if kind == "table1" else TABLE2_COLUMNS
    header = columns[:-1] + ["chamfer_p2s_mm", "n_scans", "paper_chamfer_mm", "paper_fscore_1mm"]

    def spread(mean: float, std: float, digits: int) -> str:
        return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f}{pm}{std:.{digits}f}"

    rows = []
    for _, row in table.iterrows():
        cells = [(checkmark if row[c] else "") if isinstance(row[c], (bool, np.bool_))
                 else escape(str(row[c])) for c in columns[:-3]]
        paper = published(kind, row)
        cells += [spread(row["chamfer_mm"], row["chamfer_std"], 3),
                  spread(row["fscore_1mm"], row["fscore_std"], 2),
                  f"{row['chamfer_p2s_mm']:.3f}", str(row["n_scans"]),
                  f"{paper[0]:.3f}" if paper else "", f"{paper[1]:.2f}" if paper else ""]
        rows.append(cells)
    return [escape(h) for h in header], rows


def markdown(table: pd.DataFrame, kind: str) -> str:
    """A GitHub Markdown table; booleans as check marks, metrics as mean ± spread."""
    header, rows = display(table, kind, "✓", " ± ", str)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped."""
    return "".join(LATEX_SPECIAL.get(char, char) for char in text)


def latex(table: pd.DataFrame, kind: str, notes: list[str]) -> str:
    """A booktabs ``tabular`` to ``\\input`` (needs booktabs and amssymb), notes as comments."""
    header, rows = display(table, kind, r"\checkmark", r" $\pm$ ", latex_escape)
    lines = [" & ".join(cells) + r" \\" for cells in [header, *rows]]
    return "\n".join([*(f"% {n}" for n in notes), r"\begin{tabular}{" + "l" * len(header) + "}",
                      r"\toprule", lines[0], r"\midrule", *lines[1:], r"\bottomrule",
                      r"\end{tabular}"]) + "\n"


def write_table(table: pd.DataFrame, kind: str, out: Path, dataset: str) -> None:
    """Write the contract columns as CSV and, beside it, Markdown and LaTeX naming the
    dataset, with the spread over scans, the exact Chamfer and the published numbers."""
    columns = TABLE1_COLUMNS if kind == "table1" else TABLE2_COLUMNS
    write_text(out, table[columns].to_csv(index=False, float_format="%.6g"))
    notes = [f"Dataset: {dataset}.",
             "Ground truth: each test scan's pseudo-watertight sheet without its skirt (the wall "
             "joining the face's silhouette to the crop sphere); the skirt is excluded from "
             "scoring, as ImFace scores the visible face only.",
             "chamfer_mm / fscore_1mm follow the protocol (150k samples, point-to-point, "
             "ICP); chamfer_p2s_mm is the exact point-to-surface Chamfer.",
             "± is the standard deviation over the scans (sample, ddof=1; none for one scan).",
             "paper_* are the published numbers (the paper's table, on FaceScape), not the "
             f"configured dataset's ({dataset}); empty where the paper has none."]
    write_text(out.with_suffix(".md"), markdown(table, kind) + "".join(f"\n{n}\n" for n in notes))
    write_text(out.with_suffix(".tex"), latex(table, kind, notes))


def publish(table_csv: Path, out: Path) -> None:
    """Copy a dataset's table (CSV, its Markdown and LaTeX) to the user's target ``out``."""
    for suffix in (".csv", ".md", ".tex"):
        source = table_csv.with_suffix(suffix)
        if not source.is_file():
            raise InputError(f"{source}: table not found")
        write_text(out.with_suffix(suffix), source.read_text())


def main(argv: list[str] | None = None) -> None:
    """Command line: collect, table1, table2."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in [("collect", "metric JSON files -> per-scan CSV"),
                       ("table1", "metric JSON files -> table1.csv, .md and .tex"),
                       ("table2", "metric JSON files -> table2.csv, .md and .tex")]:
        p = sub.add_parser(name, help=text)
        p.add_argument("--metrics", type=Path, nargs="+", required=True)
        p.add_argument("--out", type=Path, required=True)
        if name != "collect":
            p.add_argument("--methods-json", required=True, help="row name -> description")
            p.add_argument("--dataset", required=True, help="dataset name, for the Markdown")
    p = sub.add_parser("publish", help="a dataset's table -> the user's results/<table>.csv")
    p.add_argument("--table", type=Path, required=True, help="results/<dataset>/<table>.csv")
    p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "publish":
        publish(args.table, args.out)
        return
    scans = collect(args.metrics)
    if args.command == "collect":
        write_text(args.out, scans.to_csv(index=False, float_format="%.6g"))
        return
    table = summarise(scans, json.loads(args.methods_json))
    write_table(table, args.command, args.out, args.dataset)
    print(markdown(table, args.command))


if __name__ == "__main__":
    run_cli(main)
