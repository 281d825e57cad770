"""Figures on real meshes: error maps measure what they show, the figures are written."""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import trimesh

from facerecon import figures
from facerecon.aggregate import collect
from facerecon.config import FiguresConfig
from facerecon.evaluate import evaluate_meshes
from facerecon.images.render import BACKGROUND, portrait_camera
from facerecon.io import InputError, load_landmarks, load_mesh, save_mesh, write_json

#: A rigid shift (mm) the evaluation's ICP undoes on a face (it has curvature to grip).
SHIFT_MM = np.array([0.0, 0.0, 2.0])


@pytest.fixture(scope="module")
def face(synthetic_root: Path) -> tuple[trimesh.Trimesh, np.ndarray]:
    """A synthetic scan (subject 1, jaw_left) and its 68 landmarks, mm."""
    obj = synthetic_root / "1/models_reg/5_jaw_left.obj"
    return load_mesh(obj), load_landmarks(obj.with_suffix(".landmarks.txt"))


def shifted(mesh: trimesh.Trimesh, offset_mm: np.ndarray) -> trimesh.Trimesh:
    return trimesh.Trimesh(np.asarray(mesh.vertices) + offset_mm, mesh.faces, process=False)


def colour_direction(rgb: np.ndarray) -> np.ndarray:
    """RGB scaled to unit length: what shading (a factor per pixel) leaves unchanged."""
    return rgb / np.linalg.norm(rgb, axis=-1, keepdims=True)


def share_in_colour(image: np.ndarray, colour: np.ndarray) -> float:
    """Share of the non-background pixels whose colour is ``colour`` times a shade."""
    foreground = np.abs(image - BACKGROUND).max(axis=2) > 1e-6
    pixels = image[foreground]
    pixels = pixels[pixels.sum(axis=1) > 0.05]  # fully dark pixels carry no hue
    cosine = colour_direction(pixels) @ colour_direction(colour)
    return float(np.mean(cosine > 0.999))


def test_a_face_against_itself_is_zero_error_and_zero_coloured(face) -> None:
    mesh, landmarks = face
    [(aligned, errors)] = figures.vertex_errors_mm(mesh, None, [(mesh, np.eye(4))])
    assert errors.max() < 1e-6
    image = figures.error_image(aligned, errors, portrait_camera(landmarks, 96), 3.0)
    zero = np.asarray(plt.get_cmap(figures.ERROR_CMAP)(0.0))[:3]
    assert share_in_colour(image, zero) > 0.95


def test_a_2mm_offset_reads_2mm_and_the_evaluations_alignment_removes_it(face) -> None:
    mesh, landmarks = face
    moved = shifted(mesh, SHIFT_MM)
    # the re-matching ICP converges (the reference one stops within 0.1 mm of mean error)
    transform = np.asarray(
        evaluate_meshes(moved, mesh, samples=20_000, icp="rematch")["icp_transform"])
    (_, raw), (aligned, errors) = figures.vertex_errors_mm(
        mesh, None, [(moved, np.eye(4)), (moved, transform)])
    # unaligned, the frontal surface (most of a face) is the full 2 mm off, never more
    assert raw.max() <= 2.0 + 1e-6 and np.median(raw) > 1.0
    assert np.median(errors) < 0.1
    np.testing.assert_allclose(np.asarray(aligned.vertices).mean(axis=0),
                               np.asarray(mesh.vertices).mean(axis=0), atol=0.3)
    # a flat sheet 2 mm above a flat sheet: 2 mm everywhere, the 2/3 colour of a 3 mm scale
    plane = trimesh.creation.box((100.0, 100.0, 1e-3))
    above = shifted(plane, np.array([0.0, 0.0, 2.0]))
    [(_, plane_errors)] = figures.vertex_errors_mm(plane, None, [(above, np.eye(4))])
    np.testing.assert_allclose(plane_errors, 2.0, atol=2e-3)
    colours = figures.error_colours(plane_errors, 3.0)
    expected = np.round(np.asarray(plt.get_cmap(figures.ERROR_CMAP)(2.0 / 3.0)) * 255)
    assert np.abs(colours.astype(float) - expected).max() <= 2
    image = figures.error_image(mesh, np.full(len(mesh.vertices), 2.0),
                                portrait_camera(landmarks, 96), 3.0)
    assert share_in_colour(image, expected[:3] / 255) > 0.95
    # clipped above the scale: 10 mm is the top colour
    assert (figures.error_colours(np.array([10.0]), 3.0)
            == figures.error_colours(np.array([3.0]), 3.0)).all()


def test_shown_scans_skip_neutral_and_spread_over_expressions() -> None:
    scans = [(s, e) for s in ("7", "8")
             for e in ("1_neutral", "3_mouth_stretch", "5_jaw_left", "18_eye_closed")]
    assert figures.shown_scans(scans, 6) == [
        ("7", "3_mouth_stretch"), ("8", "3_mouth_stretch"), ("7", "5_jaw_left"),
        ("8", "5_jaw_left"), ("7", "18_eye_closed"), ("8", "18_eye_closed")]
    three = figures.shown_scans(scans, 3)
    assert len({e for _, e in three}) == 3
    assert three == figures.shown_scans(list(reversed(scans)), 3)
    assert figures.shown_scans([("7", "1_neutral")], 6) == [("7", "1_neutral")]


