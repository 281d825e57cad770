"""Tests for facerecon.evaluate on meshes with known answers.

Spheres have closed-form metrics: the exact point-to-surface Chamfer between
concentric spheres of radii r and r + d is d, and the protocol (sample-to-
sample) Chamfer follows from the nearest-neighbour distance in a Poisson
point process (see :func:`expected_sample_chamfer_mm`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation
from scipy.special import erfcx

from facerecon.evaluate import (
    ICP_SUBSAMPLE,
    chamfer_fscore,
    evaluate_meshes,
    parse_args,
    reference_icp,
    rigid_icp,
)
from facerecon.geometry.align import apply_transform, rigid_fit
from facerecon.geometry.surface import sample_surface

REPO_ROOT = Path(__file__).resolve().parents[1]
RADIUS_MM = 50.0
# Largest gap between a subdivision-5 icosphere of radius 50 mm and the true
# sphere (facet centres lie inside it by ~0.01 mm).
TESSELLATION_MM = 0.02
REQUIRED_KEYS = {
    "chamfer_mm", "fscore", "precision", "recall", "chamfer_p2s_mm",
    "n_samples", "icp_iterations", "icp_transform",
}


def sphere(radius_mm: float, subdivisions: int = 5) -> trimesh.Trimesh:
    """Icosphere of the given radius centred at the origin."""
    return trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius_mm)


def expected_sample_chamfer_mm(radius_mm: float, gap_mm: float, samples: int) -> float:
    """Expected protocol Chamfer between spheres of radii r and r + d, N samples each.

    Samples are uniform on each sphere, N / (4 pi) per steradian. A point on one
    sphere whose nearest sample on the other lies at angle theta is at distance
    sqrt(d^2 + r (r + d) theta^2) (small theta), and P(theta > t) = exp(-N t^2 / 4).
    With a = N / (4 r (r + d)): E[distance] = d + sqrt(pi / a) / 2 * erfcx(d sqrt(a)),
    the same both ways. For d = 0 this is the floor sqrt(pi) r / sqrt(N)
    (0.28 mm for r = 50 mm and N = 100,000, as measured in PROTOCOL.md).
    """
    a = samples / (4.0 * radius_mm * (radius_mm + gap_mm))
    return gap_mm + 0.5 * np.sqrt(np.pi / a) * erfcx(gap_mm * np.sqrt(a))


def rotation_angle_deg(transform: np.ndarray) -> float:
    """Rotation angle of a (4, 4) rigid transform, in degrees."""
    cosine = (np.trace(transform[:3, :3]) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def applied_motion(degrees: float, shift_mm: tuple[float, float, float]) -> np.ndarray:
    """(4, 4) rotation by ``degrees`` about an oblique axis, then a shift in mm."""
    motion = np.eye(4)
    axis = np.array([1.0, 2.0, 3.0]) / np.sqrt(14.0)
    motion[:3, :3] = Rotation.from_rotvec(np.radians(degrees) * axis).as_matrix()
    motion[:3, 3] = shift_mm
    return motion


@pytest.fixture(scope="module")
def gt_sphere() -> trimesh.Trimesh:
    return sphere(RADIUS_MM)


# --- pure helpers ---------------------------------------------------------------------


def test_sample_surface_is_on_the_mesh_and_area_uniform() -> None:
    # A 2 x 1 x 1 box: the two 2 x 1 faces normal to y hold 2 / 10 of the area.
    box = trimesh.creation.box(extents=(2.0, 1.0, 1.0))
    points, _ = sample_surface(box.vertices, box.faces, 50_000, np.random.default_rng(0))
    assert points.shape == (50_000, 3)
    on_face = np.isclose(np.abs(points), [1.0, 0.5, 0.5]).any(axis=1)
    assert on_face.all()
    share_on_y_faces = np.isclose(np.abs(points[:, 1]), 0.5).mean()
    assert share_on_y_faces == pytest.approx(0.4, abs=0.01)


def test_sample_surface_rejects_zero_area() -> None:
    flat = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [2, 0, 0]], [[0, 1, 2]], process=False)
    with pytest.raises(ValueError, match="zero surface area"):
        sample_surface(flat.vertices, flat.faces, 10, np.random.default_rng(0))


def test_rigid_fit_recovers_an_exact_rigid_motion() -> None:
    points = np.random.default_rng(1).normal(size=(100, 3))
    motion = applied_motion(30.0, (5.0, -2.0, 1.0))
    fitted = rigid_fit(points, apply_transform(motion, points))
    np.testing.assert_allclose(fitted, motion, atol=1e-12)


def test_chamfer_fscore_on_hand_made_points() -> None:
    gt = np.array([[0.0, 0, 0], [10.0, 0, 0]])
    pred = np.array([[0.5, 0, 0], [0.0, 3.0, 0]])  # 0.5 mm and 3 mm from gt[0]
    metrics = chamfer_fscore(pred, gt, threshold_mm=1.0)
    assert metrics["pred_to_gt_mm"] == pytest.approx((0.5 + 3.0) / 2)
    assert metrics["gt_to_pred_mm"] == pytest.approx((0.5 + 9.5) / 2)
    assert metrics["chamfer_mm"] == pytest.approx((1.75 + 5.0) / 2)
    assert metrics["precision"] == pytest.approx(50.0)
    assert metrics["recall"] == pytest.approx(50.0)
    assert metrics["fscore"] == pytest.approx(50.0)
    far = chamfer_fscore(pred + 100.0, gt, threshold_mm=1.0)
    assert far["precision"] == far["recall"] == far["fscore"] == 0.0


# --- analytic cases on spheres --------------------------------------------------------


@pytest.mark.parametrize(("gap_mm", "expected_fscore"), [(0.0, 100.0), (0.3, 100.0), (2.0, 0.0)])
def test_concentric_spheres_match_closed_form(
    gt_sphere: trimesh.Trimesh, gap_mm: float, expected_fscore: float
) -> None:
    samples = 150_000
    metrics = evaluate_meshes(sphere(RADIUS_MM + gap_mm), gt_sphere, samples=samples)
    assert metrics["chamfer_p2s_mm"] == pytest.approx(gap_mm, abs=TESSELLATION_MM)
    # The sample mean of ~150k nearest-neighbour distances is far more precise
    # than this; the tolerance covers facets and the ICP wobble on a sphere.
    expected = expected_sample_chamfer_mm(RADIUS_MM, gap_mm, samples)
    assert metrics["chamfer_mm"] == pytest.approx(expected, rel=0.02, abs=TESSELLATION_MM / 2)
    if gap_mm == 0.0:
        assert metrics["chamfer_mm"] > 0.2  # the sampling floor, not zero
    # At 1 mm: every point is matched for d = 0.3 mm (and for d = 0, since the
    # 150k-sample spacing is well under 1 mm), none for d = 2 mm.
    for key in ("fscore", "precision", "recall"):
        assert metrics[key] == pytest.approx(expected_fscore, abs=0.1)


def test_sampling_floor_shrinks_as_one_over_sqrt_samples(gt_sphere: trimesh.Trimesh) -> None:
    coarse = evaluate_meshes(gt_sphere, gt_sphere, samples=20_000)["chamfer_mm"]
    fine = evaluate_meshes(gt_sphere, gt_sphere, samples=80_000)["chamfer_mm"]
    assert coarse == pytest.approx(expected_sample_chamfer_mm(RADIUS_MM, 0.0, 20_000), rel=0.02)
    assert coarse / fine == pytest.approx(2.0, rel=0.03)


def test_hemisphere_against_sphere_is_precise_but_half_complete(
    gt_sphere: trimesh.Trimesh,
) -> None:
    threshold_mm = 1.0
    hemisphere = gt_sphere.submesh([np.flatnonzero(gt_sphere.triangles_center[:, 2] > 0)],
                                   append=True)
    # Recall: the hemisphere's share of the area, plus the gt band within
    # threshold_mm beyond the rim (2 pi r t / (4 pi r^2) of the sphere).
    expected_recall = 100.0 * (hemisphere.area / gt_sphere.area + threshold_mm / (2 * RADIUS_MM))
    partial = evaluate_meshes(hemisphere, gt_sphere, threshold_mm=threshold_mm)
    assert partial["precision"] > 99.9
    assert partial["recall"] == pytest.approx(expected_recall, abs=1.0)
    assert partial["pred_to_gt_p2s_mm"] < TESSELLATION_MM
    assert partial["gt_to_pred_p2s_mm"] > 10.0
    # Swapping the roles swaps precision and recall. Without ICP: plain ICP
    # (as in the protocol) drags a pred that covers more than the gt towards
    # the gt, so pred and gt must cover the same region.
    swapped = evaluate_meshes(gt_sphere, hemisphere, threshold_mm=threshold_mm, icp="none")
    assert swapped["recall"] > 99.9
    assert swapped["precision"] == pytest.approx(expected_recall, abs=1.0)


# --- ICP ------------------------------------------------------------------------------


def test_rematch_icp_undoes_a_small_rigid_motion() -> None:
    box = trimesh.creation.box(extents=(60.0, 40.0, 30.0))  # no rotational symmetry near I
    motion = applied_motion(5.0, (1.5, -1.0, 1.0))  # 5 degrees, 2.1 mm
    moved = box.copy()
    moved.apply_transform(motion)

    floor = evaluate_meshes(box, box, icp="rematch")["chamfer_mm"]
    aligned = evaluate_meshes(moved, box, icp="rematch")
    unaligned = evaluate_meshes(moved, box, icp="none")

    assert 1 <= aligned["icp_iterations"] <= 20
    residual = np.array(aligned["icp_transform"]) @ motion  # identity if ICP inverted it
    assert rotation_angle_deg(residual) < 0.25
    assert np.linalg.norm(residual[:3, 3]) < 0.05
    assert aligned["chamfer_mm"] == pytest.approx(floor, abs=0.01)
    assert aligned["chamfer_p2s_mm"] < 0.05
    assert unaligned["icp_iterations"] == 0
    assert unaligned["icp_transform"] == np.eye(4).tolist()
    assert unaligned["chamfer_mm"] > 5 * floor
    assert unaligned["chamfer_p2s_mm"] > 1.0


def test_rigid_icp_stops_early_on_aligned_points() -> None:
    box = trimesh.creation.box(extents=(60, 40, 30))
    points, _ = sample_surface(box.vertices, box.faces, 5_000, np.random.default_rng(2))
    transform, iterations = rigid_icp(points, points)
    assert iterations == 1
    np.testing.assert_allclose(transform, np.eye(4), atol=1e-9)


def kabsch(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(4, 4) least-squares rotation + translation mapping paired ``source`` onto ``target``
    (SVD of the cross-covariance, reflection excluded), written apart from rigid_fit."""
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    u, _, vt = np.linalg.svd((source - source_mean).T @ (target - target_mean))
    rotation = vt.T @ u.T
    if np.linalg.det(rotation) < 0:
        vt[2] *= -1
        rotation = vt.T @ u.T
    transform = np.eye(4)
    transform[:3, :3] = rotation
    transform[:3, 3] = target_mean - rotation @ source_mean
    return transform


