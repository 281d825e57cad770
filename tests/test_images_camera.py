"""Cameras (weak-perspective fit, projections, JSON) and FaceScape params.json views."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from facerecon import io
from facerecon.geometry.align import apply_transform, crop_frame_transform
from facerecon.images import save_image
from facerecon.images.camera import (
    PinholeCamera,
    WeakPerspectiveCamera,
    _initial_fit,
    camera_record,
    fit_weak_perspective,
    load_camera,
)
from facerecon.images.render import FRONTAL_ROTATION, portrait_camera
from facerecon.images.views import PARAMS_FILE, most_frontal_view, read_params, write_params

RNG = np.random.default_rng(7)
#: 68 face-like 3D points (mm): a rough face depth profile, nose tip forward.
POINTS_MM = np.column_stack([RNG.uniform(-70, 70, 68), RNG.uniform(-90, 50, 68),
                             RNG.uniform(40, 110, 68)])


def _true_camera() -> WeakPerspectiveCamera:
    """Crop camera of a face turned a little: scale 1.1 px/mm, image y down."""
    rotation = Rotation.from_euler("xyz", [8, -20, 5], degrees=True).as_matrix()
    return WeakPerspectiveCamera(1.1, FRONTAL_ROTATION @ rotation, np.array([128.0, 140.0]))


def test_fit_recovers_an_exact_camera() -> None:
    truth = _true_camera()
    camera, errors = fit_weak_perspective(truth.project(POINTS_MM), POINTS_MM)
    assert camera.scale_px_per_mm == pytest.approx(1.1, abs=1e-9)
    np.testing.assert_allclose(camera.rotation, truth.rotation, atol=1e-9)
    np.testing.assert_allclose(camera.translation_px, truth.translation_px, atol=1e-7)
    assert errors.shape == (68,) and errors.max() < 1e-7


def test_fit_with_noise_is_the_least_squares_optimum() -> None:
    truth = _true_camera()
    observed = truth.project(POINTS_MM) + RNG.normal(0.0, 1.0, (68, 2))
    camera, errors = fit_weak_perspective(observed, POINTS_MM, huber_px=None)
    np.testing.assert_allclose(camera.rotation @ camera.rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(camera.rotation) == pytest.approx(1.0)
    sse = (errors**2).sum()
    truth_sse = ((truth.project(POINTS_MM) - observed) ** 2).sum()
    initial = _initial_fit(observed, POINTS_MM)
    initial_sse = ((initial.project(POINTS_MM) - observed) ** 2).sum()
    assert sse <= truth_sse and sse <= initial_sse + 1e-9
    assert 0.5 < np.median(errors) < 1.5  # about the noise level
    np.testing.assert_allclose(camera.rotation, truth.rotation, atol=0.02)


def test_robust_fit_ignores_outlying_landmarks() -> None:
    """Twelve of 68 landmarks 15 px off in one direction (as dlib's jaw against ICT's jaw
    vertices): the Huber fit keeps the camera a median 0.64 px from the truth at the other
    points, plain least squares 2.8 px; without outliers both agree."""
    truth = _true_camera()
    rng = np.random.default_rng(3)
    observed = truth.project(POINTS_MM) + rng.normal(0.0, 0.5, (68, 2))
    robust, _ = fit_weak_perspective(observed, POINTS_MM)
    plain, _ = fit_weak_perspective(observed, POINTS_MM, huber_px=None)
    assert np.abs(robust.project(POINTS_MM) - plain.project(POINTS_MM)).max() < 0.1
    observed[:12] += [15.0, 10.0]
    robust, errors = fit_weak_perspective(observed, POINTS_MM)
    plain, _ = fit_weak_perspective(observed, POINTS_MM, huber_px=None)
    inliers = truth.project(POINTS_MM[12:])
    assert np.median(np.linalg.norm(robust.project(POINTS_MM[12:]) - inliers, axis=1)) < 1.0
    assert np.median(np.linalg.norm(plain.project(POINTS_MM[12:]) - inliers, axis=1)) > 2.5
    assert np.median(errors[:12]) > 15.0 > 1.0 > np.median(errors[12:])
    with pytest.raises(ValueError, match="huber_px"):
        fit_weak_perspective(observed, POINTS_MM, huber_px=0.0)


def test_fit_rejects_degenerate_input() -> None:
    flat = POINTS_MM.copy()
    flat[:, 2] = 0.0
    with pytest.raises(ValueError, match="non-coplanar"):
        fit_weak_perspective(flat[:, :2], flat)
    with pytest.raises(ValueError, match="2D landmarks"):
        fit_weak_perspective(POINTS_MM[:10, :2], POINTS_MM)


def test_crop_frame_projection_matches_scan_frame() -> None:
    """Points of the network's unit-sphere frame project where their scan points do."""
    camera = _true_camera()
    transform = crop_frame_transform(POINTS_MM, 40.0)
    unit_points = apply_transform(transform, POINTS_MM) / 100.0
    np.testing.assert_allclose(camera.project_crop_frame(unit_points, transform, 100.0),
                               camera.project(POINTS_MM), atol=1e-9)
    matrix = camera.matrix_for_crop_frame(transform, 100.0)
    assert matrix.shape == (2, 4)


