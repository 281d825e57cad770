"""Tests of the procedural synthetic face dataset (facerecon.data.synthetic).

Frame: millimetres, face towards +z, head top towards +y; the subject's left is +x.
Each scan takes about a second, so scans are built once per module.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import trimesh

from facerecon import io, layout
from facerecon.data import synthetic as syn

SEED = 11
NEUTRAL, SMILE, STRETCH, JAW_LEFT, EYE_CLOSED, BROW_RAISER = 1, 2, 3, 5, 18, 19


@pytest.fixture(scope="module")
def subject() -> syn.Subject:
    return syn.make_subject(SEED, 1)


@pytest.fixture(scope="module")
def scans(subject: syn.Subject) -> dict[int, tuple[trimesh.Trimesh, np.ndarray]]:
    return {k: syn.make_scan(subject, k) for k in (NEUTRAL, STRETCH, JAW_LEFT, EYE_CLOSED,
                                                   BROW_RAISER)}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    """Subject 3 built alone with expression 1, and again in another folder with 3 and 1."""
    alone, together = tmp_path_factory.mktemp("alone"), tmp_path_factory.mktemp("together")
    paths = syn.build_subject(alone, 3, SEED, [NEUTRAL])
    syn.build_subject(together, 3, SEED, [STRETCH, NEUTRAL])
    return alone, together, paths


def first_hit(mesh: trimesh.Trimesh, origin, direction) -> np.ndarray:
    """The first intersection of a ray with the mesh."""
    locations, _, _ = mesh.ray.intersects_location([origin], [direction], multiple_hits=True)
    assert len(locations), f"ray from {origin} along {direction} misses the mesh"
    along = (locations - np.asarray(origin)) @ np.asarray(direction, dtype=float)
    return locations[np.argmin(along)]


def test_identity_is_seeded_per_subject_and_varied() -> None:
    a = syn.Identity.sample(np.random.default_rng([SEED, 1]))
    again = syn.Identity.sample(np.random.default_rng([SEED, 1]))
    b = syn.Identity.sample(np.random.default_rng([SEED, 2]))
    assert a == again
    fields = dataclasses.fields(syn.Identity)
    assert len(fields) >= 10
    assert sum(getattr(a, f.name) != getattr(b, f.name) for f in fields) == len(fields)
    for f in fields:  # clipped at two standard deviations
        assert abs(getattr(a, f.name) - f.default) <= 2 * f.metadata["sd"] + 1e-9


def test_expression_table_has_one_row_per_expression() -> None:
    assert sorted(syn.EXPRESSION_TABLE) == sorted(layout.EXPRESSIONS)
    assert syn.EXPRESSION_TABLE[NEUTRAL] == syn.Controls()
    for k, row in syn.EXPRESSION_TABLE.items():
        if k != NEUTRAL:
            assert row != syn.Controls(), layout.EXPRESSIONS[k]


def test_build_writes_facescape_layout_deterministically(built) -> None:
    alone, together, paths = built
    assert paths == [layout.scan_path(alone, 3, NEUTRAL)]
    assert paths[0] == alone / "3" / "models_reg" / "1_neutral.obj"
    for path in (layout.scan_path, layout.landmarks_path):
        first, second = path(alone, 3, NEUTRAL), path(together, 3, NEUTRAL)
        assert first.read_bytes() == second.read_bytes(), first.name
    mesh = io.load_mesh(paths[0])
    landmarks = io.load_landmarks(layout.landmarks_path(alone, 3, NEUTRAL))
    assert landmarks.shape == (68, 3)
    assert 30_000 <= len(mesh.vertices) <= 120_000


def test_units_and_frame(scans) -> None:
    mesh, lm = scans[NEUTRAL]
    size = mesh.bounds[1] - mesh.bounds[0]
    assert 140 < size[0] < 190  # ear to ear
    assert 250 < size[1] < 340  # head top to the neck cut
    assert 170 < size[2] < 230  # nose tip to the back of the head
    assert np.all(mesh.bounds[0] < 0) and np.all(mesh.bounds[1] > 0)  # origin inside
    tip = lm[30]
    assert 92 < tip[2] < 115 and abs(tip[0]) < 3
    front = mesh.vertices[np.argmax(mesh.vertices[:, 2])]
    assert np.linalg.norm(front - tip) < 6  # the nose tip is the front-most region
    eyes_y = lm[36:48, 1].mean()
    assert mesh.bounds[1, 1] > eyes_y + 80 > lm[30, 1] + 80 > lm[57, 1] + 80 > lm[8, 1] + 80
    assert lm[0, 0] < -50 and lm[16, 0] > 50  # dlib jaw line: subject's right (-x) first
    assert lm[36:42, 0].max() < 0 < lm[42:48, 0].min()


def test_mesh_is_closed_oriented_and_clean(scans) -> None:
    for k, (mesh, lm) in scans.items():
        name = layout.EXPRESSIONS[k]
        assert np.isfinite(mesh.vertices).all() and np.isfinite(lm).all(), name
        assert mesh.is_watertight and mesh.is_winding_consistent, name
        assert mesh.volume > 3e6, name  # outward normals: positive volume, about 4 litres
        assert mesh.body_count == 1, name
        assert mesh.area_faces.min() > 1e-5, name
        assert len(np.unique(np.sort(mesh.faces, axis=1), axis=0)) == len(mesh.faces), name
        # landmarks are snapped onto the surface
        closest, distance, _ = trimesh.proximity.closest_point(mesh, lm)
        assert distance.max() < 1e-6, name


def test_subjects_differ(scans) -> None:
    other, other_lm = syn.make_scan(syn.make_subject(SEED, 2), NEUTRAL)
    mesh, lm = scans[NEUTRAL]
    assert np.abs((mesh.bounds[1] - mesh.bounds[0]) - (other.bounds[1] - other.bounds[0])).max() > 2
    assert np.linalg.norm(lm - other_lm, axis=1).mean() > 2


def test_mouth_stretch_opens_the_mouth_onto_a_cavity(scans) -> None:
    (neutral, n_lm), (stretch, s_lm) = scans[NEUTRAL], scans[STRETCH]
    assert np.linalg.norm(n_lm[62] - n_lm[66]) < 3
    assert np.linalg.norm(s_lm[62] - s_lm[66]) > 20
    assert s_lm[8, 1] < n_lm[8, 1] - 15  # the chin drops
    for mesh, lm, deep in ((neutral, n_lm, False), (stretch, s_lm, True)):
        centre = 0.5 * (lm[62] + lm[66])
        hit = first_hit(mesh, [centre[0], centre[1], 300.0], [0, 0, -1.0])
        if deep:  # through the opening to the back of the mouth
            assert hit[2] < lm[62, 2] - 30
        else:  # on the closed lips
            assert hit[2] > lm[62, 2] - 3


def test_nostrils_have_insides(subject, scans) -> None:
    mesh, lm = scans[NEUTRAL]
    face = subject.face
    underside_y = lm[33, 1]
    for side in (-1.0, 1.0):
        entry = face.nostril_a * [side, 1, 1]
        hit = first_hit(mesh, [entry[0], underside_y - 30, entry[2]], [0, 1.0, 0])
        assert hit[1] > underside_y + 6, side  # the ray goes up into the nose
    columella = first_hit(mesh, [0.0, underside_y - 30, face.nostril_a[2]], [0, 1.0, 0])
    assert columella[1] < underside_y + 3


def test_eyes_have_recessed_eyeballs_and_close(subject, scans) -> None:
    (neutral, n_lm), (closed, c_lm) = scans[NEUTRAL], scans[EYE_CLOSED]
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
        assert np.linalg.norm(n_lm[upper] - n_lm[lower]) > 5
        assert np.linalg.norm(c_lm[upper] - c_lm[lower]) < 1.5
    for eye in subject.face.eyes:
        x, y, _ = eye.centre
        open_hit = first_hit(neutral, [x, y, 300.0], [0, 0, -1.0])
        lid_hit = first_hit(closed, [x, y, 300.0], [0, 0, -1.0])
        assert lid_hit[2] > open_hit[2] + 1.0  # the open eye shows the ball behind the lids


def test_jaw_left_moves_the_chin_to_the_subjects_left(scans) -> None:
    (_, n_lm), (_, j_lm) = scans[NEUTRAL], scans[JAW_LEFT]
    assert j_lm[8, 0] > n_lm[8, 0] + 4  # subject's left is +x
    assert abs(j_lm[30, 0] - n_lm[30, 0]) < 0.5  # the nose stays


def test_fine_detail_is_there_and_follows_the_expression(subject, scans) -> None:
    def forehead_rms(k: int) -> float:
        detailed, _ = scans[k]
        smooth, _ = syn.make_scan(subject, k, detail=False)
        assert np.array_equal(detailed.faces, smooth.faces)
        v = smooth.vertices
        brow = subject.face.brow_y
        region = (np.abs(v[:, 0]) < 30) & (v[:, 1] > brow + 12) & (v[:, 1] < brow + 45) & (
            v[:, 2] > 0)
        return float(np.sqrt(np.mean(np.sum((detailed.vertices - v)[region] ** 2, axis=1))))

    neutral, raised = forehead_rms(NEUTRAL), forehead_rms(BROW_RAISER)
    assert 0.02 < neutral < raised
    assert 0.05 < raised < 0.5
    # nasolabial folds deepen with a smile
    face, detail = subject.face, subject.detail
    fold = np.array([np.append(face.nasolabial_fold(side)[6], 70.0) for side in (-1, 1)])
    neutral_fold = detail.depth_mm(face, syn.EXPRESSION_TABLE[NEUTRAL], fold)
    smile_fold = detail.depth_mm(face, syn.EXPRESSION_TABLE[SMILE], fold)
    assert np.all(smile_fold > 2 * neutral_fold) and np.all(smile_fold > 0.2)


def test_cli_builds_the_same_files_as_the_api(built, tmp_path) -> None:
    alone, _, _ = built
    result = subprocess.run(
        [sys.executable, "-m", "facerecon.data.synthetic", "--out", str(tmp_path),
         "--subjects", "3", "--seed", str(SEED), "--only", "3", "--expressions", "1"],
        capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "1_neutral" in result.stdout and "vertices" in result.stdout
    assert len(result.stdout.strip().splitlines()) == 1
    for path in (layout.scan_path, layout.landmarks_path):
        assert path(tmp_path, 3, NEUTRAL).read_bytes() == path(alone, 3, NEUTRAL).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3"]


@pytest.mark.parametrize(("args", "message"), [
    (["--subjects", "2", "--only", "5"], "--only"),
    (["--subjects", "2", "--expressions", "21"], "--expressions"),
])
def test_cli_rejects_bad_arguments(tmp_path, args, message) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "facerecon.data.synthetic", "--out", str(tmp_path),
         "--seed", "0", *args], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert message in result.stderr and "error" in result.stderr
    assert not any(tmp_path.iterdir())
