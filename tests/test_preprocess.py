"""Preprocessing to the ImFace protocol: alignment, sphere crop, pseudo-watertight sheet,
the two CLIs and their error paths, on real (generated) head meshes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.spatial import ConvexHull
from scipy.spatial.transform import Rotation
from skimage import measure

from facerecon import io, preprocess, sample
from facerecon.geometry.align import NOSE_TIP, apply_transform, crop_frame_transform, rigid_fit
from facerecon.geometry.crop import crop_to_sphere
from facerecon.geometry.sdf import MeshSDF, signed_distance
from facerecon.geometry.topology import boundary_loops, triangle_cross
from facerecon.geometry.watertight import hidden_vertices, into_ball, pseudo_watertight

RADIUS_MM = 100.0
OFFSET_MM = 40.0
MOUTH_MM = np.array([0.0, -48.0, 75.0])  # centre of the mouth slit, scan frame
NOSTRILS_MM = np.array([[-6.3, -30.0, 84.6], [6.3, -30.0, 84.6]])


# ------------------------------------------------------------------------------------
# A head-like test scan (mm, face towards +z): an ellipsoid skull with a nose, a neck,
# a mouth slit opening into a larger cavity, two nostril channels going up into the
# nose and two eye sockets. Its silhouette at the temples lies inside the crop sphere.


def _ellipsoid(p, centre, radii):
    return (np.linalg.norm((p - centre) / radii, axis=-1) - 1.0) * min(radii)


def _ball(p, centre, radius):
    return np.linalg.norm(p - centre, axis=-1) - radius


def _box(p, centre, half):
    q = np.abs(p - centre) - half
    return np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(axis=-1), 0)


def _cylinder_y(p, centre, radius, y_low, y_high):
    d = np.linalg.norm((p - centre)[..., [0, 2]], axis=-1) - radius
    return np.maximum(d, np.maximum(y_low - p[..., 1], p[..., 1] - y_high))


def head_sdf(p: np.ndarray) -> np.ndarray:
    d = _ellipsoid(p, np.array([0.0, 0.0, 0.0]), np.array([78.0, 105.0, 80.0]))
    d = np.minimum(d, _ellipsoid(p, np.array([0.0, -5.0, 78.0]), np.array([13.0, 24.0, 22.0])))
    d = np.minimum(d, _cylinder_y(p, np.array([0.0, 0.0, -5.0]), 48.0, -129.3, -60.0))
    d = np.maximum(d, -_ball(p, np.array([0.0, -48.0, 50.0]), 16.0))  # mouth cavity
    d = np.maximum(d, -_box(p, MOUTH_MM, np.array([20.0, 3.0, 15.0])))  # mouth slit
    for nostril in NOSTRILS_MM:
        d = np.maximum(d, -_cylinder_y(p, nostril, 2.7, -40.0, -18.4))
    for side in (-1.0, 1.0):
        d = np.maximum(d, -_ball(p, np.array([30.0 * side, 25.0, 78.0]), 14.0))  # eye socket
    return d


def head_mesh(spacing_mm: float = 3.0) -> trimesh.Trimesh:
    """Closed, outward-oriented head surface by marching cubes."""
    low, high = np.array([-95.37, -140.21, -95.13]), np.array([95.0, 120.0, 115.0])
    axes = [np.arange(lo, hi + spacing_mm, spacing_mm) for lo, hi in zip(low, high, strict=True)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    verts, faces, _, _ = measure.marching_cubes(head_sdf(grid), 0.0, spacing=(spacing_mm,) * 3)
    return trimesh.Trimesh(verts + low, faces, process=True)


def head_landmarks(mesh: trimesh.Trimesh) -> np.ndarray:
    """68 surface points, the nose tip (front-most vertex) as landmark 30."""
    v = np.asarray(mesh.vertices)
    landmarks = v[np.random.default_rng(7).choice(len(v), io.N_LANDMARKS, replace=False)]
    landmarks[NOSE_TIP] = v[np.argmax(v[:, 2])]
    return landmarks


def open_head_mesh(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """The head with holes like a FaceScape TU mesh: mouth and nostril surfaces cut away."""
    c = mesh.triangles_center
    in_mouth = np.all(np.abs(c - MOUTH_MM) < [20.5, 3.5, 15.5], axis=1) | (
        np.linalg.norm(c - [0.0, -48.0, 50.0], axis=1) < 16.5)
    in_nostril = np.zeros(len(c), dtype=bool)
    for nostril in NOSTRILS_MM:
        in_nostril |= (np.linalg.norm((c - nostril)[:, [0, 2]], axis=1) < 3.2) & (c[:, 1] > -40)
    return trimesh.Trimesh(mesh.vertices, mesh.faces[~(in_mouth | in_nostril)], process=False)


@pytest.fixture(scope="module")
def head() -> trimesh.Trimesh:
    return head_mesh()


def to_crop_frame(mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray]:
    transform = crop_frame_transform(head_landmarks(mesh), OFFSET_MM)
    return crop_to_sphere(apply_transform(transform, mesh.vertices), mesh.faces, RADIUS_MM)


# ------------------------------------------------------------------------------------
# Alignment and crop


def test_translate_puts_sphere_centre_behind_nose_tip(head):
    landmarks = head_landmarks(head)
    transform = crop_frame_transform(landmarks, OFFSET_MM, "translate")
    np.testing.assert_array_equal(transform[:3, :3], np.eye(3))
    nose = apply_transform(transform, landmarks[NOSE_TIP:NOSE_TIP + 1])[0]
    np.testing.assert_allclose(nose, [0.0, 0.0, OFFSET_MM], atol=1e-12)
    # The origin of the crop frame is 40 mm behind the nose tip in the scan frame.
    centre = apply_transform(np.linalg.inv(transform), np.zeros((1, 3)))[0]
    np.testing.assert_allclose(centre, landmarks[NOSE_TIP] - [0, 0, OFFSET_MM], atol=1e-12)


def test_landmark_alignment_recovers_rigid_transform(head):
    template = head_landmarks(head)
    rotation = Rotation.from_euler("xyz", [12.0, -25.0, 7.0], degrees=True).as_matrix()
    shift = np.array([31.0, -12.0, 250.0])
    scan = template @ rotation.T + shift
    fit = rigid_fit(scan, template)
    np.testing.assert_allclose(fit[:3, :3], rotation.T, atol=1e-10)
    np.testing.assert_allclose(apply_transform(fit, scan), template, atol=1e-9)

    transform = crop_frame_transform(scan, OFFSET_MM, "landmarks", template)
    expected = template - (template[NOSE_TIP] - [0.0, 0.0, OFFSET_MM])
    np.testing.assert_allclose(apply_transform(transform, scan), expected, atol=1e-9)


def test_landmark_aligned_scan_gives_the_same_sheet(head):
    """A rotated and shifted copy, aligned on its landmarks, gives the canonical sheet."""
    landmarks = head_landmarks(head)
    canonical = preprocess.preprocess_scan(head.vertices, head.faces, landmarks)
    rotation = Rotation.from_euler("xyz", [-8.0, 20.0, 5.0], degrees=True).as_matrix()
    shift = np.array([-15.0, 40.0, 300.0])
    moved = preprocess.preprocess_scan(
        head.vertices @ rotation.T + shift, head.faces, landmarks @ rotation.T + shift,
        align="landmarks", template_mm=landmarks)
    np.testing.assert_allclose(moved.landmarks_mm, canonical.landmarks_mm, atol=1e-9)
    assert moved.stats["boundary_loops"] == 1
    assert abs(moved.stats["vertices"] - canonical.stats["vertices"]) <= 0.01 * len(
        canonical.vertices_mm)
    distance = np.abs(signed_distance(canonical.vertices_mm, canonical.faces, moved.vertices_mm))
    assert np.percentile(distance, 99) < 1e-6


def test_crop_cuts_exactly_on_the_sphere(head):
    vertices, faces = to_crop_frame(head)
    radii = np.linalg.norm(vertices, axis=1)
    assert radii.max() <= RADIUS_MM * (1 + 1e-12)
    loops = boundary_loops(faces)
    assert loops
    np.testing.assert_allclose(radii[np.concatenate(loops)], RADIUS_MM, rtol=1e-12)
    assert trimesh.Trimesh(vertices, faces, process=False).is_winding_consistent
    # Nothing inside the sphere is lost: the original surface within the sphere lies
    # on the cropped mesh, except between a cut chord and its arc (the sagitta).
    transform = crop_frame_transform(head_landmarks(head), OFFSET_MM)
    points, _ = trimesh.sample.sample_surface(head, 20_000, seed=1)
    points = apply_transform(transform, points)
    radii = np.linalg.norm(points, axis=1)
    sagitta = head.edges_unique_length.max() ** 2 / (8 * RADIUS_MM)
    distance = np.abs(signed_distance(vertices, faces, points[radii < RADIUS_MM]))
    assert distance.max() < sagitta
    assert distance[radii[radii < RADIUS_MM] < RADIUS_MM - sagitta].max() < 1e-9


# ------------------------------------------------------------------------------------
# Pseudo-watertight sheet


def vertical_hits(vertices: np.ndarray, faces: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Number of times the vertical line through each (x, y) crosses the sheet."""
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    origins = np.c_[xy, np.full(len(xy), -2 * RADIUS_MM)]
    _, ray, _ = mesh.ray.intersects_location(origins, np.tile([0.0, 0.0, 1.0], (len(xy), 1)))
    return np.bincount(ray, minlength=len(xy))


