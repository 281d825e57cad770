"""Figures from the per-scan metrics.

    python -m facerecon.figures --scans scans.csv --out chamfer_by_expression.png

One panel per metric (protocol Chamfer, F-score@1mm), mean per expression and
method as grouped bars: shows which expressions (e.g. the test-only ones) each
method reconstructs worst.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from facerecon.io import InputError, atomic_path, run_cli  # noqa: E402
from facerecon.layout import expression_number  # noqa: E402


def plot_by_expression(scans: pd.DataFrame, out: Path) -> None:
    """Grouped bars of mean Chamfer and F-score per expression and method."""
    expressions = sorted(scans["expression"].unique(), key=expression_number)
    methods = list(dict.fromkeys(scans["method"]))
    means = scans.groupby(["method", "expression"])[["chamfer_mm", "fscore"]].mean()
    width = 0.8 / len(methods)
    x = np.arange(len(expressions))
    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 0.6 * len(expressions) + 2), 6.5),
                             sharex=True)
    for ax, column, label in zip(axes, ["chamfer_mm", "fscore"],
                                 ["Chamfer (mm), lower is better", "F-score@1mm, higher is better"],
                                 strict=True):
        for i, method in enumerate(methods):
            values = [means[column].get((method, e), np.nan) for e in expressions]
            ax.bar(x + (i - (len(methods) - 1) / 2) * width, values, width, label=method)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize="small")
    axes[1].set_xticks(x, expressions, rotation=45, ha="right")
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """Command line of :func:`plot_by_expression`."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scans", type=Path, required=True, help="per-scan metrics CSV")
    parser.add_argument("--out", type=Path, required=True, help="output PNG")
    args = parser.parse_args(argv)
    if not args.scans.is_file():
        raise InputError(f"{args.scans}: per-scan metrics not found")
    plot_by_expression(pd.read_csv(args.scans, dtype={"subject": str}), args.out)


if __name__ == "__main__":
    run_cli(main)
