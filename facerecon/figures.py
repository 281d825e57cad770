"""The paper's figures from the workflow's meshes and metrics (PNG, and a PDF beside it).

    python -m facerecon.figures comparison --data results/synthetic --methods A B ... \
        --scans 7/3_mouth_stretch ... --out comparison.png [--config JSON]
    python -m facerecon.figures errors ...        (same options)
    python -m facerecon.figures ablation ... --methods-json JSON
    python -m facerecon.figures distribution --scans-csv scans.csv \
        --panel "Table 1" A B ... [--panel "Table 2" C D ...] --out chamfer_distribution.png
    python -m facerecon.figures by-expression --scans-csv scans.csv --out by_expression.png

* ``comparison`` (the paper's Figure 3): rows the methods under a ground-truth row,
  columns test scans with non-neutral expressions (:func:`shown_scans`), every mesh
  ray-cast (:mod:`facerecon.images.render`) with one camera and the same lights.
* ``errors``: the same layout, each reconstruction vertex coloured by its exact distance
  to the ground-truth surface in mm, after the rigid ICP the evaluation applied (the
  ``icp_transform`` of the scan's metrics JSON), one colour scale and bar for all panels.
* ``ablation`` (Figure 4): Table 2's rows on a few scans, shape beside error map, each
  row labelled with its components and its mean Chamfer over all given scans.
* ``distribution``: per-scan protocol Chamfer per method, box plots with the scans as
  points, one panel per table.
* ``by-expression``: mean Chamfer and F-score per expression and method, grouped bars.

Files read under ``--data`` (the workflow's ``results/<dataset>``):
``meshes/<method>/<subject>/<expression>.ply``, ``metrics/<method>/<subject>/<expression>.json``
and the ground truth ``preprocessed/<subject>/<expression>.face.ply`` (the sheet without
its skirt; the whole sheet ``<expression>.ply`` marks what the evaluation leaves out) with
its ``.landmarks.txt`` (which frame the camera).

    python -m facerecon.figures dataset --raw results/synthetic/raw --subjects 7 \
        --expressions 1 2 3 5 --out dataset.png

* ``dataset``: the raw scans (``<raw>/<subject>/models_reg/<k>_<name>.obj``), subjects as
  rows and expressions as columns, rendered alike: what a benchmark's faces look like
  (the README's pictures).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import trimesh  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402

from facerecon.config import (  # noqa: E402
    FiguresConfig,
    add_config_arguments,
    parse_config_arguments,
)
from facerecon.evaluate import on_face, point_to_surface_distances  # noqa: E402
from facerecon.geometry.align import apply_transform  # noqa: E402
from facerecon.images.camera import PinholeCamera  # noqa: E402
from facerecon.images.render import BACKGROUND, portrait_camera, render  # noqa: E402
from facerecon.io import (  # noqa: E402
    InputError,
    atomic_path,
    load_landmarks,
    load_mesh,
    read_json,
    run_cli,
)
from facerecon.layout import expression_number, scan_name, scan_path  # noqa: E402

#: The stage's config section.
FIGURES_STAGE = ("figures",)
#: Colour map of the error maps: hue carries the distance, so the renderer's shading
#: (which only darkens) does not change which colour bar entry a surface reads as.
ERROR_CMAP = "turbo"
#: Colour of reconstruction vertices the evaluation does not score (they stand for the skirt).
UNSCORED_RGBA = (170, 170, 170, 255)
#: Rays per pixel per axis (anti-aliasing).
SUPERSAMPLE = 2
#: Pixels of background kept around the union of all panels' faces.
MARGIN_PX = 4
PANEL_INCHES = 1.6
DPI = 150

Scan = tuple[str, str]  # (subject, expression)


def parse_scan(text: str) -> Scan:
    """``'7/3_mouth_stretch'`` -> ``('7', '3_mouth_stretch')``; InputError naming it otherwise."""
    subject, _, expression = text.partition("/")
    try:
        expression_number(expression)
    except ValueError as exc:
        raise InputError(f"--scans: {text!r} is not SUBJECT/EXPRESSION ({exc})") from None
    if not subject:
        raise InputError(f"--scans: {text!r} has no subject")
    return subject, expression


def shown_scans(scans: Sequence[Scan], count: int) -> list[Scan]:
    """At most ``count`` of ``scans`` with non-neutral expressions (all scans when none is),
    spread evenly over them sorted by expression then subject (so the columns show
    different expressions), in that order; the same scans for the same input."""
    expressive = [s for s in scans if expression_number(s[1]) != 1]
    ordered = sorted(expressive or scans, key=lambda s: (expression_number(s[1]), s[0]))
    if len(ordered) <= count:
        return ordered
    picks = np.unique(np.round(np.linspace(0, len(ordered) - 1, count)).astype(int))
    return [ordered[i] for i in picks]


@dataclass(frozen=True)
class Layout:
    """Where the workflow keeps one dataset's meshes, ground truth and metrics."""

    data: Path

    def mesh(self, method: str, scan: Scan) -> Path:
        return self.data / "meshes" / method / scan[0] / f"{scan[1]}.ply"

    def ground_truth(self, scan: Scan) -> Path:
        """The evaluation's ground truth: the sheet without its skirt."""
        return self.data / "preprocessed" / scan[0] / f"{scan[1]}.face.ply"

    def sheet(self, scan: Scan) -> Path:
        """The whole pseudo-watertight sheet, skirt included."""
        return self.data / "preprocessed" / scan[0] / f"{scan[1]}.ply"

    def landmarks(self, scan: Scan) -> Path:
        return self.data / "preprocessed" / scan[0] / f"{scan[1]}.landmarks.txt"

    def metrics(self, method: str, scan: Scan) -> dict[str, Any]:
        """The scan's metrics JSON, checked for the numbers the figures read."""
        path = self.data / "metrics" / method / scan[0] / f"{scan[1]}.json"
        metrics = read_json(path)
        try:
            transform = np.asarray(metrics["icp_transform"], dtype=np.float64)
            chamfer_mm = float(metrics["chamfer_mm"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: no usable 'icp_transform' and 'chamfer_mm' ({exc!r})"
                             ) from None
        if transform.shape != (4, 4) or not np.isfinite([*transform.ravel(), chamfer_mm]).all():
            raise InputError(f"{path}: 'icp_transform' is not a finite 4x4 matrix or "
                             "'chamfer_mm' is not finite")
        return metrics


def vertex_errors_mm(gt: trimesh.Trimesh, sheet: trimesh.Trimesh | None,
                     preds: Sequence[tuple[trimesh.Trimesh, np.ndarray]],
                     ) -> list[tuple[trimesh.Trimesh, np.ndarray]]:
    """Per (reconstruction, its evaluation's rigid ICP transform) of ``preds``: the
    reconstruction moved by that transform into the ground truth's frame and the exact
    distance (mm) from each of its vertices to the ``gt`` surface, NaN where the
    evaluation does not score it (nearer the skirt of ``sheet`` than the face; no
    ``sheet``: scored everywhere). One distance query for all."""
    moved = [apply_transform(np.asarray(t), np.asarray(p.vertices)) for p, t in preds]
    points = np.concatenate(moved)
    distances = point_to_surface_distances(points, gt)
    if sheet is not None:
        distances[~on_face(points, gt, sheet)] = np.nan
    ends = np.cumsum([len(v) for v in moved])
    return [(trimesh.Trimesh(v, np.asarray(p.faces), process=False), e)
            for v, (p, _), e in zip(moved, preds, np.split(distances, ends[:-1]), strict=True)]


def error_colours(errors_mm: np.ndarray, error_max_mm: float) -> np.ndarray:
    """(V, 4) uint8 RGBA of :data:`ERROR_CMAP` over 0 .. ``error_max_mm``, clipped; NaN
    (not scored: the skirt's part) in :data:`UNSCORED_RGBA`."""
    norm = Normalize(0.0, error_max_mm, clip=True)
    colours = (plt.get_cmap(ERROR_CMAP)(norm(errors_mm)) * 255).round().astype(np.uint8)
    colours[np.isnan(errors_mm)] = UNSCORED_RGBA
    return colours


def figure_camera(layout: Layout, scans: Sequence[Scan], size_px: int) -> PinholeCamera:
    """One frontal camera for every panel, framing the landmarks of all ``scans``' ground
    truths (the crop frame puts every face in the same place)."""
    landmarks = np.concatenate([load_landmarks(layout.landmarks(s)) for s in scans])
    return portrait_camera(landmarks, size_px)


def shape_image(mesh: trimesh.Trimesh, camera: PinholeCamera) -> np.ndarray:
    """The mesh in plain skin under the renderer's lights (no ambient occlusion: it took
    two thirds of the figures' time and the lights alone show the shapes)."""
    plain = trimesh.Trimesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), process=False)
    return render(plain, camera, SUPERSAMPLE, occlusion=False)