def sheet_ahead(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N,) bool: the ray from each point towards +z crosses the sheet."""
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    return mesh.ray.intersects_any(points, np.tile([0.0, 0.0, 1.0], (len(points), 1)))


@pytest.mark.parametrize("kind", ["closed", "open"])
def test_pseudo_watertight_sheet(head, kind):
    mesh = head if kind == "closed" else open_head_mesh(head)
    vertices, faces = to_crop_frame(mesh)
    sheet = pseudo_watertight(vertices, faces, RADIUS_MM)
    v, f = sheet.vertices, sheet.faces
    assert sheet.n_hidden > 50  # mouth cavity, nostril channels, behind the ears

    # One sheet, one boundary loop, on the sphere; nothing outside the sphere.
    loops = boundary_loops(f)
    assert len(loops) == 1
    radii = np.linalg.norm(v, axis=1)
    np.testing.assert_allclose(radii[loops[0]], RADIUS_MM, rtol=1e-12)
    assert radii.max() <= RADIUS_MM * (1 + 1e-12)
    sheet_mesh = trimesh.Trimesh(v, f, process=False)
    assert sheet_mesh.is_winding_consistent
    assert len(sheet_mesh.split(only_watertight=False)) == 1

    # Normals: towards +z on the height field; horizontal and outward on the skirt,
    # which exists because the sphere reaches past the head's silhouette at the sides.
    normals = triangle_cross(v, f)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    skirt = np.abs(normals[:, 2]) < 1e-9
    assert skirt.sum() == sheet.n_skirt_faces > 0
    assert (normals[~skirt, 2] > 0).all()
    top = np.unique(f[~skirt])
    centre_xy = v[top, :2].mean(axis=0)
    outward = v[f[skirt]].mean(axis=1)[:, :2] - centre_xy
    assert (np.einsum("ij,ij->i", normals[skirt, :2], outward) > 0).all()

    # Height field with no overlaps and no holes: the top faces tile the convex hull
    # of their projection exactly once.
    area_xy = 0.5 * normals[~skirt, 2] * np.linalg.norm(triangle_cross(v, f[~skirt]), axis=1)
    assert area_xy.sum() == pytest.approx(ConvexHull(v[top, :2]).volume, rel=1e-9)

    # Nothing left is hidden from the front (the skirt's feet sit under its top edge).
    assert not hidden_vertices(v, f)[top].any()

    # Mouth and nostrils are covered: every vertical line crosses the sheet once.
    transform = crop_frame_transform(head_landmarks(head), OFFSET_MM)
    holes_xy = apply_transform(transform, np.vstack([MOUTH_MM, NOSTRILS_MM]))[:, :2]
    rng = np.random.default_rng(5)
    grid_xy = rng.uniform(-RADIUS_MM, RADIUS_MM, (4000, 2))
    hull = ConvexHull(v[top, :2])
    grid_xy = grid_xy[(grid_xy @ hull.equations[:, :2].T + hull.equations[:, 2]).max(axis=1) < -1]
    np.testing.assert_array_equal(vertical_hits(v, f, np.vstack([holes_xy, grid_xy])), 1)


def test_small_head_gets_skirt_all_round_and_splits_the_ball():
    """A head entirely inside the sphere: its silhouette is extended back to the sphere,
    so space beside the head is in front of the sheet and space behind it is behind."""
    skull = trimesh.creation.icosphere(subdivisions=4, radius=70.0)
    vertices = skull.vertices - [0.0, 0.0, 30.0]  # nose tip (0, 0, 40), 40 mm ahead
    sheet = pseudo_watertight(vertices, skull.faces, RADIUS_MM)
    loops = boundary_loops(sheet.faces)
    assert len(loops) == 1
    np.testing.assert_allclose(np.linalg.norm(sheet.vertices[loops[0]], axis=1), RADIUS_MM,
                               rtol=1e-12)
    sdf = signed_distance(sheet.vertices, sheet.faces, np.array([
        [85.0, 0.0, -30.0], [0.0, 80.0, -20.0], [0.0, 0.0, 60.0],  # beside, above, in front
        [0.0, 0.0, -30.0], [0.0, 0.0, -90.0], [60.0, 0.0, -70.0],  # inside, behind the head
    ]))
    np.testing.assert_array_equal(np.sign(sdf), [1, 1, 1, -1, -1, -1])


# ------------------------------------------------------------------------------------
# Command-line tools


@pytest.fixture(scope="module")
def scan_files(head, tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("scan")
    faces = np.asarray(head.faces)
    # One duplicate face and one degenerate face, which preprocessing must drop.
    faces = np.vstack([faces, faces[:1], [[0, 0, 1]]])
    scan, landmarks = folder / "1_neutral.obj", folder / "1_neutral.landmarks.txt"
    io.save_mesh(trimesh.Trimesh(head.vertices, faces, process=False), scan)
    np.savetxt(landmarks, head_landmarks(head))
    return scan, landmarks


def test_preprocess_and_sample_cli(scan_files, tmp_path):
    scan, landmarks = scan_files
    sheet, crop_landmarks, record = tmp_path / "s.ply", tmp_path / "l.txt", tmp_path / "c.json"
    face = tmp_path / "s.face.ply"
    preprocess.main(["--scan", str(scan), "--landmarks", str(landmarks), "--out-mesh", str(sheet),
                     "--out-face-mesh", str(face), "--out-landmarks", str(crop_landmarks),
                     "--out-transform", str(record)])
    info = json.loads(record.read_text())
    assert info["radius_mm"] == RADIUS_MM and info["offset_mm"] == OFFSET_MM
    assert info["align"] == "translate"
    stats = info["stats"]
    assert stats["boundary_loops"] == 1 and stats["hidden_vertices_removed"] > 0
    assert stats["degenerate_faces_removed"] == 1 and stats["duplicate_faces_removed"] == 1
    # The evaluation ground truth is the sheet without its skirt: the same front faces.
    full, front = io.load_mesh(sheet), io.load_mesh(face)
    assert len(front.faces) == len(full.faces) - stats["skirt_faces"] > 0
    assert front.area == pytest.approx(stats["area_mm2"] - stats["skirt_area_mm2"], rel=1e-9)
    back_facing = front.face_normals[:, 2] <= 0  # only slivers flipped by float32 storage
    assert front.area_faces[back_facing].sum() < 1e-6 * front.area
    transform = np.array(info["transform"])
    np.testing.assert_allclose(io.load_landmarks(crop_landmarks),
                               apply_transform(transform, io.load_landmarks(landmarks)), atol=1e-5)

    outputs = [tmp_path / "a.npz", tmp_path / "b.npz"]
    for out in outputs:
        sample.main(["--mesh", str(sheet), "--landmarks", str(crop_landmarks), "--out", str(out),
                     "--subject", "7", "--expression", "1_neutral", "--surface-points", "20000",
                     "--uniform-points", "3000", "--near-surface-points", "2000", "--seed", "3"])
    assert outputs[0].read_bytes() == outputs[1].read_bytes()  # seeded: identical files
    first = io.load_npz(outputs[0])
    assert set(first) == {"surface_points", "surface_normals", "space_points", "space_sdf",
                          "space_grad", "landmarks", "subject", "expression", "radius_mm"}

    shapes = {"surface_points": (20000, 3), "surface_normals": (20000, 3),
              "space_points": (5000, 3), "space_sdf": (5000,), "space_grad": (5000, 3),
              "landmarks": (68, 3)}
    for key, shape in shapes.items():
        assert first[key].shape == shape and first[key].dtype == np.float32, key
    assert str(first["subject"]) == "7" and str(first["expression"]) == "1_neutral"
    assert float(first["radius_mm"]) == RADIUS_MM
    assert np.linalg.norm(first["space_points"], axis=1).max() <= 1.0 + 1e-6

    # Units of the radius. Signs: half a millimetre in front of the face is positive,
    # behind it negative; in space, negative exactly where the sheet lies straight
    # ahead (+z), as the sheet closes the back of the unit ball.
    mesh = io.load_mesh(sheet)
    exact = MeshSDF(np.asarray(mesh.vertices) / RADIUS_MM, mesh.faces)
    p, n = first["surface_points"], first["surface_normals"]
    assert np.abs(exact.query(p).sdf).max() < 1e-6
    facing = n[:, 2] > 0.5
    assert (exact.query(p[facing] + 5e-3 * n[facing]).sdf > 0).all()
    assert (exact.query(p[facing] - 5e-3 * n[facing]).sdf < 0).all()
    space, sdf = first["space_points"], first["space_sdf"]
    np.testing.assert_allclose(sdf, exact.query(space).sdf, atol=1e-6)
    clear = np.abs(sdf) > 1e-3
    ahead = sheet_ahead(np.asarray(mesh.vertices) / RADIUS_MM, mesh.faces, space[clear])
    np.testing.assert_array_equal(sdf[clear] < 0, ahead)
    np.testing.assert_allclose(np.linalg.norm(first["space_grad"], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(first["landmarks"], io.load_landmarks(crop_landmarks) / RADIUS_MM,
                               atol=1e-6)


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=120)


def preprocess_args(scan: Path, landmarks: Path, out: Path) -> list[str]:
    return ["--scan", str(scan), "--landmarks", str(landmarks), "--out-mesh", str(out / "s.ply"),
            "--out-face-mesh", str(out / "s.face.ply"), "--out-landmarks", str(out / "l.txt"),
            "--out-transform", str(out / "c.json")]


def test_preprocess_cli_rejects_nan_vertices(scan_files, tmp_path):
    scan, landmarks = scan_files
    lines = scan.read_text().splitlines()
    first_vertex = next(i for i, line in enumerate(lines) if line.startswith("v "))
    lines[first_vertex] = "v nan 0.0 0.0"
    bad = tmp_path / "nan.obj"
    bad.write_text("\n".join(lines) + "\n")
    result = run_module("facerecon.preprocess", *preprocess_args(bad, landmarks, tmp_path))
    assert result.returncode == 2
    assert str(bad) in result.stderr and "NaN" in result.stderr
    assert not (tmp_path / "s.ply").exists()


def test_preprocess_cli_rejects_wrong_landmark_count(scan_files, tmp_path):
    scan, landmarks = scan_files
    bad = tmp_path / "67.landmarks.txt"
    np.savetxt(bad, np.loadtxt(landmarks)[:67])
    result = run_module("facerecon.preprocess", *preprocess_args(scan, bad, tmp_path))
    assert result.returncode == 2
    assert str(bad) in result.stderr and "68" in result.stderr


def test_preprocess_cli_rejects_scan_outside_sphere(scan_files, tmp_path):
    scan, landmarks = scan_files
    far = tmp_path / "far.obj"
    mesh = io.load_mesh(scan)
    io.save_mesh(trimesh.Trimesh(mesh.vertices + [0.0, 0.0, 1000.0], mesh.faces, process=False),
                 far)
    result = run_module("facerecon.preprocess", *preprocess_args(far, landmarks, tmp_path))
    assert result.returncode == 2
    assert str(far) in result.stderr and "sphere" in result.stderr


def test_mesh_to_sdf_is_imported_only_for_its_backend():
    code = ("import sys, facerecon.sample; "
            "print('mesh_to_sdf' in sys.modules, 'pyrender' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.split() == ["False", "False"], result.stderr


def test_mesh_to_sdf_backend_roughly_agrees_with_exact(scan_files):
    """The comparison backend runs on a sheet and lands within its sampling error."""
    scan, landmarks = scan_files
    mesh = io.load_mesh(scan)
    result = preprocess.preprocess_scan(np.asarray(mesh.vertices), np.asarray(mesh.faces),
                                        io.load_landmarks(landmarks))
    vertices = result.vertices_mm / RADIUS_MM
    points = sample.sample_unit_ball(2000, np.random.default_rng(0))
    try:
        sdf, grad = sample.mesh_to_sdf_query(vertices, result.faces, points,
                                             np.random.default_rng(0), surface_points=300_000)
    except ImportError as exc:  # no headless OpenGL for pyrender on this machine
        pytest.skip(f"mesh-to-sdf cannot be imported: {exc}")
    exact = MeshSDF(vertices, result.faces).query(points).sdf
    assert np.median(np.abs(np.abs(sdf) - np.abs(exact))) < 5e-3
    assert np.mean(np.sign(sdf) == np.sign(exact)) > 0.95
    np.testing.assert_allclose(np.linalg.norm(grad, axis=1), 1.0, atol=1e-5)


def test_sample_cli_rejects_a_mesh_outside_the_crop_sphere(scan_files, tmp_path):
    """A raw scan (not a preprocessed sheet) reaches past the unit sphere."""
    scan, landmarks = scan_files
    with pytest.raises(io.InputError, match=str(scan)):
        sample.main(["--mesh", str(scan), "--landmarks", str(landmarks),
                     "--out", str(tmp_path / "x.npz"), "--subject", "1", "--expression", "e"])
    assert not (tmp_path / "x.npz").exists()


def test_ict_scan_with_open_mouth_gets_one_sheet_covering_the_mouth(tmp_path):
    """Real face data: an ICT-FaceKit identity with mouth_stretch (jaw open, mouth socket)."""
    from facerecon.data import ict

    model_path = Path(__file__).resolve().parents[2] / "shared/ict-facekit/ict_facekit.npz"
    model = ict.load_model(model_path)
    (obj,) = ict.build_subject(model, tmp_path, 1, 0, [3])
    mesh = io.load_mesh(obj)
    landmarks = io.load_landmarks(obj.with_suffix(".landmarks.txt"))
    result = preprocess.preprocess_scan(np.asarray(mesh.vertices), np.asarray(mesh.faces),
                                        landmarks, radius_mm=RADIUS_MM, offset_mm=OFFSET_MM)
    v, f = result.vertices_mm, result.faces
    assert result.stats["hidden_vertices_removed"] > 100  # the mouth socket, at least
    loops = boundary_loops(f)
    assert len(loops) == 1
    np.testing.assert_allclose(np.linalg.norm(v[loops[0]], axis=1), RADIUS_MM, rtol=1e-9)
    normals = triangle_cross(v, f)
    top = np.unique(f[normals[:, 2] > 1e-9 * np.linalg.norm(normals, axis=1)])
    assert not hidden_vertices(v, f)[top].any()
    # the opening between the inner lips (landmarks 62 above, 66 below) is bridged once
    lips = result.landmarks_mm[[62, 66]]
    assert lips[0, 1] - lips[1, 1] > 15.0  # the mouth really is open
    across = np.linspace(lips[0], lips[1], 7)[1:-1, :2]
    np.testing.assert_array_equal(vertical_hits(v, f, across), 1)
    # ... where the scan itself has the mouth socket behind the opening
    raw = trimesh.Trimesh(apply_transform(result.transform, mesh.vertices), mesh.faces)
    assert (vertical_hits(raw.vertices, raw.faces, across) >= 2).all()


def test_preprocess_cli_names_a_missing_landmark_file(scan_files, tmp_path):
    scan, _ = scan_files
    missing = tmp_path / "absent.landmarks.txt"
    result = run_module("facerecon.preprocess", *preprocess_args(scan, missing, tmp_path))
    assert result.returncode == 2
    assert str(missing) in result.stderr and "not found" in result.stderr


def test_non_manifold_edges_still_give_one_sheet(head, tmp_path):
    """Fins sharing an edge with the face (three faces on one edge) are scanner debris:
    the sheet is rebuilt from what is visible, so one oriented sheet still comes out."""
    vertices, faces = np.asarray(head.vertices), np.asarray(head.faces)
    front = np.argsort(vertices[:, 2])[-200:]  # vertices near the nose tip
    fins = [f for f in faces if np.isin(f, front).sum() == 3][:10]
    extra = [len(vertices) + i for i in range(len(fins))]
    apex = np.array([vertices[f].mean(axis=0) + [0.0, 0.0, 2.0] for f in fins])
    fin_faces = [[f[0], f[1], e] for f, e in zip(fins, extra, strict=True)]
    mesh = trimesh.Trimesh(np.vstack([vertices, apex]), np.vstack([faces, fin_faces]),
                           process=False)
    edges = np.sort(mesh.edges, axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts > 2).any()  # really non-manifold
    result = preprocess.preprocess_scan(np.asarray(mesh.vertices), np.asarray(mesh.faces),
                                        head_landmarks(head))
    assert result.stats["boundary_loops"] == 1
    sheet = trimesh.Trimesh(result.vertices_mm, result.faces, process=False)
    assert sheet.is_winding_consistent and len(sheet.split(only_watertight=False)) == 1


def test_fill_heights_outside_the_ball_are_brought_onto_it() -> None:
    """A harmonic fill point near the rim with the chin's height (default run, synthetic
    7/3_mouth_stretch: 101.2 mm from the centre) is moved in z onto the sphere; points
    inside and points not filled stay."""
    vertices = np.array([[-32.0, -89.0, -35.5], [0.0, 0.0, 60.0], [-32.0, -89.0, -36.0]])
    moved = np.array([True, True, False])
    out = into_ball(vertices, moved, 100.0)
    assert np.linalg.norm(out[0]) == pytest.approx(100.0)
    np.testing.assert_array_equal(out[0, :2], vertices[0, :2])
    np.testing.assert_array_equal(out[1:], vertices[1:])
