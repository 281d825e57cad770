"""Collect per-scan metrics and build the paper's tables (CSV plus Markdown beside it).

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
from pathlib import Path

import pandas as pd

from facerecon.io import InputError, read_json, run_cli, write_text

SCAN_COLUMNS = ["method", "subject", "expression", "chamfer_mm", "fscore", "precision",
                "recall", "chamfer_p2s_mm"]
TABLE1_COLUMNS = ["method", "dim", "chamfer_mm", "fscore_1mm", "n_scans"]
TABLE2_COLUMNS = ["multiscale", "local_experts", "regularization", "chamfer_mm", "fscore_1mm",
                  "n_scans"]


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
    """Mean metrics per method, in the order of ``methods``, with its description columns."""
    rows = []
    for name, info in methods.items():
        own = scans[scans["method"] == name]
        if own.empty:
            raise InputError(f"no evaluated scans for method {name!r}")
        rows.append({"method": name, **info, "chamfer_mm": own["chamfer_mm"].mean(),
                     "fscore_1mm": own["fscore"].mean(),
                     "chamfer_p2s_mm": own["chamfer_p2s_mm"].mean(), "n_scans": len(own)})
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame, columns: list[str]) -> str:
    """A GitHub Markdown table; booleans as check marks, metrics to 3 and 2 decimals."""
    def cell(column: str, value: object) -> str:
        if isinstance(value, bool):
            return "✓" if value else ""
        if column.startswith("chamfer"):
            return f"{value:.3f}"
        if column.startswith("fscore"):
            return f"{value:.2f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(cell(c, row[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_table(table: pd.DataFrame, columns: list[str], out: Path, dataset: str) -> None:
    """Write the contract columns as CSV and, beside it, Markdown naming the dataset, with
    the exact Chamfer too."""
    write_text(out, table[columns].to_csv(index=False, float_format="%.6g"))
    md_columns = columns[:-1] + ["chamfer_p2s_mm", columns[-1]]
    note = ("\nchamfer_mm / fscore_1mm follow the protocol (150k samples, point-to-point, "
            "ICP); chamfer_p2s_mm is the exact point-to-surface Chamfer.\n")
    write_text(out.with_suffix(".md"),
               markdown(table, md_columns) + f"\nDataset: {dataset}.\n" + note)


def publish(table_csv: Path, out: Path) -> None:
    """Copy a dataset's table (CSV and its Markdown) to the user's target ``out``."""
    for source, target in ((table_csv, out), (table_csv.with_suffix(".md"),
                                              out.with_suffix(".md"))):
        if not source.is_file():
            raise InputError(f"{source}: table not found")
        write_text(target, source.read_text())


def main(argv: list[str] | None = None) -> None:
    """Command line: collect, table1, table2."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in [("collect", "metric JSON files -> per-scan CSV"),
                       ("table1", "metric JSON files -> table1.csv and table1.md"),
                       ("table2", "metric JSON files -> table2.csv and table2.md")]:
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
    columns = TABLE1_COLUMNS if args.command == "table1" else TABLE2_COLUMNS
    table = summarise(scans, json.loads(args.methods_json))
    write_table(table, columns, args.out, args.dataset)
    print(markdown(table, columns))


if __name__ == "__main__":
    run_cli(main)
