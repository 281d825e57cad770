"""Does each landmark region get its own expert? The gating network of a trained model
(paper sec. 2.2, eq. 6) read on the surface of its fitted test scans.

    python -m facerecon.gate_report --config JSON --model model.pt --fits A.pt B.pt ... \
        --samples A.npz B.npz ... [--views DIR ... --transforms JSON ...] \
        --out-json report.json --out-csv report.csv --out-png report.png \
        [--points 20000] [--seed 0] [--device auto] [--threads N]

``--config`` holds the method's name (the model file is refused if another method
trained it). ``--fits`` and ``--samples`` (and, for models that read images,
``--views`` and ``--transforms``) name the same scans in the same order.

Per scan, the gates alpha (N, K) are evaluated at a seeded subsample of its surface
points and compared with the points' landmark regions
(:func:`facerecon.models.regions.region_labels`):

* ``mean_max_gate``: mean over points of max_k alpha_k (1 = one expert per point,
  1/K = uniform; the issue's target is >= 0.7);
* ``entropy``: mean over points of -sum_k alpha_k ln alpha_k, in nats (0 .. ln K);
* ``confusion``: (regions x experts) counts of the points' dominant expert (argmax);
* per region, the expert that dominates most of its points and the share of its points
  it dominates ("each region is served mostly by its own expert").

The JSON pools all scans (points weighted equally) into the same numbers and the
region -> expert mapping, with ``own_expert_share`` (the share of all points dominated
by their region's main expert) and ``distinct_experts``, how many different experts the
regions map to (a share near 1 means little when one expert serves every region).
The CSV has one row per scan. The figure (PNG, and a PDF beside it) shows the first
two scans from the front, coloured by dominant expert and by landmark region, and the
pooled confusion matrix, row-normalised.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from facerecon.batches import (  # noqa: E402
    ScanSamples,
    add_device_arguments,
    add_view_arguments,
    conditioning,
    load_scans,
    setup_torch,
)
from facerecon.config import add_config_arguments, parse_config_arguments  # noqa: E402
from facerecon.figures import save_figure  # noqa: E402
from facerecon.io import InputError, run_cli, write_json, write_text  # noqa: E402
from facerecon.models import Model, Query  # noqa: E402
from facerecon.models.regions import REGION_NAMES, region_labels  # noqa: E402
from facerecon.trained import FittedCodes, TrainedModel  # noqa: E402

#: What the gate report reads.
GATE_REPORT_STAGE = ("method",)
#: The issue's target for the pooled mean of the largest gate weight.
TARGET_MEAN_MAX_GATE = 0.7
#: Points per network call.
CHUNK_POINTS = 65_536
#: Scans shown in the figure.
FIGURE_SCANS = 2


@dataclass
class ScanGates:
    """One scan's gate statistics at its subsampled surface points."""

    subject: str
    expression: str
    points: np.ndarray  # (N, 3) in units
    regions: np.ndarray  # (N,) landmark region label
    dominant: np.ndarray  # (N,) argmax expert
    mean_max_gate: float
    entropy: float  # nats
    confusion: np.ndarray  # (R, K) int counts: region x dominant expert