def error_image(mesh: trimesh.Trimesh, errors_mm: np.ndarray, camera: PinholeCamera,
                error_max_mm: float) -> np.ndarray:
    """The mesh with vertex colours from :func:`error_colours`, lit as :func:`shape_image`."""
    coloured = trimesh.Trimesh(np.asarray(mesh.vertices), np.asarray(mesh.faces),
                               vertex_colors=error_colours(errors_mm, error_max_mm),
                               process=False)
    return render(coloured, camera, SUPERSAMPLE, occlusion=False)


def crop_to_faces(images: dict[Any, np.ndarray]) -> dict[Any, np.ndarray]:
    """The images cut to one box: the union of their non-background pixels plus a margin
    (same box for all, so the common camera stays common)."""
    foreground = np.zeros(next(iter(images.values())).shape[:2], dtype=bool)
    for image in images.values():
        foreground |= np.abs(image - BACKGROUND).max(axis=2) > 1e-6
    if not foreground.any():
        return images
    rows, cols = np.flatnonzero(foreground.any(axis=1)), np.flatnonzero(foreground.any(axis=0))
    top, bottom = max(rows[0] - MARGIN_PX, 0), rows[-1] + MARGIN_PX + 1
    left, right = max(cols[0] - MARGIN_PX, 0), cols[-1] + MARGIN_PX + 1
    return {key: image[top:bottom, left:right] for key, image in images.items()}


