"""Images of scans: rendering, dlib on rendered ICT-FaceKit faces, the prepare and overlay CLIs.

ICT-FaceKit faces (real, MIT-licensed light-stage model) are built here straight
from ``ict_facekit.npz``: neutral + N(0, 1) identity weights (+ one expression),
centimetres -> millimetres, the face and head/neck triangles (vertices < 11248),
landmarks = the model's ``landmarks68`` vertices.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy import ndimage

from facerecon import io
from facerecon.data import layout
from facerecon.data.synthetic import build_subject
from facerecon.images import load_image
from facerecon.images.align import align_image, apply_affine
from facerecon.images.camera import PinholeCamera, fit_weak_perspective, load_camera
from facerecon.images.overlay import facing_vertices
from facerecon.images.render import (
    BACKGROUND,
    FRONTAL_ROTATION,
    LANDMARK_FILL,
    portrait_camera,
    render,
)
from facerecon.images.views import most_frontal_view

REPO = Path(__file__).resolve().parents[1]
ICT_NPZ = Path(os.environ.get("FACERECON_ICT_NPZ", "/work/shared/ict-facekit/ict_facekit.npz"))
HEAD_VERTICES = 11248  # face [0, 9409) + head and neck [9409, 11248)
#: (identity seed, expression or None, expression weight)
ICT_FACES = [(0, None, 0.0), (1, None, 0.0), (2, None, 0.0), (3, None, 0.0),
             (4, "mouthSmile_L", 1.0), (5, "jawOpen", 1.0)]
GROUPS = {"jaw": np.arange(0, 17), "brows": np.arange(17, 27), "nose": np.arange(27, 36),
          "eyes": np.arange(36, 48), "mouth": np.arange(48, 68)}

needs_ict = pytest.mark.skipif(not ICT_NPZ.is_file(), reason=f"{ICT_NPZ} not available")


def _uint8(image: np.ndarray) -> np.ndarray:
    return np.round(image * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def ict_model() -> dict[str, np.ndarray]:
    with np.load(ICT_NPZ) as data:
        return {key: data[key] for key in ("vertices_neutral", "identity_deltas",
                                           "expression_names", "expression_deltas",
                                           "faces", "landmarks68")}


def ict_face(model: dict[str, np.ndarray], seed: int, expression: str | None,
             weight: float) -> tuple[trimesh.Trimesh, np.ndarray]:
    """An ICT-FaceKit head (mm) and its 68 landmarks (68, 3) mm."""
    weights = np.random.default_rng(seed).standard_normal(len(model["identity_deltas"]))
    vertices = model["vertices_neutral"] + np.tensordot(weights.astype(np.float32),
                                                        model["identity_deltas"], axes=1)
    if expression is not None:
        index = list(model["expression_names"]).index(expression)
        vertices = vertices + weight * model["expression_deltas"][index]
    vertices = vertices.astype(np.float64) * 10.0
    faces = model["faces"][(model["faces"] < HEAD_VERTICES).all(axis=1)]
    return trimesh.Trimesh(vertices, faces, process=False), vertices[model["landmarks68"]]


@pytest.fixture(scope="module")
def ict_renders(ict_model: dict[str, np.ndarray]) -> list[dict]:
    """Frontal 512-px renders of the ICT_FACES with their cameras."""
    renders = []
    for seed, expression, weight in ICT_FACES:
        mesh, landmarks = ict_face(ict_model, seed, expression, weight)
        camera = portrait_camera(landmarks)
        renders.append({"name": f"id{seed}-{expression or 'neutral'}", "mesh": mesh,
                        "landmarks": landmarks, "camera": camera,
                        "image": _uint8(render(mesh, camera))})
    return renders


def _is_background(pixels: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 pixels -> (N,) True where they show the render's background."""
    return np.abs(pixels.astype(float) - BACKGROUND * 255).max(axis=-1) <= 2


# ------------------------------------------------------------------------------------
# Rendering


