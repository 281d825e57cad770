"""FaceScape's bilinear baseline (facerecon.models.bilinear) and the grid registration
behind it (facerecon.geometry.register), on real scans: the synthetic ones (a different
topology per scan) and ICT-FaceKit identities from the packaged compact model (one
topology, cheap to build)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from facerecon import fit_mesh, io, layout, preprocess
from facerecon.config import FaceScapeBilinearConfig, NearestTrainConfig
from facerecon.data import ict
from facerecon.geometry import register
from facerecon.geometry.align import apply_transform
from facerecon.geometry.sdf import signed_distance
from facerecon.models import MESH_METHODS, bilinear
from facerecon.models.mesh_inputs import MeshFitInputs, MeshScan

RADIUS_MM = 100.0
SUBJECTS, EXPRESSIONS, HELD_OUT = (1, 2, 3), (1, 2, 3), 12  # neutral, smile, mouth_stretch
CFG = FaceScapeBilinearConfig(grid_spacing_mm=2.0, dense_vertices=3000, target_samples=20_000)


@pytest.fixture(scope="module")
def ict_raw() -> dict[tuple[int, int], tuple[trimesh.Trimesh, np.ndarray]]:
    """ICT identities 1-3 in expressions 1, 2, 3 and the held-out 12: (mesh, landmarks), mm,
    scan frame, one topology."""
    model = ict.load_model()
    surface = ict.ScanSurface.of(model)
    out = {}
    for subject in SUBJECTS:
        identity = ict.identity_vertices_cm(model, surface, 0, subject)
        for expression in (*EXPRESSIONS, HELD_OUT):
            out[subject, expression] = ict.make_scan(model, surface, identity, expression)
    return out


def crop_frame_scan(mesh: trimesh.Trimesh, landmarks_mm: np.ndarray, name: str) -> MeshScan:
    """The preprocessed sheet of a scan (crop frame, mm) with its landmarks."""
    result = preprocess.preprocess_scan(np.asarray(mesh.vertices), np.asarray(mesh.faces),
                                        landmarks_mm)
    return MeshScan(name, trimesh.Trimesh(result.vertices_mm, result.faces, process=False),
                    result.landmarks_mm)


@pytest.fixture(scope="module")
def ict_scans(ict_raw) -> dict[tuple[int, int], MeshScan]:
    return {key: crop_frame_scan(mesh, lm, f"{key[0]}/{layout.scan_name(key[1])}")
            for key, (mesh, lm) in ict_raw.items()}


@pytest.fixture(scope="module")
def ict_model(ict_scans) -> bilinear.BilinearModel:
    train = [ict_scans[s, e] for s in SUBJECTS for e in EXPRESSIONS]
    return bilinear.build_model(train, CFG, RADIUS_MM)


def sheet_distance_mm(vertices: np.ndarray, sheet: trimesh.Trimesh) -> np.ndarray:
    """Unsigned exact distance (mm) of points to a sheet."""
    return np.abs(signed_distance(np.asarray(sheet.vertices), np.asarray(sheet.faces), vertices))


def test_registration_gives_every_scan_one_topology_on_its_sheet(synthetic_root: Path) -> None:
    scans = []
    for subject in (1, 2):
        for expression in (1, 5):
            obj = layout.scan_path(synthetic_root, subject, expression)
            mesh = io.load_mesh(obj)
            scans.append(crop_frame_scan(mesh, io.load_landmarks(
                obj.with_suffix(".landmarks.txt")), obj.stem))
    assert len({len(scan.sheet.vertices) for scan in scans}) == 4  # four topologies
    reference = np.mean([scan.landmarks_mm for scan in scans], axis=0)
    template = register.grid_template(reference[:, :2], RADIUS_MM, 2.0)
    ids, corners, weights = register.landmark_barycentrics(template)
    assert np.array_equal(ids, np.arange(68))
    assert np.allclose((template.xy_mm[corners] * weights[..., None]).sum(1), reference[:, :2])
    for scan in scans:
        registered = register.register_scan(template, scan.sheet, scan.landmarks_mm, 1e-3)
        assert registered.shape == (len(template.xy_mm), 3)
        hit = ~np.isnan(registered[:, 2])
        assert 0.6 < hit.mean() < 1.0  # the face and the skirt, not the disk's corners
        assert sheet_distance_mm(registered[hit], scan.sheet).max() < 1e-3
        # the warp carries the reference landmarks onto the scan's (x, y) (up to its bending
        # within a 2 mm triangle, most where closed lips pull two landmarks together)
        blended = (registered[corners, :2] * weights[..., None]).sum(1)
        error = np.abs(blended - scan.landmarks_mm[:, :2])
        assert np.median(error) < 0.01 and error.max() < 0.5
        filled = register.fill_misses(template, registered)
        assert not np.isnan(filled).any() and np.array_equal(filled[hit], registered[hit])
        # a miss takes the depth of the nearest hit; most lie past the crop sphere's rim
        assert np.median(np.linalg.norm(filled[~hit], axis=1)) > RADIUS_MM


def test_hosvd_reproduces_every_training_scan_at_full_rank(ict_raw) -> None:
    data = np.stack([[np.asarray(ict_raw[s, e][0].vertices) for e in EXPRESSIONS]
                     for s in SUBJECTS])  # (3, 3, V, 3), one topology
    mean, core, u_id, u_exp = bilinear.hosvd(data, 50, 52)
    assert core.shape[2:] == (3, 3) and u_id.shape == (3, 3)  # ranks capped at 3 and 3
    rebuilt = mean + np.einsum("vcrs,ir,es->ievc", core, u_id, u_exp)
    assert np.abs(rebuilt - data).max() < 1e-6
    errors = []
    for id_rank in (1, 2, 3):
        mean, core, u_id, u_exp = bilinear.hosvd(data, id_rank, 3)
        rebuilt = mean + np.einsum("vcrs,ir,es->ievc", core, u_id, u_exp)
        errors.append(np.abs(rebuilt - data).max())
    assert errors[0] > errors[1] > 1e3 * errors[2]


def test_fit_of_a_moved_training_scan_follows_the_motion(ict_model, ict_scans) -> None:
    """Fitting commutes with a rigid motion of the target (pose found, not assumed), and a
    training scan is fitted to well under a millimetre."""
    assert ict_model.ranks == (3, 3)
    scan = ict_scans[2, 2]
    landmarks = bilinear.landmarks_on_sheet(scan.sheet, scan.landmarks_mm)
    ball_mm = 2 * RADIUS_MM  # matches every vertex in both fits (the moved rim is off the crop)
    still = bilinear.fit(ict_model, scan.sheet, landmarks, CFG, ball_mm)
    motion = np.eye(4)
    motion[:3, :3] = Rotation.from_euler("xyz", [4.0, -3.0, 2.0], degrees=True).as_matrix()
    motion[:3, 3] = [2.0, -1.5, 1.0]
    moved = trimesh.Trimesh(apply_transform(motion, scan.sheet.vertices), scan.sheet.faces,
                            process=False)
    result = bilinear.fit(ict_model, moved, apply_transform(motion, landmarks), CFG, ball_mm)
    relative = result.pose @ np.linalg.inv(motion @ still.pose)
    assert np.degrees(Rotation.from_matrix(relative[:3, :3]).magnitude()) < 0.05
    assert np.abs(result.vertices_mm - apply_transform(motion, still.vertices_mm)).max() < 0.1
    # the residual pose of the fit itself (its alternation converges slowly along the face)
    assert np.degrees(Rotation.from_matrix(still.pose[:3, :3]).magnitude()) < 1.0
    face = np.linalg.norm(still.vertices_mm, axis=1) < 80  # away from the filled rim
    assert np.median(sheet_distance_mm(still.vertices_mm[face], scan.sheet)) < 0.25


def test_fit_of_a_held_out_expression_beats_the_mean_face(ict_model, ict_scans) -> None:
    target = ict_scans[1, HELD_OUT]
    landmarks = bilinear.landmarks_on_sheet(target.sheet, target.landmarks_mm)
    start = bilinear.fit(ict_model, target.sheet, landmarks,
                         FaceScapeBilinearConfig(**{**vars(CFG), "landmark_iterations": 1,
                                                    "dense_iterations": 0,
                                                    "id_regularisation": 1e6,
                                                    "exp_regularisation": 1e6}), RADIUS_MM)
    fitted = bilinear.fit(ict_model, target.sheet, landmarks, CFG, RADIUS_MM)
    face = np.linalg.norm(fitted.vertices_mm, axis=1) < 80
    before = np.mean(sheet_distance_mm(start.vertices_mm[face], target.sheet))
    after = np.mean(sheet_distance_mm(fitted.vertices_mm[face], target.sheet))
    assert after < 0.6 * before
    assert fitted.landmark_rms_mm < start.landmark_rms_mm


def test_full_grid_of_training_scans_is_required(ict_scans) -> None:
    train = [ict_scans[s, e] for s in SUBJECTS for e in EXPRESSIONS if (s, e) != (2, 3)]
    with pytest.raises(io.InputError, match=r"full grid.*2/3_mouth_stretch"):
        bilinear.build_model(train, CFG, RADIUS_MM)


def released_layout(ict_raw, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Write ICT scans in FaceScape's released-model layout: core (3N, expressions,
    identities) whose one-hot products are the scans. Returns the frontal vertices, their
    triangles (full numbering) and the landmark indices."""
    first = ict_raw[SUBJECTS[0], EXPRESSIONS[0]][0]
    core = np.array([[np.asarray(ict_raw[s, e][0].vertices).ravel() for s in SUBJECTS]
                     for e in EXPRESSIONS]).transpose(2, 0, 1)  # (3N, E, I)
    vertices = np.asarray(first.vertices)
    front_faces = np.asarray(first.faces)[(vertices[first.faces][:, :, 2] > 0).all(axis=1)]
    front = np.unique(front_faces)
    landmarks = ict.ScanSurface.of(ict.load_model()).landmarks
    np.savez(path, shape_bm_core=core.astype(np.float32),
             id_mean=np.full(len(SUBJECTS), 1 / len(SUBJECTS)), id_var=np.full(len(SUBJECTS), 0.2),
             lm_list_v16=landmarks, v_indices_front=front,
             fv_indices_front=np.searchsorted(front, front_faces) + 1,  # 1-based, as FaceScape
             vert_num=np.array(len(vertices)),
             sym_dict=np.array({0: 0}, dtype=object))  # pickled, as FaceScape's dictionaries
    return front, front_faces, landmarks