def save_figure(fig: plt.Figure, out_png: Path, dpi: int = DPI) -> None:
    """Write ``out_png`` and the PDF beside it, each atomically, and close the figure
    (every figure of the workflow, the gate reports' included, is saved by this)."""
    for path in (out_png, out_png.with_suffix(".pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def scan_title(scan: Scan) -> str:
    """Column title: subject and expression name."""
    return f"subject {scan[0]}\n{scan[1].split('_', 1)[1].replace('_', ' ')}"


def panel_grid(images: dict[tuple[int, int], np.ndarray], n_rows: int, n_cols: int,
               row_labels: Sequence[str], col_titles: Sequence[str],
               notes: dict[tuple[int, int], str] | None = None,
               ) -> tuple[plt.Figure, np.ndarray]:
    """A figure of ``n_rows`` x ``n_cols`` image panels (missing ones blank), row labels
    on the left, column titles on top, an optional note under each panel."""
    images = crop_to_faces(images)
    height, width = next(iter(images.values())).shape[:2]
    fig, axes = plt.subplots(n_rows, n_cols, squeeze=False, figsize=(
        PANEL_INCHES * n_cols + 1.2, PANEL_INCHES * height / width * n_rows + 0.6))
    for (row, col), ax in np.ndenumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if (row, col) in images:
            ax.imshow(images[row, col], interpolation="lanczos")
        if notes and (row, col) in notes:
            ax.set_xlabel(notes[row, col], fontsize="x-small", labelpad=1)
        if col == 0:
            ax.set_ylabel(row_labels[row], fontsize="small", rotation=0, ha="right",
                          va="center", labelpad=4)
        if row == 0:
            ax.set_title(col_titles[col], fontsize="small")
    fig.subplots_adjust(wspace=0.03, hspace=0.12)
    return fig, axes


def add_error_bar(fig: plt.Figure, axes: np.ndarray, error_max_mm: float) -> None:
    """One colour bar for every error panel, 0 .. ``error_max_mm`` mm, clipped above."""
    mappable = plt.cm.ScalarMappable(Normalize(0.0, error_max_mm), plt.get_cmap(ERROR_CMAP))
    bar = fig.colorbar(mappable, ax=axes.ravel().tolist(), fraction=0.025, pad=0.02,
                       extend="max")
    bar.set_label("distance to the ground truth (mm)", fontsize="small")


def plot_comparison(layout: Layout, methods: Sequence[str], scans: Sequence[Scan],
                    cfg: FiguresConfig, out: Path) -> None:
    """Figure 3: the ground truth and each method's reconstruction (rows) of the shown
    scans (columns), one camera and lighting for all. The reconstructions are drawn as
    meshed, in the crop frame (no alignment), as the paper shows them."""
    columns = shown_scans(scans, cfg.columns)
    camera = figure_camera(layout, columns, cfg.size_px)
    images = {}
    for col, scan in enumerate(columns):
        images[0, col] = shape_image(load_mesh(layout.ground_truth(scan)), camera)
        for row, method in enumerate(methods, start=1):
            images[row, col] = shape_image(load_mesh(layout.mesh(method, scan)), camera)
    fig, _ = panel_grid(images, len(methods) + 1, len(columns), ["ground truth", *methods],
                        [scan_title(s) for s in columns])
    save_figure(fig, out)


def plot_error_maps(layout: Layout, methods: Sequence[str], scans: Sequence[Scan],
                    cfg: FiguresConfig, out: Path) -> None:
    """Each method's reconstruction (rows) of the shown scans (columns), aligned as the
    evaluation aligned it and coloured by distance to the ground truth (mm); the scan's
    protocol Chamfer under each panel, one colour bar."""
    columns = shown_scans(scans, cfg.columns)
    camera = figure_camera(layout, columns, cfg.size_px)
    images, notes = {}, {}
    for col, scan in enumerate(columns):
        metrics = [layout.metrics(m, scan) for m in methods]
        errors = vertex_errors_mm(load_mesh(layout.ground_truth(scan)),
                                  load_mesh(layout.sheet(scan)), [
            (load_mesh(layout.mesh(m, scan)), x["icp_transform"])
            for m, x in zip(methods, metrics, strict=True)])
        for row, ((aligned, errors_mm), x) in enumerate(zip(errors, metrics, strict=True)):
            images[row, col] = error_image(aligned, errors_mm, camera, cfg.error_max_mm)
            notes[row, col] = f"Chamfer {x['chamfer_mm']:.3f} mm"
    fig, axes = panel_grid(images, len(methods), len(columns), methods,
                           [scan_title(s) for s in columns], notes)
    add_error_bar(fig, axes, cfg.error_max_mm)
    save_figure(fig, out)


#: Table 2's component switches, as row labels say them.
COMPONENT_NAMES = {"multiscale": "multi-scale", "local_experts": "experts",
                   "regularization": "reg."}


def plot_ablation(layout: Layout, methods: dict[str, dict[str, Any]], scans: Sequence[Scan],
                  cfg: FiguresConfig, out: Path) -> None:
    """Figure 4: Table 2's rows (``methods``: name -> its flags, as the table rule gets
    them) on the shown scans, shape beside error map, under a ground-truth row; each row
    labelled with its components and its mean protocol Chamfer over all ``scans``."""
    columns = shown_scans(scans, cfg.ablation_columns)
    camera = figure_camera(layout, columns, cfg.size_px)
    images, notes = {}, {}
    labels = ["ground truth"]
    for method, flags in methods.items():
        chamfer = np.mean([layout.metrics(method, s)["chamfer_mm"] for s in scans])
        parts = [name for key, name in COMPONENT_NAMES.items() if flags.get(key)]
        labels.append(f"{method}\n{' + '.join(parts) or 'no component'}\n"
                      f"Chamfer {chamfer:.3f} mm ({len(scans)} scan{'s' * (len(scans) > 1)})")
    for col, scan in enumerate(columns):
        gt = load_mesh(layout.ground_truth(scan))
        images[0, 2 * col] = shape_image(gt, camera)
        metrics = [layout.metrics(m, scan) for m in methods]
        errors = vertex_errors_mm(gt, load_mesh(layout.sheet(scan)),
                                  [(load_mesh(layout.mesh(m, scan)), x["icp_transform"])
                                   for m, x in zip(methods, metrics, strict=True)])
        for row, ((aligned, errors_mm), x) in enumerate(zip(errors, metrics, strict=True),
                                                        start=1):
            images[row, 2 * col] = shape_image(aligned, camera)
            images[row, 2 * col + 1] = error_image(aligned, errors_mm, camera,
                                                   cfg.error_max_mm)
            notes[row, 2 * col + 1] = f"{x['chamfer_mm']:.3f} mm"
    titles = [title for s in columns for title in (scan_title(s), "error")]
    fig, axes = panel_grid(images, len(methods) + 1, 2 * len(columns), labels, titles, notes)
    add_error_bar(fig, axes, cfg.error_max_mm)
    save_figure(fig, out)


def plot_chamfer_distribution(scans: pd.DataFrame, panels: dict[str, list[str]],
                              out: Path) -> None:
    """Per-scan protocol Chamfer per method: a box per method (median, quartiles, whiskers
    to 1.5 IQR) with every scan as a point coloured by its expression (jittered sideways),
    one panel per entry of ``panels`` (title -> methods), one y scale."""
    missing = sorted({m for ms in panels.values() for m in ms} - set(scans["method"]))
    if missing:
        raise InputError(f"per-scan metrics have no rows for method(s) {missing}")
    expressions = sorted(scans["expression"].unique(), key=expression_number)
    colours = dict(zip(expressions, plt.get_cmap("tab10").colors, strict=False))
    widths = [len(ms) for ms in panels.values()]
    fig, axes = plt.subplots(1, len(panels), sharey=True, squeeze=False, width_ratios=widths,
                             figsize=(1.0 * sum(widths) + 2.5, 3.8))
    rng = np.random.default_rng(0)
    for ax, (title, methods) in zip(axes[0], panels.items(), strict=True):
        rows = [scans[scans["method"] == m] for m in methods]
        ax.boxplot([r["chamfer_mm"] for r in rows], widths=0.6, showfliers=False,
                   medianprops={"color": "black"})
        for i, r in enumerate(rows, start=1):
            ax.scatter(i + rng.uniform(-0.18, 0.18, len(r)), r["chamfer_mm"], s=14, zorder=3,
                       c=[colours.get(e, "grey") for e in r["expression"]], alpha=0.8)
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=30, ha="right")
        ax.set_title(title, fontsize="medium")
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_ylabel("Chamfer per scan (mm), lower is better")
    handles = [plt.Line2D([], [], ls="", marker="o", color=colours.get(e, "grey"), label=e)
               for e in expressions]
    axes[0, -1].legend(handles=handles, title="expression", fontsize="small",
                       loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    save_figure(fig, out)


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
    save_figure(fig, out)


# --------------------------------------------------------------------------- command line


def plot_dataset(raw: Path, subjects: Sequence[str], expressions: Sequence[int],
                 size_px: int, out: Path) -> None:
    """The raw scans of ``subjects`` (rows) in ``expressions`` (columns, FaceScape numbers),
    one frontal camera framing all their landmarks."""
    paths = {(row, col): scan_path(raw, subject, number)
             for row, subject in enumerate(subjects) for col, number in enumerate(expressions)}
    camera = portrait_camera(np.concatenate([
        load_landmarks(p.with_suffix(".landmarks.txt")) for p in paths.values()]), size_px)
    images = {key: shape_image(load_mesh(path), camera) for key, path in paths.items()}
    fig, _ = panel_grid(images, len(subjects), len(expressions),
                        [f"subject {s}" for s in subjects],
                        [scan_name(n).split("_", 1)[1].replace("_", " ") for n in expressions])
    save_figure(fig, out)


def read_scans_csv(path: Path) -> pd.DataFrame:
    """The per-scan metrics table (``facerecon.aggregate collect``); InputError if absent."""
    if not path.is_file():
        raise InputError(f"{path}: per-scan metrics not found")
    return pd.read_csv(path, dtype={"subject": str})


def run_comparison(args: argparse.Namespace) -> None:
    plot_comparison(Layout(args.data), args.methods, args.scans, args.figures, args.out)


def run_errors(args: argparse.Namespace) -> None:
    plot_error_maps(Layout(args.data), args.methods, args.scans, args.figures, args.out)


def run_ablation(args: argparse.Namespace) -> None:
    try:
        methods = json.loads(args.methods_json)
    except json.JSONDecodeError as exc:
        raise InputError(f"--methods-json: not valid JSON ({exc})") from None
    if not isinstance(methods, dict) or not methods:
        raise InputError("--methods-json: expected an object of method name -> flags")
    plot_ablation(Layout(args.data), methods, args.scans, args.figures, args.out)


def run_distribution(args: argparse.Namespace) -> None:
    panels = {title: methods for title, *methods in args.panel}
    if not all(panels.values()):
        raise InputError("--panel: give a title, then at least one method")
    plot_chamfer_distribution(read_scans_csv(args.scans_csv), panels, args.out)


def run_by_expression(args: argparse.Namespace) -> None:
    plot_by_expression(read_scans_csv(args.scans_csv), args.out)


def run_dataset(args: argparse.Namespace) -> None:
    plot_dataset(args.raw, args.subjects, args.expressions, args.size_px, args.out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """One subcommand per figure (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m facerecon.figures", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    renders: list[tuple[str, Callable[[argparse.Namespace], None], str]] = [
        ("comparison", run_comparison, "Figure 3: methods x non-neutral test scans"),
        ("errors", run_errors, "per-vertex error maps, one colour bar"),
        ("ablation", run_ablation, "Figure 4: Table 2's rows, shape and error"),
    ]
    for name, run, help_text in renders:
        sub = commands.add_parser(name, help=help_text)
        sub.set_defaults(run=run)
        add_config_arguments(sub, FIGURES_STAGE, flags=FIGURES_STAGE)
        sub.add_argument("--data", type=Path, required=True,
                         help="the dataset's results folder (meshes/, metrics/, preprocessed/)")
        sub.add_argument("--scans", type=parse_scan, nargs="+", required=True,
                         metavar="SUBJECT/EXPRESSION", help="test scans to choose from")
        if name == "ablation":
            sub.add_argument("--methods-json", required=True,
                             help="Table 2's rows: {method: {multiscale, local_experts, "
                                  "regularization}} in order")
        else:
            sub.add_argument("--methods", nargs="+", required=True, help="rows, in order")
        sub.add_argument("--out", type=Path, required=True, help="PNG; the PDF goes beside it")
    for name, run, help_text in [
        ("distribution", run_distribution, "per-scan Chamfer per method"),
        ("by-expression", run_by_expression, "mean metrics per expression and method"),
    ]:
        sub = commands.add_parser(name, help=help_text)
        sub.set_defaults(run=run)
        sub.add_argument("--scans-csv", type=Path, required=True, help="per-scan metrics CSV")
        if name == "distribution":
            sub.add_argument("--panel", nargs="+", action="append", required=True,
                             metavar="TITLE METHOD", help="a panel's title, then its methods")
        sub.add_argument("--out", type=Path, required=True, help="PNG; the PDF goes beside it")
    sub = commands.add_parser("dataset", help="raw scans: subjects x expressions")
    sub.set_defaults(run=run_dataset)
    sub.add_argument("--raw", type=Path, required=True,
                     help="the dataset's raw folder (<subject>/models_reg/<k>_<name>.obj)")
    sub.add_argument("--subjects", nargs="+", required=True, help="rows")
    sub.add_argument("--expressions", type=int, nargs="+", required=True,
                     help="columns, FaceScape expression numbers (1-20)")
    sub.add_argument("--size-px", type=int, default=FiguresConfig.size_px,
                     help="render size of each panel")
    sub.add_argument("--out", type=Path, required=True, help="PNG; the PDF goes beside it")
    args = parser.parse_args(argv)
    if args.run in (run_comparison, run_errors, run_ablation):
        args.figures = parse_config_arguments(args, FIGURES_STAGE)["figures"]
    return args


def main(argv: list[str] | None = None) -> None:
    """Draw the figure the subcommand names."""
    args = parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    run_cli(main)