def test_render_pixel_convention_matches_projection() -> None:
    """A half-plane x >= 0: its rendered edge lies where the camera projects x = 0."""
    plane = trimesh.Trimesh([[0, -500, 0], [500, -500, 0], [500, 500, 0], [0, 500, 0]],
                            [[0, 1, 2], [0, 2, 3]], process=False)
    centre = np.array([-3.3, 0.0, 1000.0])
    intrinsics = np.array([[500.0, 0.0, 31.5], [0.0, 500.0, 31.5], [0.0, 0.0, 1.0]])
    camera = PinholeCamera(intrinsics, np.hstack([FRONTAL_ROTATION,
                                                  (-FRONTAL_ROTATION @ centre)[:, None]]), 64, 64)
    supersample = 4
    image = render(plane, camera, supersample)
    covered = ~_is_background(_uint8(image[32]))
    coverage = np.abs(image[32] - BACKGROUND).max(axis=1) / np.abs(
        image[32, -1] - BACKGROUND).max()  # share of each pixel's rays on the plane
    edge_u = camera.project(np.array([[0.0, 0.0, 0.0]]))[0, 0]
    assert covered[-1] and not covered[0]
    estimated = np.flatnonzero(covered)[0] + 0.5 - coverage[covered].min()
    assert abs(estimated - edge_u) <= 0.5 / supersample + 1e-9


@needs_ict
def test_frontal_render_frames_the_face(ict_renders: list[dict]) -> None:
    for item in ict_renders:
        image, camera, landmarks = item["image"], item["camera"], item["landmarks"]
        assert image.shape == (512, 512, 3)
        projected = camera.project(landmarks)
        extent = (projected.max(axis=0) - projected.min(axis=0)).max()
        assert extent == pytest.approx(LANDMARK_FILL * 512, rel=0.05)
        assert _is_background(image[[0, 0], [0, -1]]).all()  # top corners (shoulders below)
        nose = np.round(projected[30]).astype(int)
        assert not _is_background(image[nose[1], nose[0]][None])[0]
        for eye in (np.arange(36, 42), np.arange(42, 48)):  # open eyes: dark holes
            u, v = np.round(projected[eye].mean(axis=0)).astype(int)
            assert image[v, u].max() < 40, item["name"]
        # projected vertices facing the camera land on the head, not the background
        mesh = item["mesh"]
        facing = np.asarray(mesh.vertex_normals) @ camera.viewing_direction < 0
        u, v = np.round(camera.project(np.asarray(mesh.vertices)[facing])).astype(int).T
        inside = (u >= 0) & (u < 512) & (v >= 0) & (v < 512)
        assert _is_background(image[v[inside], u[inside]]).mean() < 0.01


def test_render_uses_vertex_colours() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=50.0)
    sphere.visual.vertex_colors = np.tile([230, 20, 20, 255], (len(sphere.vertices), 1))
    diagonal = np.linspace(-40.0, 40.0, 68)  # frame an 80 mm box in front of the sphere
    landmarks = np.column_stack([diagonal, diagonal, np.full(68, 50.0)])
    image = render(sphere, portrait_camera(landmarks, 128))
    centre = image[64, 64]
    assert centre[0] > 0.3 and centre[1] < 0.1 * centre[0] and centre[2] < 0.1 * centre[0]


# ------------------------------------------------------------------------------------
# dlib on rendered ICT faces


@pytest.fixture(scope="module")
def dlib_measurements(ict_renders: list[dict]) -> list[dict]:
    """Per render: dlib-vs-truth errors in the crop and both cameras' reprojection errors."""
    rows = []
    for item in ict_renders:
        alignment = align_image(item["image"], source=item["name"])
        assert alignment.method == "dlib" and alignment.faces_detected == 1
        truth_px = apply_affine(alignment.image_to_crop, item["camera"].project(item["landmarks"]))
        camera_dlib, reprojection_dlib = fit_weak_perspective(alignment.landmarks_px,
                                                              item["landmarks"])
        _, reprojection_truth = fit_weak_perspective(truth_px, item["landmarks"])
        rows.append({
            "name": item["name"],
            "agreement": np.linalg.norm(alignment.landmarks_px - truth_px, axis=1),
            "signed": alignment.landmarks_px - truth_px,
            "reprojection_dlib": reprojection_dlib,
            "reprojection_truth": reprojection_truth,
            "dlib_camera_vs_truth": np.linalg.norm(
                camera_dlib.project(item["landmarks"]) - truth_px, axis=1),
        })
    print("\nrender              dlib-truth median (px, 256 crop) per group         "
          "reprojection median: dlib / exact landmarks")
    for row in rows:
        groups = " ".join(f"{k} {np.median(row['agreement'][v]):4.1f}" for k, v in GROUPS.items())
        print(f"{row['name']:20s} all {np.median(row['agreement']):4.2f} | {groups} | "
              f"{np.median(row['reprojection_dlib']):4.2f} / "
              f"{np.median(row['reprojection_truth']):4.2f}")
    return rows


