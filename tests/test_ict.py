"""ICT-FaceKit benchmark (facerecon.data.ict): packer, reader, recipes, built scans and
the compact model shipped with the package.

Frame of the built scans: millimetres, face towards +z, head top towards +y,
the subject's left towards +x (FaceScape's).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from facerecon import io, layout
from facerecon.config import IctConfig
from facerecon.data import FaceDataset, ict

REPO = Path(__file__).resolve().parents[1]
SHARED = Path("/work/shared/ict-facekit")
NPZ, FOLDER = SHARED / "ict_facekit.npz", SHARED / "FaceXModel"
SEED = 3
NEUTRAL, STRETCH, JAW_LEFT = 1, 3, 5

#: The full model (and the upstream files) live outside the repository.
needs_shared = pytest.mark.skipif(not NPZ.is_file(), reason="ICT-FaceKit data not available")


@pytest.fixture(scope="module")
def packed() -> dict[str, np.ndarray]:
    return io.load_npz(NPZ)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 subjects x 3 expressions built from the npz through the command line."""
    root = tmp_path_factory.mktemp("ict")
    ict.main(["build", "--model", str(NPZ), "--out", str(root), "--subjects", "2",
              "--seed", str(SEED), "--expressions", str(NEUTRAL), str(STRETCH), str(JAW_LEFT)])
    return root


@needs_shared
def test_packer_reproduces_the_packed_arrays(packed: dict[str, np.ndarray],
                                             tmp_path: Path) -> None:
    ict.main(["pack", "--model-dir", str(FOLDER), "--out", str(tmp_path / "three.npz")])
    mine = io.load_npz(tmp_path / "three.npz")
    assert list(mine["identity_names"]) == ["identity000"]
    assert list(mine["expression_names"]) == ["jawOpen"]
    jaw_open = list(packed["expression_names"]).index("jawOpen")
    references = {"vertices_neutral": packed["vertices_neutral"], "faces": packed["faces"],
                  "landmarks68": packed["landmarks68"],
                  "identity_deltas": packed["identity_deltas"][:1],
                  "expression_deltas": packed["expression_deltas"][[jaw_open]]}
    for key, reference in references.items():
        assert mine[key].dtype == reference.dtype, key
        np.testing.assert_array_equal(mine[key], reference, err_msg=key)
    # the folder reader returns the same arrays as reading the packed file
    folder, npz = ict.load_model(FOLDER).arrays(), ict.load_model(tmp_path / "three.npz").arrays()
    for key in folder:
        np.testing.assert_array_equal(folder[key], npz[key], err_msg=key)


@needs_shared
def test_pack_from_the_upstream_repository_archive(tmp_path: Path) -> None:
    """A zip laid out like GitHub's repository archive packs to the same arrays."""
    archive_path = tmp_path / "ICT-FaceKit-da5f95a6.zip"
    with zipfile.ZipFile(archive_path, "w") as zf:
        for path in FOLDER.iterdir():
            zf.write(path, f"ICT-FaceKit-da5f95a6/FaceXModel/{path.name}")
        zf.write(FOLDER.parent / "vertex_indices.json",
                 "ICT-FaceKit-da5f95a6/FaceXModel/vertex_indices.json")
    ict.main(["pack", "--archive", str(archive_path), "--out", str(tmp_path / "a.npz")])
    ict.main(["pack", "--model-dir", str(FOLDER), "--out", str(tmp_path / "f.npz")])
    from_archive, from_folder = io.load_npz(tmp_path / "a.npz"), io.load_npz(tmp_path / "f.npz")
    for key, value in from_folder.items():
        np.testing.assert_array_equal(from_archive[key], value, err_msg=key)


def test_read_obj_fan_triangulates_polygons_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "poly.obj"
    path.write_text("# comment\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 2 0 0 0.5 0.5 0.5\n"
                    "vt 0 0\nvn 0 0 1\ng x\nusemtl m\nf 1/1/1 2/1/1 3/1/1 4/1/1\nf 2//1 5//1 3//1\n"
                    "f -3 -2 -1\n")
    vertices, faces = io.read_obj(path)
    assert vertices.dtype == np.float32 and vertices.shape == (5, 3)
    np.testing.assert_array_equal(faces, [[0, 1, 2], [0, 2, 3], [1, 4, 2], [2, 3, 4]])
    path.write_text("v 0 0 0\nv 1 0 0\nf 1 2 3\n")
    with pytest.raises(io.InputError, match="out of range"):
        io.read_obj(path)