@pytest.fixture(scope="module")
def results(face, synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset folder as the workflow writes it: subject 1 (jaw_left and a copy as
    mouth_stretch), method 'exact' (the ground truth) and 'shifted' (2 mm off), with
    metrics from the evaluator."""
    mesh, _ = face
    data = tmp_path_factory.mktemp("results") / "synthetic"
    for expression in ("3_mouth_stretch", "5_jaw_left"):
        save_mesh(mesh, data / f"preprocessed/1/{expression}.ply")  # sheet = face: no skirt
        save_mesh(mesh, data / f"preprocessed/1/{expression}.face.ply")
        shutil.copy(synthetic_root / "1/models_reg/5_jaw_left.landmarks.txt",
                    data / f"preprocessed/1/{expression}.landmarks.txt")
        for method, pred in (("exact", mesh), ("shifted", shifted(mesh, SHIFT_MM))):
            save_mesh(pred, data / f"meshes/{method}/1/{expression}.ply")
            write_json(data / f"metrics/{method}/1/{expression}.json",
                       evaluate_meshes(pred, mesh, samples=5_000))
    return data


def test_every_figure_is_written_as_png_and_pdf(results: Path, tmp_path: Path) -> None:
    scans = ["1/1_neutral", "1/3_mouth_stretch", "1/5_jaw_left"]
    layout = figures.Layout(results)
    cfg = FiguresConfig(size_px=96)
    parsed = [figures.parse_scan(s) for s in scans]
    figures.plot_comparison(layout, ["exact", "shifted"], parsed[1:], cfg,
                            tmp_path / "comparison.png")
    figures.main(["errors", "--data", str(results), "--methods", "exact", "shifted",
                  "--scans", *scans[1:], "--size-px", "96", "--out",
                  str(tmp_path / "errors.png")])
    flags = '{"exact": {"multiscale": true}, "shifted": {"local_experts": true}}'
    figures.main(["ablation", "--data", str(results), "--methods-json", flags,
                  "--scans", *scans[1:], "--size-px", "96", "--ablation-columns", "1",
                  "--out", str(tmp_path / "ablation.png")])
    scans_csv = tmp_path / "scans.csv"
    collect(sorted(results.glob("metrics/*/*/*.json"))).to_csv(scans_csv, index=False)
    figures.main(["distribution", "--scans-csv", str(scans_csv), "--panel", "Table 1",
                  "exact", "shifted", "--out", str(tmp_path / "distribution.png")])
    figures.main(["by-expression", "--scans-csv", str(scans_csv), "--out",
                  str(tmp_path / "by_expression.png")])
    for name in ("comparison", "errors", "ablation", "distribution", "by_expression"):
        image = plt.imread(tmp_path / f"{name}.png")
        assert min(image.shape[:2]) > 150 and image[..., :3].std() > 0.05, name
        assert (tmp_path / f"{name}.pdf").read_bytes().startswith(b"%PDF"), name
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_missing_inputs_are_named(results: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no_such_method"):
        figures.main(["errors", "--data", str(results), "--methods", "no_such_method",
                      "--scans", "1/5_jaw_left", "--out", str(tmp_path / "e.png")])
    with pytest.raises(InputError, match="not SUBJECT/EXPRESSION"):
        figures.parse_scan("1/5_jaw_right_wrong")
    with pytest.raises(InputError, match="scans.csv"):
        figures.main(["by-expression", "--scans-csv", str(tmp_path / "scans.csv"),
                      "--out", str(tmp_path / "b.png")])


def test_the_dataset_figure_shows_every_scan_asked_for(synthetic_root: Path,
                                                       tmp_path: Path) -> None:
    """Rows subjects, columns expressions: each panel a rendered face, a missing scan
    named."""
    out = tmp_path / "dataset.png"
    figures.main(["dataset", "--raw", str(synthetic_root), "--subjects", "1", "2",
                  "--expressions", "1", "5", "--size-px", "96", "--out", str(out)])
    assert (tmp_path / "dataset.pdf").read_bytes().startswith(b"%PDF")
    image = plt.imread(out)[..., :3]
    assert min(image.shape[:2]) > 150
    # 2 x 2 panels: each quadrant holds skin (red well above blue; the margins are white,
    # the renderer's background blue-grey)
    h, w = image.shape[0] // 2, image.shape[1] // 2
    for quadrant in (image[:h, :w], image[:h, w:], image[h:, :w], image[h:, w:]):
        assert (quadrant[..., 0] - quadrant[..., 2] > 0.15).mean() > 0.05
    with pytest.raises(InputError, match="1/models_reg/3_mouth_stretch"):
        figures.main(["dataset", "--raw", str(synthetic_root), "--subjects", "1",
                      "--expressions", "3", "--out", str(tmp_path / "missing.png")])