@needs_ict
def test_dlib_landmarks_on_ict_renders(dlib_measurements: list[dict]) -> None:
    """What holds (measured): dlib finds every face; eyes, nose and mouth agree with ICT's
    landmarks to a pooled median under 3 px; all 68 points to under 4 px per render; the
    only large systematic difference is the brows (dlib puts them lower on these browless
    renders); the camera from exact landmarks reprojects to a median under 0.6 px."""
    agreement = np.stack([row["agreement"] for row in dlib_measurements])
    for group in ("eyes", "nose", "mouth"):
        assert np.median(agreement[:, GROUPS[group]]) < 3.0, group
    assert (np.median(agreement, axis=1) < 4.0).all()
    signed = np.stack([row["signed"] for row in dlib_measurements])
    assert signed[:, GROUPS["brows"], 1].mean() > 3.0  # dlib's brows lie lower (+y)
    assert abs(signed[:, np.r_[0:17, 27:68], 1].mean()) < 1.0  # no overall offset
    for row in dlib_measurements:
        assert np.median(row["reprojection_truth"]) < 0.6, row["name"]
        assert np.median(row["reprojection_dlib"]) < 4.5, row["name"]
        assert np.median(row["dlib_camera_vs_truth"]) < 3.5, row["name"]


@needs_ict
@pytest.mark.xfail(strict=True, reason=(
    "not met: dlib vs ICT landmarks68 medians are 2.2-3.4 px per render here (2.2-4.0 "
    "over 12 renders measured, 7 above 3 px); ICT's brow (7.5 px), jaw (3.8 px) and "
    "nostril points are placed differently from dlib's on these untextured renders"))
def test_brief_criterion_dlib_agrees_within_3px_median(dlib_measurements: list[dict]) -> None:
    for row in dlib_measurements:
        assert np.median(row["agreement"]) <= 3.0, row["name"]


@needs_ict
@pytest.mark.xfail(strict=True, reason=(
    "not met: the camera fitted to dlib's landmarks reprojects the 3D landmarks with "
    "median 2.5-4.0 px, set by the same landmark-definition differences; with exact "
    "landmarks it is 0.25-0.36 px"))
def test_brief_criterion_dlib_camera_reprojects_under_2px(
        dlib_measurements: list[dict]) -> None:
    for row in dlib_measurements:
        assert np.median(row["reprojection_dlib"]) < 2.0, row["name"]


# ------------------------------------------------------------------------------------
# CLIs end to end


def _run(module: str, *args: str | Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory, ict_model: dict[str, np.ndarray]
          ) -> dict[str, tuple[Path, Path]]:
    """One ICT scan and one synthetic scan in FaceScape's layout: name -> (obj, landmarks)."""
    root = tmp_path_factory.mktemp("scans")
    mesh, landmarks = ict_face(ict_model, 0, None, 0.0)
    obj = layout.scan_path(root / "ict", 0, 1)
    io.save_mesh(mesh, obj)
    io.save_landmarks(layout.landmarks_path(root / "ict", 0, 1), landmarks)
    synthetic = build_subject(root / "synthetic", 1, 0, [1])[0]
    return {"ict": (obj, layout.landmarks_path(root / "ict", 0, 1)),
            "synthetic": (synthetic, layout.landmarks_path(root / "synthetic", 1, 1))}