@needs_shared
def test_recipes_cover_every_expression_with_model_blendshapes(
        packed: dict[str, np.ndarray]) -> None:
    assert sorted(ict.RECIPES) == sorted(layout.EXPRESSIONS)
    names = set(packed["expression_names"].tolist())
    for number, recipe in ict.RECIPES.items():
        assert set(recipe) <= names, number
        assert all(0 < w <= 1 for w in recipe.values()), number
    table = ict.recipe_markdown().splitlines()
    assert len(table) == 22 and "| 5 | jaw_left | `jawLeft` 1, `jawOpen` 0.2 |" in table


@needs_shared
def test_left_blendshapes_act_on_the_subjects_left_at_plus_x(
        packed: dict[str, np.ndarray]) -> None:
    """ICT's _L is the subject's own left, which is +x in FaceScape's frame (no mirroring)."""
    names = list(packed["expression_names"])
    neutral, landmarks = packed["vertices_neutral"], packed["landmarks68"]
    assert neutral[landmarks[42:48], 0].min() > 0 > neutral[landmarks[36:42], 0].max()
    for name in ("eyeBlink_L", "mouthSmile_L", "browOuterUp_L"):
        moved = np.linalg.norm(packed["expression_deltas"][names.index(name)], axis=1) > 0.05
        assert neutral[moved, 0].mean() > 1.0, name  # cm
    chin = landmarks[8]
    assert packed["expression_deltas"][names.index("jawLeft"), chin, 0] > 0.5  # cm towards +x


@needs_shared
def test_build_layout_scale_and_frame(built: Path) -> None:
    FaceDataset(built).check(["1", "2"], [NEUTRAL, STRETCH, JAW_LEFT])
    expected = {f"{s}/models_reg/{layout.scan_name(k)}.{ext}" for s in (1, 2)
                for k in (NEUTRAL, STRETCH, JAW_LEFT) for ext in ("obj", "landmarks.txt")}
    assert {p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file()} == expected
    for subject in (1, 2):
        mesh = io.load_mesh(layout.scan_path(built, subject, NEUTRAL))
        landmarks = io.load_landmarks(layout.landmarks_path(built, subject, NEUTRAL))
        vertices = mesh.vertices
        assert len(vertices) == len(np.unique(mesh.faces))  # no unreferenced vertices
        eye_y = landmarks[36:48, 1].mean()
        band = vertices[np.abs(vertices[:, 1] - eye_y) < 20]
        assert 150 < np.ptp(band[:, 0]) < 200  # head width in mm
        assert landmarks[30, 2] > vertices[:, 2].max() - 5  # nose tip in front: +z
        assert landmarks[27, 1] > landmarks[8, 1] + 80  # nose bridge above the chin: +y
        assert landmarks[45, 0] > landmarks[36, 0]  # the subject's left eye at +x
        distance, _ = cKDTree(vertices).query(landmarks)
        assert distance.max() < 1e-5  # landmarks are mesh vertices


@needs_shared
def test_build_expressions_move_the_right_way(built: Path) -> None:
    for subject in (1, 2):
        neutral = io.load_landmarks(layout.landmarks_path(built, subject, NEUTRAL))
        stretch = io.load_landmarks(layout.landmarks_path(built, subject, STRETCH))
        jaw_left = io.load_landmarks(layout.landmarks_path(built, subject, JAW_LEFT))
        gap = np.linalg.norm(stretch[62] - stretch[66])
        assert gap > np.linalg.norm(neutral[62] - neutral[66]) + 15  # mouth opens (mm)
        assert jaw_left[8, 0] - neutral[8, 0] > 4  # chin towards +x, the subject's left
    one = io.load_landmarks(layout.landmarks_path(built, 1, NEUTRAL))
    two = io.load_landmarks(layout.landmarks_path(built, 2, NEUTRAL))
    assert np.abs(one - two).max() > 1  # identities differ


@needs_shared
def test_build_is_deterministic_per_subject(built: Path, tmp_path: Path) -> None:
    """Subject 2 alone, expressions in another order: the same bytes."""
    ict.main(["build", "--model", str(NPZ), "--out", str(tmp_path), "--subjects", "2",
              "--only", "2", "--seed", str(SEED), "--expressions", str(JAW_LEFT), str(NEUTRAL)])
    for expression in (NEUTRAL, JAW_LEFT):
        for path in (layout.scan_path, layout.landmarks_path):
            assert path(tmp_path, 2, expression).read_bytes() == \
                path(built, 2, expression).read_bytes()
    assert not (tmp_path / "1").exists()