def test_released_model_layout_loads_and_fits(ict_raw, ict_scans, tmp_path: Path) -> None:
    path = tmp_path / "facescape_bm_v1.6_847_50_52_id_front.npz"
    front, front_faces, landmarks = released_layout(ict_raw, path)
    model = bilinear.load_released_model(path)
    assert model.ranks == (3, 3)
    kept = np.union1d(front, landmarks)
    for (s, e), (mesh, lm) in ict_raw.items():
        if e == HELD_OUT:
            continue
        one_hot_id, one_hot_exp = np.eye(3)[SUBJECTS.index(s)], np.eye(3)[EXPRESSIONS.index(e)]
        vertices = model.vertices(one_hot_id, one_hot_exp)
        assert np.abs(vertices - np.asarray(mesh.vertices)[kept]).max() < 1e-3
        assert np.abs(vertices[model.landmark_corners[:, 0]] - lm).max() < 1e-3
    first = np.asarray(ict_raw[1, 1][0].vertices)
    assert np.abs(model.vertices(np.eye(3)[0], np.eye(3)[0])[model.faces]
                  - first[front_faces]).max() < 1e-3  # the frontal triangles, corner by corner
    target = ict_scans[3, 2]  # a combination the file holds, in the crop frame
    cfg = FaceScapeBilinearConfig(**{**vars(CFG), "model_file": str(path)})
    mesh, details = MESH_METHODS["facescape_bilinear"](
        MeshFitInputs(target, [], RADIUS_MM), cfg)
    assert str(path) in details[0]
    face = np.linalg.norm(mesh.vertices, axis=1) < 80
    assert np.median(sheet_distance_mm(np.asarray(mesh.vertices)[face], target.sheet)) < 0.3