def imface_icp(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, int]:
    """ImFace's evaluation ICP as its code runs it, in homogeneous coordinates: match each
    source point once to its nearest target point, then ICP (re-matching within that
    matched subset) until the mean error changes by < 0.1 mm, at most 20 iterations; the
    transform is refitted from the start and end points. Returns it and the iterations."""
    matched = target[cKDTree(target).query(source)[1]]
    subset_tree = cKDTree(matched)
    current = np.vstack([source.T, np.ones(len(source))])  # (4, N)
    previous_error, iterations = 0.0, 0
    while iterations < 20:
        iterations += 1
        distances, nearest = subset_tree.query(current[:3].T)
        current = kabsch(current[:3].T, matched[nearest]) @ current
        if abs(previous_error - distances.mean()) < 0.1:
            break
        previous_error = distances.mean()
    return kabsch(source, current[:3].T), iterations


def rematch_icp(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, int]:
    """The re-matching ICP as it was the default: nearest target point over the whole
    target each iteration, until no point moves 1e-4 mm, at most 20 iterations."""
    tree = cKDTree(target)
    transform, current, iterations = np.eye(4), source, 0
    while iterations < 20:
        iterations += 1
        step = kabsch(current, target[tree.query(current)[1]])
        moved = current @ step[:3, :3].T + step[:3, 3]
        transform = step @ transform
        largest_move = np.linalg.norm(moved - current, axis=1).max()
        current = moved
        if largest_move < 1e-4:
            break
    return transform, iterations