def test_camera_json_round_trip_and_errors(tmp_path: Path) -> None:
    camera, errors = fit_weak_perspective(_true_camera().project(POINTS_MM), POINTS_MM)
    path = tmp_path / "camera.json"
    io.write_json(path, camera_record(camera, errors))
    loaded = load_camera(path)
    assert loaded.scale_px_per_mm == camera.scale_px_per_mm
    np.testing.assert_array_equal(loaded.rotation, camera.rotation)
    np.testing.assert_array_equal(loaded.translation_px, camera.translation_px)
    record = json.loads(path.read_text())
    assert set(record["reprojection_error_px"]) == {"median", "mean", "max", "per_landmark"}
    record["rotation"][0][0] += 0.1
    io.write_json(path, record)
    with pytest.raises(io.InputError, match="rotation"):
        load_camera(path)
    io.write_json(path, {"scale_px_per_mm": 1.0})
    with pytest.raises(io.InputError, match=str(path)):
        load_camera(path)


def test_pinhole_projection_conventions() -> None:
    camera = portrait_camera(POINTS_MM, 512)
    centre = camera.centre_mm
    assert centre[2] > POINTS_MM[:, 2].max()
    np.testing.assert_allclose(camera.viewing_direction, [0.0, 0.0, -1.0])
    on_axis = centre - np.array([0.0, 0.0, 500.0])
    np.testing.assert_allclose(camera.project(on_axis[None]), [[255.5, 255.5]])
    up_right = camera.project(np.array([on_axis + [10.0, 10.0, 0.0]]))[0]
    assert up_right[0] > 255.5 and up_right[1] < 255.5  # +x right, +y up in the image
    with pytest.raises(ValueError, match="behind"):
        camera.project(np.array([centre + [0.0, 0.0, 10.0]]))


# ------------------------------------------------------------------------------------
# FaceScape params.json


def _view_camera(yaw_deg: float) -> PinholeCamera:
    """A camera 1 m from the origin, turned ``yaw_deg`` about +y, looking at the origin."""
    turn = Rotation.from_euler("y", yaw_deg, degrees=True).as_matrix()
    rotation = FRONTAL_ROTATION @ turn.T
    centre = turn @ np.array([0.0, 0.0, 1000.0])
    intrinsics = np.array([[2000.0, 0.0, 300.0], [0.0, 2000.0, 200.0], [0.0, 0.0, 1.0]])
    return PinholeCamera(intrinsics, np.hstack([rotation, (-rotation @ centre)[:, None]]), 600, 400)


def _write_views(folder: Path, yaws: dict[str, float]) -> None:
    write_params(folder / PARAMS_FILE, {name: _view_camera(yaw) for name, yaw in yaws.items()})
    for name in yaws:
        save_image(folder / f"{name}.jpg", np.full((400, 600, 3), 128, dtype=np.uint8))


def test_params_round_trip(tmp_path: Path) -> None:
    _write_views(tmp_path, {"0": 0.0, "1": 30.0, "10": -45.0})
    views = read_params(tmp_path / PARAMS_FILE)
    assert [v.name for v in views] == ["0", "1", "10"]
    expected = _view_camera(30.0)
    np.testing.assert_allclose(views[1].camera.extrinsics, expected.extrinsics)
    np.testing.assert_allclose(views[1].camera.intrinsics, expected.intrinsics)
    assert (views[1].camera.width_px, views[1].camera.height_px) == (600, 400)
    assert views[1].valid and views[1].image == tmp_path / "1.jpg"
    np.testing.assert_allclose(views[1].camera.viewing_direction,
                               [-np.sin(np.radians(30)), 0.0, -np.cos(np.radians(30))], atol=1e-12)


def test_most_frontal_valid_view_with_an_image(tmp_path: Path) -> None:
    _write_views(tmp_path, {"0": 40.0, "1": 3.0, "2": -12.0, "3": 0.0})
    params = json.loads((tmp_path / PARAMS_FILE).read_text())
    params["1_valid"] = False  # the second most frontal is invalid
    params["3_K"] = np.asarray(params["3_K"]).ravel().tolist()  # flat lists are accepted
    io.write_json(tmp_path / PARAMS_FILE, params)
    (tmp_path / "3.jpg").unlink()  # the most frontal has no image
    assert most_frontal_view(tmp_path).name == "2"


def test_params_errors_name_the_file(tmp_path: Path) -> None:
    _write_views(tmp_path, {"0": 0.0})
    path = tmp_path / PARAMS_FILE
    params = json.loads(path.read_text())
    for change, message in [
        (lambda p: p.pop("0_height"), "0_height"),
        (lambda p: p.update({"0_Rt": [[1, 0, 0, 0]]}), "0_Rt"),
        (lambda p: p.update({"0_Rt": np.diag([2.0, 1.0, 1.0, 1.0])[:3].tolist()}), "rotation"),
        (lambda p: p.update({"0_width": -3}), "0_width"),
        (lambda p: p.update({"0_valid": "yes"}), "0_valid"),
    ]:
        broken = json.loads(json.dumps(params))
        change(broken)
        io.write_json(path, broken)
        with pytest.raises(io.InputError, match=message) as info:
            read_params(path)
        assert str(path) in str(info.value)
    io.write_json(path, {**params, "0_valid": False})
    with pytest.raises(io.InputError, match="no valid view"):
        most_frontal_view(tmp_path)
    with pytest.raises(io.InputError, match="not found"):
        most_frontal_view(tmp_path / "missing")