@needs_ict
def test_prepare_and_overlay_clis(scans: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    prepared = []
    for name, (obj, landmarks) in scans.items():
        out = tmp_path / name
        _run("facerecon.images.prepare", "--scan", obj, "--landmarks", landmarks,
             "--out-dir", out)
        crop, _ = load_image(out / "crop.png")
        assert crop.shape == (256, 256, 3)
        landmarks_2d = np.loadtxt(out / "landmarks2d.txt")
        assert landmarks_2d.shape == (68, 2)
        record = json.loads((out / "camera.json").read_text())
        assert {"scale_px_per_mm", "rotation", "translation_px", "matrix_2x4",
                "reprojection_error_px", "crop_size_px", "scan", "landmarks_file", "view",
                "alignment"} <= set(record)
        assert record["view"]["source"] == "render" and record["view"]["view"] == "0"
        assert record["alignment"]["method"] == "given"
        assert record["reprojection_error_px"]["median"] < 0.6
        assert record["reprojection_error_px"]["max"] < 2.0
        camera = load_camera(out / "camera.json")
        np.testing.assert_allclose(
            camera.project(io.load_landmarks(landmarks)) - landmarks_2d,
            np.zeros((68, 2)), atol=record["reprojection_error_px"]["max"] + 1e-6)
        # the scan's camera-facing vertices land on the head in the crop: none more than
        # 4 px outside its rendered outline (weak perspective vs the 3 m render)
        mesh = io.load_mesh(obj)
        facing = facing_vertices(mesh.vertex_normals, camera)
        u, v = np.round(camera.project(np.asarray(mesh.vertices)[facing])).astype(int).T
        inside = (u >= 0) & (u < 256) & (v >= 0) & (v < 256)
        assert inside.sum() > 1000  # (the neck and shoulders reach below the crop)
        outside_px = ndimage.distance_transform_edt(_is_background(crop.reshape(-1, 3))
                                                    .reshape(256, 256))
        assert outside_px[v[inside], u[inside]].max() <= 4.0, name
        prepared.append(out)
    figure = tmp_path / "overlay.png"
    _run("facerecon.images.overlay", "--prepared", *prepared,
         "--scans", *(obj for obj, _ in scans.values()), "--out", figure)
    image, _ = load_image(figure)
    assert image.shape[1] > image.shape[0] > 200


@needs_ict
def test_render_cli_then_prepare_from_the_view_folder(scans: dict[str, tuple[Path, Path]],
                                                      tmp_path: Path) -> None:
    """A rendered dataset looks like FaceScape: prepare --images-dir runs dlib on view 0."""
    obj, landmarks = scans["ict"]
    views = tmp_path / "images" / "1_neutral"
    _run("facerecon.images.render", "--scan", obj, "--out-dir", views)
    params = json.loads((views / "params.json").read_text())
    assert set(params) == {"0_K", "0_Rt", "0_distortion", "0_width", "0_height", "0_valid"}
    assert params["0_distortion"] == [0.0] * 5 and params["0_valid"] is True
    view = most_frontal_view(views)
    assert view.name == "0" and view.image == views / "0.png"
    expected = portrait_camera(io.load_landmarks(landmarks))
    np.testing.assert_allclose(view.camera.intrinsics, expected.intrinsics)
    np.testing.assert_allclose(view.camera.extrinsics, expected.extrinsics)
    out = tmp_path / "prepared"
    _run("facerecon.images.prepare", "--scan", obj, "--landmarks", landmarks,
         "--images-dir", views, "--out-dir", out)
    record = json.loads((out / "camera.json").read_text())
    assert record["view"]["source"] == "images" and record["view"]["view"] == "0"
    assert record["alignment"]["method"] == "dlib"
    assert record["reprojection_error_px"]["median"] < 4.5


def test_prepare_errors_exit_2(tmp_path: Path) -> None:
    """A missing scan and a view folder without params.json: exit 2 naming the file."""
    landmarks = tmp_path / "lm.txt"
    io.save_landmarks(landmarks, np.random.default_rng(0).normal(size=(68, 3)))
    for extra, named in [([], "missing.obj"), (["--images-dir", tmp_path], "params.json")]:
        result = subprocess.run(
            [sys.executable, "-m", "facerecon.images.prepare", "--scan",
             str(tmp_path / "missing.obj"), "--landmarks", str(landmarks),
             "--out-dir", str(tmp_path / "out"), *map(str, extra)],
            cwd=REPO, capture_output=True, text=True, check=False)
        assert result.returncode == 2 and named in result.stderr, result.stderr
        assert not (tmp_path / "out").exists()