@pytest.fixture(scope="module")
def misaligned_box() -> tuple[trimesh.Trimesh, trimesh.Trimesh, np.ndarray]:
    """A 60 x 40 x 30 mm box and a copy moved by 4 degrees and 2.3 mm, with the motion."""
    box = trimesh.creation.box(extents=(60.0, 40.0, 30.0))
    motion = applied_motion(4.0, (2.0, -1.0, 0.5))
    moved = box.copy()
    moved.apply_transform(motion)
    return moved, box, motion


def evaluation_points(pred: trimesh.Trimesh, gt: trimesh.Trimesh, samples: int, seed: int,
                      subsample: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The pred and gt samples that evaluate_meshes draws: every pred sample (what the
    reference ICP takes, as ImFace's code does) or, with ``subsample``, the rematch ICP's
    subsample of them."""
    rng = np.random.default_rng(seed)
    pred_points = sample_surface(pred.vertices, pred.faces, samples, rng)[0]
    gt_points = sample_surface(gt.vertices, gt.faces, samples, rng)[0]
    if subsample:
        pred_points = pred_points[rng.choice(samples, size=min(samples, ICP_SUBSAMPLE),
                                             replace=False)]
    return pred_points, gt_points


def test_reference_icp_matches_an_independent_imface_implementation(
    misaligned_box: tuple[trimesh.Trimesh, trimesh.Trimesh, np.ndarray],
) -> None:
    moved, box, motion = misaligned_box
    source, target = evaluation_points(moved, box, 30_000, 0)
    expected, expected_iterations = imface_icp(source, target)
    assert 2 < expected_iterations < 20  # converged on the error change, not at the cap

    transform, iterations = reference_icp(source, target)
    np.testing.assert_allclose(transform, expected, atol=1e-6)
    assert iterations == expected_iterations

    metrics = evaluate_meshes(moved, box, samples=30_000)  # the default is the reference
    np.testing.assert_allclose(metrics["icp_transform"], expected, atol=1e-6)
    assert metrics["icp_iterations"] == expected_iterations
    # It stops on a coarse criterion against a biased subset: closer, not exact.
    unaligned = evaluate_meshes(moved, box, samples=30_000, icp="none")
    assert metrics["chamfer_mm"] < unaligned["chamfer_mm"]
    assert rotation_angle_deg(np.array(metrics["icp_transform"]) @ motion) < 4.0


def test_rematch_icp_is_unchanged(
    misaligned_box: tuple[trimesh.Trimesh, trimesh.Trimesh, np.ndarray],
) -> None:
    moved, box, _ = misaligned_box
    source, target = evaluation_points(moved, box, 30_000, 0, subsample=True)
    expected, expected_iterations = rematch_icp(source, target)
    metrics = evaluate_meshes(moved, box, samples=30_000, icp="rematch")
    np.testing.assert_allclose(metrics["icp_transform"], expected, atol=1e-6)
    assert metrics["icp_iterations"] == expected_iterations


def test_no_icp_measures_the_points_as_sampled(
    misaligned_box: tuple[trimesh.Trimesh, trimesh.Trimesh, np.ndarray],
) -> None:
    moved, box, _ = misaligned_box
    rng = np.random.default_rng(0)
    pred_points = sample_surface(moved.vertices, moved.faces, 5_000, rng)[0]
    gt_points = sample_surface(box.vertices, box.faces, 5_000, rng)[0]
    metrics = evaluate_meshes(moved, box, samples=5_000, icp="none")
    assert metrics["icp_iterations"] == 0
    assert metrics["icp_transform"] == np.eye(4).tolist()
    assert metrics["chamfer_mm"] == chamfer_fscore(pred_points, gt_points)["chamfer_mm"]


def test_unknown_icp_choice_is_rejected(gt_sphere: trimesh.Trimesh) -> None:
    with pytest.raises(ValueError, match="icp must be 'reference', 'rematch' or 'none'"):
        evaluate_meshes(gt_sphere, gt_sphere, samples=100, icp="true")  # type: ignore[arg-type]


# --- determinism ----------------------------------------------------------------------


def test_same_seed_gives_identical_numbers(gt_sphere: trimesh.Trimesh) -> None:
    pred = sphere(RADIUS_MM + 0.5, subdivisions=4)
    first = evaluate_meshes(pred, gt_sphere, samples=20_000, seed=7)
    assert evaluate_meshes(pred, gt_sphere, samples=20_000, seed=7) == first
    other = evaluate_meshes(pred, gt_sphere, samples=20_000, seed=8)
    assert other["chamfer_mm"] != first["chamfer_mm"]
    assert other["chamfer_mm"] == pytest.approx(first["chamfer_mm"], rel=0.02)


# --- command line ---------------------------------------------------------------------


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m facerecon.evaluate`` from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "facerecon.evaluate", *map(str, args)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture(scope="module")
def mesh_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A pred (OBJ) and gt (PLY) pair of spheres, 0.5 mm apart."""
    folder = tmp_path_factory.mktemp("meshes")
    pred, gt = folder / "pred.obj", folder / "gt.ply"
    sphere(RADIUS_MM + 0.5, subdivisions=4).export(pred)
    sphere(RADIUS_MM, subdivisions=4).export(gt)
    return pred, gt


def test_cli_prints_json_and_writes_the_same_file(
    mesh_files: tuple[Path, Path], tmp_path: Path
) -> None:
    pred, gt = mesh_files
    out = tmp_path / "sub" / "metrics.json"
    args = ("--pred", pred, "--gt", gt, "--samples", "20000", "--seed", "3")
    result = run_cli(*args, "--out", out)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert REQUIRED_KEYS <= metrics.keys()
    assert metrics["n_samples"] == 20_000
    assert np.array(metrics["icp_transform"]).shape == (4, 4)
    assert metrics["chamfer_p2s_mm"] == pytest.approx(0.5, abs=TESSELLATION_MM * 4)
    assert json.loads(out.read_text()) == metrics
    # Same seed, same bytes.
    assert run_cli(*args).stdout == result.stdout


def test_cli_no_icp(mesh_files: tuple[Path, Path]) -> None:
    pred, gt = mesh_files
    result = run_cli("--pred", pred, "--gt", gt, "--samples", "5000", "--icp", "none")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["icp_iterations"] == 0
    assert metrics["icp_transform"] == np.eye(4).tolist()


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("missing.obj", None, "not found"),
        ("nan.obj", "v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "NaN"),
        ("empty.obj", "", "empty mesh"),
        ("flat.obj", "v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n", "zero surface area"),
        ("garbage.ply", "ply\nnot really a ply file\n", "cannot read mesh"),
    ],
)
def test_cli_bad_mesh_exits_2_naming_the_file(
    mesh_files: tuple[Path, Path], tmp_path: Path, name: str, content: str | None, problem: str
) -> None:
    bad = tmp_path / name
    if content is not None:
        bad.write_text(content)
    result = run_cli("--pred", bad, "--gt", mesh_files[1], "--samples", "1000")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {bad}: ")
    assert problem in lines[0]


@pytest.mark.parametrize(
    "option", [("--samples", "0"), ("--samples", "-5"), ("--samples", "1.5"),
               ("--threshold-mm", "0"), ("--threshold-mm", "-1"), ("--threshold-mm", "nan"),
               ("--seed", "-1")]
)
def test_bad_options_are_argparse_errors(
    capsys: pytest.CaptureFixture[str], option: tuple[str, str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--pred", "p.obj", "--gt", "g.ply", *option])
    assert exit_info.value.code == 2
    assert f"argument {option[0]}" in capsys.readouterr().err


def test_cli_bad_option_exits_2_without_traceback(mesh_files: tuple[Path, Path]) -> None:
    pred, gt = mesh_files
    result = run_cli("--pred", pred, "--gt", gt, "--samples", "0")
    assert result.returncode == 2
    assert "argument --samples" in result.stderr
    assert "Traceback" not in result.stderr


def grid_plane(size_mm: float, z_mm: float, n: int = 41) -> trimesh.Trimesh:
    """A square n x n vertex grid of side ``size_mm`` at height ``z_mm``, facing +z."""
    xs = np.linspace(-size_mm / 2, size_mm / 2, n)
    x, y = np.meshgrid(xs, xs)
    vertices = np.stack([x.ravel(), y.ravel(), np.full(x.size, z_mm)], 1)
    i = np.arange(n * n).reshape(n, n)[:-1, :-1].ravel()
    faces = np.concatenate([np.stack([i, i + 1, i + n + 1], 1), np.stack([i, i + n + 1, i + n], 1)])
    return trimesh.Trimesh(vertices, faces, process=False)


def test_the_reconstructions_skirt_is_not_scored_and_its_face_all_is() -> None:
    """A face (100 mm square) and its sheet (+ a 30 mm wall down from one edge, like the
    skirt): the sheet scored against the face with the sheet given is the face against
    itself (the wall's 23 % of samples left out), without it the wall counts."""
    face = grid_plane(100.0, 0.0)
    wall = trimesh.Trimesh([[-50, -50, 0], [50, -50, 0], [50, -50, -30], [-50, -50, -30]],
                           [[0, 2, 1], [0, 3, 2]], process=False)
    sheet = trimesh.util.concatenate([face, wall])
    scored = evaluate_meshes(sheet, face, samples=20_000, sheet=sheet)
    itself = evaluate_meshes(face, face, samples=20_000, sheet=sheet)
    unscored = evaluate_meshes(sheet, face, samples=20_000)
    assert abs(scored["pred_samples_scored"] / 20_000 - 100 / 130) < 0.02
    assert itself["pred_samples_scored"] == 20_000
    assert scored["chamfer_mm"] < 1.1 * itself["chamfer_mm"]
    assert unscored["chamfer_mm"] > 3 * scored["chamfer_mm"]
    # a wrong face still counts in full: the face 2 mm too high, with its wall
    high = trimesh.util.concatenate([grid_plane(100.0, 2.0), wall])
    lifted = evaluate_meshes(high, face, samples=20_000, sheet=sheet, icp="none")
    assert lifted["pred_samples_scored"] > 0.7 * 20_000
    assert 1.9 < lifted["pred_to_gt_mm"] < 2.1