@needs_shared
def test_build_from_incomplete_folder_names_missing_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        io.run_cli(ict.main, ["build", "--model", str(FOLDER), "--out", str(tmp_path / "out"),
                              "--subjects", "1", "--seed", "0"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "mouthSmile_L.obj" in err and "eyeBlink_R.obj" in err and "jawLeft.obj" in err
    assert "jawOpen.obj" not in err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------
# The compact model inside the package


@needs_shared
def test_compact_pack_round_trip(tmp_path: Path) -> None:
    """`pack --compact`: the scan surface, LZMA members, the same bytes each time, and
    load_model gives the deltas back to half a step."""
    for name in ("a.npz", "b.npz"):
        ict.main(["pack", "--compact", "--model-dir", str(FOLDER), "--out", str(tmp_path / name)])
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.npz") as zf:
        assert {info.compress_type for info in zf.infolist()} == {zipfile.ZIP_LZMA}
    expected = ict.scan_model(ict.load_model(FOLDER)).arrays()
    loaded = ict.load_model(tmp_path / "a.npz").arrays()
    assert len(expected["vertices_neutral"]) <= ict.SCAN_VERTEX_END
    for key, value in expected.items():
        assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape, key
        if key.endswith("_deltas"):
            assert np.abs(loaded[key] - value).max() <= 0.6 * ict.COMPACT_STEP_CM, key
        else:
            np.testing.assert_array_equal(loaded[key], value, err_msg=key)


@needs_shared
def test_packaged_model_is_the_full_model_compacted() -> None:
    """The shipped file holds the full model's scan surface, deltas rounded to the step
    (`pack --compact --npz` of the full model, as the module docstring says)."""
    expected = ict.scan_model(ict.load_model(NPZ)).arrays()
    shipped = io.load_npz(ict.PACKAGED_MODEL)
    assert sorted(shipped) == sorted([*expected, "identity_scale", "expression_scale"])
    for key in ("identity_deltas", "expression_deltas"):
        scale = shipped.pop(key.replace("_deltas", "_scale"))
        assert shipped[key].dtype == np.int32 and scale == ict.COMPACT_STEP_CM, key
        error = np.abs(shipped.pop(key) * scale - expected.pop(key)).max()
        assert error <= 0.5001 * ict.COMPACT_STEP_CM, key
    for key, value in expected.items():
        assert shipped[key].dtype == value.dtype, key
        np.testing.assert_array_equal(shipped[key], value, err_msg=key)


@needs_shared
def test_packaged_model_reproduces_the_full_models_scans() -> None:
    """Scan-surface vertices and landmarks of 4 identities x 20 expressions within 0.001 mm."""
    models = ict.load_model(NPZ), ict.load_model()  # full, packaged (the default)
    assert models[1].identity_deltas.dtype == models[1].expression_deltas.dtype == np.float32
    for key in ("identity_names", "expression_names"):
        np.testing.assert_array_equal(getattr(models[1], key), getattr(models[0], key))
    surfaces = [ict.ScanSurface.of(model) for model in models]
    np.testing.assert_array_equal(surfaces[1].faces, surfaces[0].faces)
    worst = 0.0
    for subject in range(1, 5):
        identities = [ict.identity_vertices_cm(model, surface, SEED, subject)
                      for model, surface in zip(models, surfaces, strict=True)]
        for expression in ict.RECIPES:
            (mesh_full, landmarks_full), (mesh, landmarks) = (
                ict.make_scan(model, surface, identity, expression)
                for model, surface, identity in zip(models, surfaces, identities, strict=True))
            worst = max(worst, np.linalg.norm(mesh.vertices - mesh_full.vertices, axis=1).max(),
                        np.linalg.norm(landmarks - landmarks_full, axis=1).max())
    assert worst < 1e-3  # mm


def test_packaged_model_ships_small_with_its_licence() -> None:
    assert ict.PACKAGED_MODEL.stat().st_size < 10e6
    licence = ict.PACKAGED_LICENSE.read_text()
    assert "MIT License" in licence and "USC Institute for Creative Technologies" in licence
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["facerecon.data"]
    assert {ict.PACKAGED_MODEL.name, ict.PACKAGED_LICENSE.name} <= set(package_data)


@pytest.mark.slow
def test_ict_dataset_builds_from_the_packaged_model_by_default(tmp_path: Path) -> None:
    """`dataset: ict` with config.yaml's defaults: the packaged model, nothing from
    ../shared, nothing downloaded."""
    assert IctConfig().model == ""
    target = f"results/ict/raw/7/models_reg/{layout.scan_name(JAW_LEFT)}.obj"
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [str(bin_dir / "snakemake"), "-s", str(REPO / "workflow/Snakefile"), target, "-p",
         "-d", str(tmp_path), "--cores", "1", "--configfile", str(REPO / "config.yaml"),
         "--config", "dataset=ict"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert f"--model {ict.PACKAGED_MODEL} " in output
    assert "shared/ict-facekit" not in output and "ict_download" not in output
    FaceDataset(tmp_path / "results/ict/raw").check(["7"], [JAW_LEFT])