def gate_statistics(gates: torch.Tensor, regions: torch.Tensor, n_regions: int
                    ) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Mean largest weight, mean entropy (nats), dominant expert (N,) and the
    (n_regions, K) confusion counts of gates (N, K) at points of region labels (N,)."""
    mean_max = gates.max(dim=-1).values.mean().item()
    entropy = -torch.special.xlogy(gates, gates).sum(dim=-1).mean().item()
    dominant = gates.argmax(dim=-1)
    k = gates.shape[-1]
    confusion = torch.bincount(regions.long() * k + dominant, minlength=n_regions * k)
    return mean_max, entropy, dominant.numpy(), confusion.view(n_regions, k).numpy()


def region_experts(confusion: np.ndarray) -> list[dict[str, Any]]:
    """Per region (a row of the (R, K) counts): its points, the expert that dominates
    most of them and their share (expert and share None for a region without points)."""
    rows = []
    for counts in confusion:
        total = int(counts.sum())
        expert = int(counts.argmax()) if total else None
        rows.append({"points": total, "expert": expert,
                     "share": float(counts.max() / total) if total else None})
    return rows


def expert_regions(confusion: np.ndarray) -> list[str | None]:
    """Per expert (a column of the (R, K) counts): the region of most of the points it
    dominates, None for an expert that dominates no point."""
    return [REGION_NAMES[int(column.argmax())] if column.sum() else None
            for column in confusion.T]


@torch.no_grad()
def scan_gates(model: Model, trained: TrainedModel, fitted: FittedCodes, scan: ScanSamples,
               n_points: int, seed: int, device: torch.device) -> ScanGates:
    """Gate statistics of one fitted scan at ``n_points`` of its surface points (all when
    it has fewer), drawn without replacement by a numpy Generator seeded with ``seed``."""
    if (fitted.subject, fitted.expression) != (scan.subject, scan.expression):
        raise InputError(f"codes of {fitted.subject}/{fitted.expression} given for the samples "
                         f"of {scan.subject}/{scan.expression}: --fits and --samples must "
                         "name the same scans in the same order")
    if abs(scan.radius_mm - trained.radius_mm) > 1e-9:
        raise InputError(f"{scan.subject}/{scan.expression}: crop radius {scan.radius_mm} mm "
                         f"differs from the model's {trained.radius_mm} mm")
    n_surface = len(scan.surface_points)
    pick = np.sort(np.random.default_rng(seed).choice(n_surface, min(n_points, n_surface),
                                                      replace=False))
    points = scan.surface_points[torch.from_numpy(pick)]
    codes = {name: code[None].to(device) for name, code in fitted.codes.items()}
    cond = model.prepare(conditioning(codes, [scan], device))
    chunks = []
    for chunk in points.to(device).split(CHUNK_POINTS):
        out = model(Query(chunk[None], cond))
        if "gates" not in out:
            raise InputError(f"method {trained.method!r}: its model has no local experts "
                             "(no 'gates' in its output), so there is no gate to report")
        chunks.append(out["gates"][0].cpu())
    regions = region_labels(points[None], scan.landmarks[None])[0]
    mean_max, entropy, dominant, confusion = gate_statistics(torch.cat(chunks), regions,
                                                             len(REGION_NAMES))
    return ScanGates(scan.subject, scan.expression, points.numpy(), regions.numpy(), dominant,
                     mean_max, entropy, confusion)


def gate_report(model_path: Path, method: str | None, fit_paths: list[Path],
                scans: list[ScanSamples], n_points: int, seed: int, device: torch.device
                ) -> tuple[TrainedModel, list[ScanGates]]:
    """The trained model at ``model_path`` (refused if not trained by ``method``; None:
    any) and the gate statistics of each scan with its fitted codes (same order)."""
    if len(fit_paths) != len(scans):
        raise InputError(f"--fits ({len(fit_paths)}) and --samples ({len(scans)}) must give "
                         "one file per test scan each")
    trained = TrainedModel.load(model_path, method)
    model, _ = trained.build(device)
    results = [scan_gates(model, trained, FittedCodes.load(path, model_path), scan, n_points,
                          seed, device) for path, scan in zip(fit_paths, scans, strict=True)]
    return trained, results


def summarise(method: str, results: list[ScanGates]) -> dict[str, Any]:
    """The JSON summary: pooled statistics, the region -> expert mapping, per-scan rows."""
    confusion = sum(r.confusion for r in results)
    n = np.array([len(r.points) for r in results])
    by_region = region_experts(confusion)
    experts = {row["expert"] for row in by_region if row["expert"] is not None}
    mean_max = float(np.average([r.mean_max_gate for r in results], weights=n))
    return {
        "method": method,
        "experts": int(confusion.shape[1]),
        "regions": list(REGION_NAMES),
        "scans_count": len(results),
        "points": int(n.sum()),
        "mean_max_gate": mean_max,
        "target_mean_max_gate": TARGET_MEAN_MAX_GATE,
        "meets_target": mean_max >= TARGET_MEAN_MAX_GATE,
        "entropy": float(np.average([r.entropy for r in results], weights=n)),
        "entropy_uniform": math.log(confusion.shape[1]),
        "own_expert_share": float(confusion.max(axis=1).sum() / confusion.sum()),
        "distinct_experts": len(experts),
        "region_experts": dict(zip(REGION_NAMES, by_region, strict=True)),
        "expert_regions": expert_regions(confusion),
        "confusion": confusion.tolist(),
        "scans": [{"subject": r.subject, "expression": r.expression, "points": len(r.points),
                   "mean_max_gate": r.mean_max_gate, "entropy": r.entropy,
                   "region_experts": dict(zip(REGION_NAMES, region_experts(r.confusion),
                                              strict=True)),
                   "confusion": r.confusion.tolist()} for r in results],
    }


def scan_table(results: list[ScanGates]) -> pd.DataFrame:
    """One row per scan: the statistics and, per region, its points, main expert and share."""
    rows = []
    for r in results:
        row: dict[str, Any] = {"subject": r.subject, "expression": r.expression,
                               "points": len(r.points), "mean_max_gate": r.mean_max_gate,
                               "entropy": r.entropy}
        for name, region in zip(REGION_NAMES, region_experts(r.confusion), strict=True):
            row |= {f"{name}_points": region["points"],
                    f"{name}_expert": region["expert"] if region["expert"] is not None else "",
                    f"{name}_share": region["share"] if region["share"] is not None else np.nan}
        rows.append(row)
    return pd.DataFrame(rows)


def colours(n: int) -> ListedColormap:
    """A qualitative map of ``n`` distinct colours: index k is expert k and region k."""
    base = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return ListedColormap([base(i) for i in range(n)])


def front_view(ax: plt.Axes, r: ScanGates, values: np.ndarray, cmap: ListedColormap,
               radius_mm: float, title: str) -> None:
    """Orthographic front view (x-y, face towards +z) of the points coloured by the integer
    ``values`` (N,); drawn back to front, so the visible surface is on top."""
    order = np.argsort(r.points[:, 2])
    xy = r.points[order, :2] * radius_mm
    ax.scatter(xy[:, 0], xy[:, 1], c=cmap(values[order]), s=2, linewidths=0,
               rasterized=True)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("y (mm)")


def legend(ax: plt.Axes, cmap: ListedColormap, labels: list[str]) -> None:
    """A colour legend below ``ax`` (the bottom row), one entry per label: label k has
    colour k."""
    handles = [Line2D([], [], marker="o", linestyle="", color=cmap(k), label=label)
               for k, label in enumerate(labels)]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2,
              fontsize="small", frameon=False)


def plot_report(summary: dict[str, Any], results: list[ScanGates], radius_mm: float,
                out_png: Path) -> None:
    """The first :data:`FIGURE_SCANS` scans by dominant expert and by landmark region, and
    the pooled region x expert confusion matrix (row-normalised); PNG and a PDF beside it."""
    shown = results[:FIGURE_SCANS]
    k = summary["experts"]
    expert_cmap = colours(max(k, len(REGION_NAMES)))
    expert_labels = [f"expert {i}: {region or 'unused'}"
                     for i, region in enumerate(summary["expert_regions"])]
    fig = plt.figure(figsize=(14, 5.2 * len(shown)))
    grid = fig.add_gridspec(len(shown), 3, width_ratios=[1, 1, 1.15], wspace=0.35,
                            hspace=0.25)
    for row, r in enumerate(shown):
        scan = f"{r.subject}/{r.expression}"
        by_expert = fig.add_subplot(grid[row, 0])
        front_view(by_expert, r, r.dominant, expert_cmap, radius_mm,
                   f"{scan}: dominant expert (mean max gate {r.mean_max_gate:.2f})")
        by_region = fig.add_subplot(grid[row, 1])
        front_view(by_region, r, r.regions, expert_cmap, radius_mm, f"{scan}: landmark region")
    legend(by_expert, expert_cmap, expert_labels)
    legend(by_region, expert_cmap, list(REGION_NAMES))
    confusion = np.asarray(summary["confusion"], dtype=float)
    share = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1.0)
    ax = fig.add_subplot(grid[0, 2])
    image = ax.imshow(share, cmap="viridis", vmin=0.0, vmax=1.0)
    for (i, j), value in np.ndenumerate(share):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6,
                color="black" if value > 0.6 else "white")
    ax.set_xticks(range(k), [str(i) for i in range(k)])
    ax.set_yticks(range(len(REGION_NAMES)), REGION_NAMES)
    ax.set_xlabel("dominant expert")
    n = summary["scans_count"]
    ax.set_title(f"region x expert, {n} scan{'s' if n > 1 else ''} pooled\n(share of the "
                 "region's points)", fontsize="medium")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"{summary['method']}: mean max gate {summary['mean_max_gate']:.3f} "
                 f"(target >= {TARGET_MEAN_MAX_GATE}), entropy {summary['entropy']:.3f} of "
                 f"{summary['entropy_uniform']:.3f} nats, {summary['distinct_experts']} "
                 f"distinct region experts", fontsize="large")
    save_figure(fig, out_png, dpi=110)


def main(argv: list[str] | None = None) -> None:
    """Command line of :func:`gate_report`: JSON summary, per-scan CSV, figure."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, GATE_REPORT_STAGE)
    parser.add_argument("--model", type=Path, required=True, help="trained model (.pt)")
    parser.add_argument("--fits", type=Path, nargs="+", required=True,
                        help="fitted codes (.pt) of the test scans")
    parser.add_argument("--samples", type=Path, nargs="+", required=True,
                        help="sample files of the same scans, in the same order")
    parser.add_argument("--out-json", type=Path, required=True, help="summary (.json)")
    parser.add_argument("--out-csv", type=Path, required=True, help="one row per scan (.csv)")
    parser.add_argument("--out-png", type=Path, required=True,
                        help="figure (.png; the .pdf is written beside it)")
    parser.add_argument("--points", type=int, default=20_000,
                        help="surface points per scan (default: 20000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the point subsample")
    add_view_arguments(parser)
    add_device_arguments(parser)
    args = parser.parse_args(argv)
    if args.points < 1:
        raise InputError(f"--points: must be at least 1, got {args.points}")
    sections = parse_config_arguments(args, GATE_REPORT_STAGE)
    device = setup_torch(args.device, args.threads, args.seed)
    scans = load_scans(args.samples, args.views, args.transforms)
    trained, results = gate_report(args.model, sections["method"] or None, args.fits, scans,
                                   args.points, args.seed, device)
    summary = summarise(trained.method, results)
    write_json(args.out_json, summary)
    write_text(args.out_csv, scan_table(results).to_csv(index=False, float_format="%.6g"))
    plot_report(summary, results, trained.radius_mm, args.out_png)
    print(f"{trained.method}: mean max gate {summary['mean_max_gate']:.3f} over "
          f"{summary['points']} points of {len(results)} scans; regions -> experts "
          f"{[row['expert'] for row in summary['region_experts'].values()]}")


if __name__ == "__main__":
    run_cli(main)
