"""FaceScape import (facerecon.data.facescape) on synthetic scans packed like the TU archives.

The synthetic scans do not have the TU topology, so the successful imports pass
their own landmark indices (and no vertex-count check); the TU defaults are
checked on their own, and the CLI is shown to refuse non-TU meshes.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import SYNTHETIC_SUBJECTS

from facerecon import io, layout
from facerecon.data import FaceDataset, facescape

CUSTOM_LANDMARKS = list(range(0, 68 * 50, 50))  # any 68 vertices of the synthetic meshes


def run_import(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        io.run_cli(facescape.main, ["import", *argv])
    return exit_info.value.code, capsys.readouterr().err


def files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_tu_landmark_defaults() -> None:
    indices = facescape.TU_LANDMARKS
    assert len(indices) == 68 and len(set(indices)) == 68
    assert indices[30] == 1855  # nose tip
    assert max(indices) < facescape.TU_VERTEX_COUNT == 26317


def test_import_takes_exactly_the_configured_scans(facescape_zip: Path, synthetic_root: Path,
                                                   tmp_path: Path) -> None:
    dest = tmp_path / "facescape"
    written = facescape.import_scans([facescape_zip], dest, SYNTHETIC_SUBJECTS, [5],
                                     landmark_indices=CUSTOM_LANDMARKS, vertex_count=None)
    expected = {f"{s}/models_reg/5_jaw_left.{ext}" for s in SYNTHETIC_SUBJECTS
                for ext in ("obj", "landmarks.txt")}
    assert files(dest) == expected  # no neutral, .mtl, .jpg or dpmap
    assert written == [layout.scan_path(dest, s, 5) for s in SYNTHETIC_SUBJECTS]
    assert {p.name for p in tmp_path.iterdir()} == {"facescape"}  # work folder removed
    FaceDataset(dest).check([str(s) for s in SYNTHETIC_SUBJECTS], [5])
    for subject in SYNTHETIC_SUBJECTS:
        source, _ = io.read_obj(layout.scan_path(synthetic_root, subject, 5), dtype=np.float64)
        mesh = io.load_mesh(layout.scan_path(dest, subject, 5))
        np.testing.assert_allclose(mesh.vertices, source, atol=1e-6)  # same order, same mm
        np.testing.assert_allclose(io.load_landmarks(layout.landmarks_path(dest, subject, 5)),
                                   source[CUSTOM_LANDMARKS], atol=1e-5)


def test_import_from_extracted_folder_and_tar_without_top_folder(
        synthetic_root: Path, tmp_path: Path) -> None:
    tar = tmp_path / "subject2.tar"
    shutil.make_archive(str(tar.with_suffix("")), "tar", synthetic_root, "2")
    dest = tmp_path / "out"
    facescape.import_scans([synthetic_root / "1", tar], dest, [2], [1],
                           landmark_indices=CUSTOM_LANDMARKS, vertex_count=None)
    assert files(dest) == {"2/models_reg/1_neutral.obj", "2/models_reg/1_neutral.landmarks.txt"}
    # the folder's own layout root works too, and a second import merges into dest
    facescape.import_scans([synthetic_root], dest, [1], [1, 5],
                           landmark_indices=CUSTOM_LANDMARKS, vertex_count=None)
    FaceDataset(dest).check(["1"], [1, 5])
    FaceDataset(dest).check(["2"], [1])


def test_missing_scans_fail_fast_naming_every_one(
        facescape_zip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "facescape"
    code, err = run_import(capsys, str(facescape_zip), "--dest", str(dest),
                           "--subjects", "1", "2", "7", "--expressions", "1", "5", "18")
    assert code == 2
    assert "1/18_eye_closed" in err and "2/18_eye_closed" in err
    assert "7/* (all 3 configured expressions)" in err and "5 scan(s) missing from" in err
    assert "1/1_neutral" not in err and str(facescape_zip) in err
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_meshes_without_tu_topology(
        facescape_zip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_import(capsys, str(facescape_zip), "--dest", str(tmp_path / "facescape"),
                           "--subjects", "1", "--expressions", "1")
    assert code == 2 and "but FaceScape TU meshes have 26,317" in err and "1_neutral.obj" in err
    assert list(tmp_path.iterdir()) == []  # nothing moved in, work folder removed


def test_convert_keeps_vertex_order_despite_texture_coordinates(tmp_path: Path) -> None:
    """A TU-style OBJ (quads, v/vt corners, material): vertices stay in file order."""
    raw = tmp_path / "raw.obj"
    corners = " ".join(f"{v}/{v}" for v in (1, 2, 3, 4))
    vertices = [f"v {i} {i * i % 7} {-i}" for i in range(70)]
    raw.write_text("mtllib raw.obj.mtl\n" + "\n".join(vertices) + "\n"
                   + "".join(f"vt {i / 70} 0.5\n" for i in range(70))
                   + f"usemtl m\nf {corners}\nf 5/5 6/6 -1/-1\n")
    out = tmp_path / "out.obj"
    facescape.convert_scan(raw, out, tmp_path / "out.landmarks.txt",
                           landmark_indices=range(68), vertex_count=70)
    mesh = io.load_mesh(out)
    np.testing.assert_array_equal(mesh.vertices[:, 0], np.arange(70))
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3], [4, 5, 69]])
    np.testing.assert_array_equal(io.load_landmarks(tmp_path / "out.landmarks.txt")[:, 0],
                                  np.arange(68))
    with pytest.raises(io.InputError, match="70 vertices, but FaceScape TU meshes have 71"):
        facescape.convert_scan(raw, out, tmp_path / "x.txt", vertex_count=71)


def test_images_of_the_configured_scans_only(
        facescape_zip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "fsmview_trainset_images_001-100.zip"
    params = json.dumps({"0_K": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "0_valid": True})
    with zipfile.ZipFile(images, "w") as zf:
        for subject in SYNTHETIC_SUBJECTS:
            for stem in ("1_neutral", "5_jaw_left")[: subject]:  # subject 1 lacks 5_jaw_left
                for view in range(3):
                    zf.writestr(f"{subject}/{stem}/{view}.jpg", f"{subject} {stem} {view}")
                zf.writestr(f"{subject}/{stem}/params.json", params)
    dest = tmp_path / "facescape"
    facescape.import_scans([facescape_zip], dest, [2], [5], images=[images],
                           landmark_indices=CUSTOM_LANDMARKS, vertex_count=None)
    shots = {f"2/images/5_jaw_left/{name}" for name in ("0.jpg", "1.jpg", "2.jpg", "params.json")}
    assert files(dest) == shots | {"2/models_reg/5_jaw_left.obj",
                                   "2/models_reg/5_jaw_left.landmarks.txt"}
    assert (dest / "2/images/5_jaw_left/1.jpg").read_text() == "2 5_jaw_left 1"
    # a configured scan without images fails before anything is written
    code, err = run_import(capsys, str(facescape_zip), "--dest", str(tmp_path / "other"),
                           "--subjects", "1", "--expressions", "1", "5", "--images", str(images))
    assert code == 2 and "1 image folder(s) missing from" in err and "1/5_jaw_left" in err
    assert not (tmp_path / "other").exists()
