"""Images of scans: rendering, dlib on rendered ICT-FaceKit faces, the prepare and overlay CLIs.

ICT-FaceKit faces (real, MIT-licensed light-stage model) come from the benchmark
builder :mod:`facerecon.data.ict` (dataset seed 0, subjects 1-6; FaceScape
expressions 1 neutral x4, 2 smile, 3 mouth stretch), exactly as the ICT dataset
writes them: millimetres, the face, head, neck and mouth-socket surface with open
eyes, and the model's 68 landmark vertices.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy import ndimage

from facerecon import io, layout
from facerecon.data import ict
from facerecon.data import synthetic as synthetic_data
from facerecon.images import load_image
from facerecon.images.albedo import (
    BROW_COVER,
    BROW_HAIR,
    LIPS,
    MOUTH_INSIDE,
    SKIN,
    eyeballs,
    face_frame,
    painted_albedo,
    polygon_signed_distance,
)
from facerecon.images.align import align_image, apply_affine
from facerecon.images.camera import PinholeCamera, fit_weak_perspective, load_camera
from facerecon.images.overlay import facing_vertices
from facerecon.images.render import (
    BACKGROUND,
    FRONTAL_ROTATION,
    LANDMARK_FILL,
    portrait_camera,
    render,
    vertex_openness,
)
from facerecon.images.views import most_frontal_view

REPO = Path(__file__).resolve().parents[1]
ICT_SEED = 0
#: (subject id, FaceScape expression number) of the rendered ICT scans
ICT_FACES = [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2), (6, 3)]
GROUPS = {"jaw": np.arange(0, 17), "brows": np.arange(17, 27), "nose": np.arange(27, 36),
          "eyes": np.arange(36, 48), "mouth": np.arange(48, 68)}



def _uint8(image: np.ndarray) -> np.ndarray:
    return np.round(image * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def ict_model() -> ict.IctModel:
    return ict.load_model(ict.PACKAGED_MODEL)


@pytest.fixture(scope="module")
def ict_renders(ict_model: ict.IctModel) -> list[dict]:
    """Frontal 512-px renders of the ICT_FACES (painted from their landmarks), with cameras."""
    surface = ict.ScanSurface.of(ict_model)
    renders = []
    for subject, expression in ICT_FACES:
        identity = ict.identity_vertices_cm(ict_model, surface, ICT_SEED, subject)
        mesh, landmarks = ict.make_scan(ict_model, surface, identity, expression)
        camera = portrait_camera(landmarks)
        renders.append({"name": f"{subject}/{layout.scan_name(expression)}", "mesh": mesh,
                        "landmarks": landmarks, "camera": camera,
                        "image": _uint8(render(mesh, camera, landmarks_mm=landmarks))})
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
        for eye in (np.arange(36, 42), np.arange(42, 48)):  # open eyes: eyeballs inside
            centre = projected[eye].mean(axis=0)
            u, v = np.round(centre).astype(int)
            assert image[v, u].max() < 40, item["name"]  # the pupil
            if item["name"].endswith("neutral"):  # the white between iris and outer corner
                u, v = np.round(centre + 0.6 * (projected[eye[0]] - centre)).astype(int)
                sclera = image[v, u].astype(int)
                assert sclera.min() > 120 and sclera.max() - sclera.min() < 30, item["name"]
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


def test_painted_features_where_the_landmarks_put_them(ict_renders: list[dict]) -> None:
    """Brows hang below their landmarks (the mark-up's upper brow edge), lips are red,
    nostrils are darkened by the ambient occlusion."""
    item = ict_renders[0]
    image, camera, landmarks, mesh = (item["image"].astype(int), item["camera"],
                                      item["landmarks"], item["mesh"])
    plain = _uint8(render(mesh, camera, occlusion=False)).astype(int)  # no paint, no occlusion

    def pixel(picture: np.ndarray, point_mm: np.ndarray) -> np.ndarray:
        u, v = np.round(camera.project(point_mm[None])[0]).astype(int)
        return picture[v, u]

    up = np.array([0.0, 1.0, 0.0])  # the scan frame's up (the face looks along +z)
    for brow in (19, 24):
        assert pixel(image, landmarks[brow] - 3 * up).max() < 90  # hair
        assert pixel(image, landmarks[brow] + 6 * up)[0] > 150  # forehead skin
        assert pixel(plain, landmarks[brow] - 3 * up)[0] > 150
    lip, cheek = (pixel(image, (landmarks[51] + landmarks[62]) / 2),
                  pixel(image, (landmarks[3] + landmarks[31]) / 2))
    assert lip[0] / lip[1] > 1.7 > 1.4 > cheek[0] / cheek[1]
    nostril = (landmarks[31] + landmarks[33]) / 2 + 3 * up
    assert pixel(image, nostril)[0] < 0.85 * pixel(plain, nostril)[0]


def test_painted_albedo_regions_and_depth(tmp_path: Path) -> None:
    """On a synthetic scan's landmarks: brow, lips and mouth inside where the mark-up puts
    them, nothing painted far behind the face, plain skin for landmarks that are no face."""
    synthetic_data.build_subject(tmp_path, 1, 0, [1])
    landmarks = io.load_landmarks(layout.landmarks_path(tmp_path, 1, 1))
    _, (_, up, forward), _ = face_frame(landmarks)
    assert up[1] > 0.9 and forward[2] > 0.9
    brow = landmarks[19] - 2 * up
    lip = (landmarks[51] + landmarks[62]) / 2
    points = np.array([brow, landmarks[19] + 4 * up, brow - 80 * forward, lip,
                       lip - 25 * forward, landmarks[8] + 0.5 * (landmarks[8] - landmarks[57])])
    albedo = painted_albedo(points, landmarks)
    np.testing.assert_allclose(albedo[0], SKIN + BROW_COVER * (BROW_HAIR - SKIN), atol=0.02)
    np.testing.assert_allclose(albedo[[1, 2, 5]], np.tile(SKIN, (3, 1)), atol=1e-9)
    np.testing.assert_allclose(albedo[3], LIPS, atol=0.02)
    np.testing.assert_allclose(albedo[4], MOUTH_INSIDE, atol=0.02)
    assert len(eyeballs(landmarks)) == 2
    for centre, radius, gaze in eyeballs(landmarks):  # behind the lid margins, looking out
        assert gaze @ forward > 0.95 and 8.0 < radius < 16.0
        margins = landmarks[[37, 38, 40, 41]] if centre[0] < 0 else landmarks[[43, 44, 46, 47]]
        offsets = margins - centre
        along = offsets.mean(axis=0) @ gaze
        off_axis = np.linalg.norm(np.cross(offsets, gaze), axis=1).mean()
        assert along - np.sqrt(radius**2 - off_axis**2) == pytest.approx(1.0, abs=0.3)
    flat = np.zeros((68, 3))
    np.testing.assert_array_equal(painted_albedo(points, flat), np.tile(SKIN, (6, 1)))
    assert face_frame(flat) is None and eyeballs(flat) == []


def test_polygon_signed_distance() -> None:
    square = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]])
    points = np.array([[1.0, 1.0], [1.0, 0.5], [3.0, 1.0], [3.0, 3.0], [2.0, 1.0]])
    np.testing.assert_allclose(polygon_signed_distance(points, square),
                               [-1.0, -0.5, 1.0, np.sqrt(2.0), 0.0], atol=1e-12)
    folded = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [1.0, 0.0]])  # a closed mouth
    assert polygon_signed_distance(np.array([[1.0, 0.0], [1.0, 0.5]]), folded).min() >= 0


def test_vertex_openness() -> None:
    """1 on a convex surface; inside a cup, less the deeper the vertex."""
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=20.0)
    np.testing.assert_allclose(vertex_openness(sphere), 1.0)
    cup = trimesh.creation.icosphere(subdivisions=3, radius=20.0)
    cup.update_faces(cup.triangles_center[:, 2] < 10.0)  # open at the top
    cup.remove_unreferenced_vertices()
    cup.invert()  # normals point into the cup
    openness = vertex_openness(cup)
    heights = np.asarray(cup.vertices)[:, 2]
    assert openness[heights < -18].mean() < 0.5 < openness[heights > 8].mean()
    assert ((openness >= 0) & (openness <= 1)).all()


# ------------------------------------------------------------------------------------
# dlib on rendered ICT faces


@pytest.fixture(scope="module")
def dlib_measurements(ict_renders: list[dict]) -> list[dict]:
    """Per render, in the 256-px crop: dlib vs the projected 3D landmarks ("truth"), and the
    camera fitted to dlib's landmarks (prepare's fit): its projections of the 3D landmarks
    against the truth and against dlib's landmarks (its residual, camera.json's record)."""
    rows = []
    for item in ict_renders:
        alignment = align_image(item["image"], source=item["name"])
        assert alignment.method == "dlib" and alignment.faces_detected == 1
        truth_px = apply_affine(alignment.image_to_crop, item["camera"].project(item["landmarks"]))
        camera_dlib, residual_dlib = fit_weak_perspective(alignment.landmarks_px,
                                                          item["landmarks"])
        _, residual_truth = fit_weak_perspective(truth_px, item["landmarks"])
        rows.append({
            "name": item["name"],
            "agreement": np.linalg.norm(alignment.landmarks_px - truth_px, axis=1),
            "signed": alignment.landmarks_px - truth_px,
            "residual_dlib": residual_dlib,
            "residual_truth": residual_truth,
            "dlib_camera_vs_truth": np.linalg.norm(
                camera_dlib.project(item["landmarks"]) - truth_px, axis=1),
        })
    print("\nrender            dlib vs truth, median px (256 crop): all | per group         "
          "dlib camera, median px: vs truth / residual | exact-landmark camera residual")
    for row in rows:
        groups = " ".join(f"{k} {np.median(row['agreement'][v]):4.1f}" for k, v in GROUPS.items())
        print(f"{row['name']:17s} {np.median(row['agreement']):4.2f} | {groups} | "
              f"{np.median(row['dlib_camera_vs_truth']):4.2f} / "
              f"{np.median(row['residual_dlib']):4.2f} | {np.median(row['residual_truth']):4.2f}")
    return rows


def test_dlib_landmarks_on_ict_renders(dlib_measurements: list[dict]) -> None:
    """What else holds (measured): dlib finds every face; brows, nose and mouth agree with
    ICT's landmarks to pooled medians under 3 px and the eyes under 1.5 px; the brows show
    no vertical offset (on unpainted renders dlib put them 7 px low); the jaw differs by definition
    (dlib follows the visible outline, ICT's jaw points are fixed vertices up to 10 mm
    inside it); the camera from exact landmarks reprojects to a median under 0.6 px."""
    agreement = np.stack([row["agreement"] for row in dlib_measurements])
    for group in ("brows", "nose", "mouth"):
        assert np.median(agreement[:, GROUPS[group]]) < 3.0, group
    assert np.median(agreement[:, GROUPS["eyes"]]) < 1.5
    assert np.median(agreement[:, GROUPS["jaw"]]) > 3.0
    signed = np.stack([row["signed"] for row in dlib_measurements])
    assert abs(signed[:, GROUPS["brows"], 1].mean()) < 1.5
    for row in dlib_measurements:
        assert np.median(row["residual_truth"]) < 0.6, row["name"]


def test_criterion_dlib_agrees_within_3px_median(dlib_measurements: list[dict]) -> None:
    """Issue criterion: on rendered ict scans dlib's landmarks and the projected ground-truth
    landmarks agree to a median (over the 68) of 3 px in the 256x256 crop, every render."""
    for row in dlib_measurements:
        assert np.median(row["agreement"]) <= 3.0, row["name"]


def test_criterion_estimated_camera_reprojects_under_2px(
        dlib_measurements: list[dict]) -> None:
    """Issue criterion, read as the camera's accuracy: the camera estimated from dlib's
    landmarks projects the 68 3D landmarks within a median of 2 px of their true
    (ground-truth) positions in the crop, every render."""
    for row in dlib_measurements:
        assert np.median(row["dlib_camera_vs_truth"]) < 2.0, row["name"]


@pytest.mark.xfail(strict=True, reason=(
    "not met if the criterion means the fit's residual against dlib's own landmarks "
    "(camera.json's reprojection_error_px): medians 1.6-3.0 px per render, set by where "
    "dlib and ICT define the jaw, nostril and lower/inner lip points; the camera itself "
    "lies 0.4-1.8 px from the truth"))
def test_dlib_camera_residual_against_dlib_landmarks_under_2px(
        dlib_measurements: list[dict]) -> None:
    for row in dlib_measurements:
        assert np.median(row["residual_dlib"]) < 2.0, row["name"]


# ------------------------------------------------------------------------------------
# CLIs end to end


def _run(module: str, *args: str | Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory, ict_model: ict.IctModel
          ) -> dict[str, tuple[Path, Path]]:
    """One ICT scan and one synthetic scan in FaceScape's layout: name -> (obj, landmarks)."""
    root = tmp_path_factory.mktemp("scans")
    obj = ict.build_subject(ict_model, root / "ict", 1, ICT_SEED, [1])[0]
    synthetic = synthetic_data.build_subject(root / "synthetic", 1, 0, [1])[0]
    return {"ict": (obj, layout.landmarks_path(root / "ict", 1, 1)),
            "synthetic": (synthetic, layout.landmarks_path(root / "synthetic", 1, 1))}


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
    assert record["reprojection_error_px"]["median"] < 3.0


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