@pytest.mark.parametrize("change, message", [
    ({"shape_bm_core": np.zeros((10, 3, 3))}, "shape_bm_core must be"),
    ({"id_var": np.ones(4)}, r"id_var must have shape \(3,\)"),
    ({"lm_list_v16": np.arange(60)}, r"lm_list_v16 must be integer vertex indices of shape "),
    ({"fv_indices_front": np.array([[1, 2, 10**7]])}, "fv_indices_front out of range"),
    ({"v_indices_front": None}, r"missing arrays \['v_indices_front'\]"),
    ({"id_mean": np.array([None, None, None])}, r"not a readable .npz file.* stored as objects"),
])
def test_bad_released_model_file_is_named(ict_raw, tmp_path: Path, change, message) -> None:
    good = tmp_path / "good.npz"
    released_layout(ict_raw, good)
    with np.load(good, allow_pickle=True) as data:
        arrays = {key: data[key] for key in data.files}
    arrays.update({k: v for k, v in change.items() if v is not None})
    for key in [k for k, v in change.items() if v is None]:
        del arrays[key]
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(io.InputError, match=f"{bad}: {message}"):
        bilinear.load_released_model(bad)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(io.InputError, match=str(garbage)):
        bilinear.load_released_model(garbage)


def test_fit_mesh_command_runs_both_mesh_methods(ict_scans, tmp_path: Path) -> None:
    paths = {}
    for (s, e), scan in ict_scans.items():
        folder = tmp_path / str(s)
        folder.mkdir(exist_ok=True)
        paths[s, e] = folder / f"{layout.scan_name(e)}.ply"
        io.save_mesh(scan.sheet, paths[s, e])
        io.save_landmarks(paths[s, e].with_suffix(".landmarks.txt"), scan.landmarks_mm)
    train = [paths[s, e] for s in SUBJECTS for e in EXPRESSIONS]
    target = paths[1, HELD_OUT]
    out = tmp_path / "fit.ply"
    config = ('{"method": "facescape_bilinear", "model": {"name": "facescape_bilinear", '
              '"grid_spacing_mm": 2.0, "dense_vertices": 3000, "target_samples": 20000}}')
    fit_mesh.main(["--config", config, "--target", str(target),
                   "--landmarks", str(target.with_suffix(".landmarks.txt")),
                   "--train", *map(str, train), "--train-landmarks",
                   *[str(p.with_suffix(".landmarks.txt")) for p in train], "--out", str(out)])
    mesh = io.load_mesh(out)
    assert np.linalg.norm(mesh.vertices, axis=1).max() < RADIUS_MM + 1e-4  # clipped (float32)
    assert np.median(sheet_distance_mm(np.asarray(mesh.vertices), ict_scans[1, HELD_OUT].sheet)
                     ) < 1.0
    with pytest.raises(io.InputError, match="landmarks are needed"):
        fit_mesh.main(["--config", config, "--target", str(target), "--train",
                       *map(str, train), "--out", str(out)])
    inputs = MeshFitInputs(ict_scans[1, HELD_OUT], [ict_scans[s, e] for s in SUBJECTS
                                                     for e in EXPRESSIONS], RADIUS_MM)
    nearest, ranking = MESH_METHODS["nearest_train"](inputs, NearestTrainConfig(samples=2000))
    assert nearest is dict((scan.name, scan.sheet) for scan in inputs.train)[ranking[0].name]
