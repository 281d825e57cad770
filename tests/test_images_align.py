"""Dlib alignment on a real photo (scikit-image's astronaut) and its documented error paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dlib
import numpy as np
import pytest
from skimage import color, data, transform

from facerecon.images import load_image, save_image
from facerecon.images.align import (
    FIT_INDICES,
    LEFT_EYE_PX,
    RIGHT_EYE_PX,
    TEMPLATE_INDICES,
    TEMPLATE_PX,
    Alignment,
    align_file,
    align_image,
    apply_affine,
    eye_centres,
)
from facerecon.io import InputError

REPO = Path(__file__).resolve().parents[1]
EYE_TOLERANCE_PX = 3.0
LEVEL_TOLERANCE_PX = 1.5


def _rotated(image: np.ndarray, angle_deg: float) -> np.ndarray:
    rotated = transform.rotate(image, angle_deg, mode="edge")
    return np.ascontiguousarray(np.round(rotated * 255).astype(np.uint8))


def _assert_canonical_eyes(landmarks_px: np.ndarray) -> None:
    left, right = eye_centres(landmarks_px)
    assert abs(left[1] - right[1]) < LEVEL_TOLERANCE_PX, (left, right)
    assert np.linalg.norm(left - LEFT_EYE_PX) < EYE_TOLERANCE_PX, left
    assert np.linalg.norm(right - RIGHT_EYE_PX) < EYE_TOLERANCE_PX, right


def test_canonical_template() -> None:
    """Eyes level, symmetric about x = 128, 67.75 px apart; nose and eyes are fitted."""
    assert TEMPLATE_PX.shape == (51, 2) and list(TEMPLATE_INDICES) == list(range(17, 68))
    assert list(FIT_INDICES) == list(range(27, 48))
    np.testing.assert_allclose(LEFT_EYE_PX, [94.1267, 91.6468], atol=1e-3)
    np.testing.assert_allclose(RIGHT_EYE_PX, [161.8732, 91.6468], atol=1e-3)
    np.testing.assert_allclose(TEMPLATE_PX[30 - 17], [128.0, 130.0], atol=1e-3)  # nose tip


def test_template_is_dlibs_mean_face() -> None:
    """dlib's get_face_chip_details on landmarks placed on our template (x10, to make
    integer points exact enough) returns our crop window: upright, 256 px (x10) wide,
    1.26 px left of ours (our midline shift); a wrong constant would show here."""
    scale = 10.0
    points = np.zeros((68, 2))
    points[17:] = TEMPLATE_PX * scale
    det = dlib.full_object_detection(
        dlib.rectangle(0, 0, 2560, 2560),
        [dlib.point(int(round(x)), int(round(y))) for x, y in points])
    chip = dlib.get_face_chip_details(det, 256, 0.5)
    assert abs(chip.angle) < 1e-4
    assert chip.rect.left() / scale == pytest.approx(1.2638, abs=0.1)
    assert chip.rect.top() / scale == pytest.approx(0.0, abs=0.1)
    assert chip.rect.width() / scale == pytest.approx(256.0, abs=0.1)


@pytest.mark.parametrize("angle_deg", [12.0, -15.0])
def test_astronaut_eyes_level_at_canonical_positions(angle_deg: float) -> None:
    upright = align_image(data.astronaut())
    assert upright.method == "dlib" and upright.crop.shape == (256, 256, 3)
    assert upright.faces_detected == 1 and upright.upsampled is False
    _assert_canonical_eyes(upright.landmarks_px)
    rotated = align_image(_rotated(data.astronaut(), angle_deg))
    _assert_canonical_eyes(rotated.landmarks_px)

    def angle(alignment: Alignment) -> float:
        return float(np.degrees(np.arctan2(alignment.image_to_crop[1, 0],
                                           alignment.image_to_crop[0, 0])))

    assert angle(rotated) - angle(upright) == pytest.approx(angle_deg, abs=2.0)


def test_given_landmarks_skip_detection(tmp_path: Path) -> None:
    image = data.astronaut()
    detected = align_image(image)
    image_landmarks = apply_affine(np.linalg.inv(np.vstack([detected.image_to_crop,
                                                            [0, 0, 1]]))[:2],
                                   detected.landmarks_px)
    image_path, landmarks_path = tmp_path / "astronaut.png", tmp_path / "lm.txt"
    save_image(image_path, image)
    np.savetxt(landmarks_path, image_landmarks)
    given = align_file(image_path, landmarks_path)
    assert given.method == "given" and given.faces_detected is None
    np.testing.assert_allclose(given.landmarks_px, detected.landmarks_px, atol=1e-6)
    np.testing.assert_array_equal(given.crop, detected.crop)
    np.savetxt(landmarks_path, image_landmarks[:60])
    with pytest.raises(InputError, match="68 rows"):
        align_file(image_path, landmarks_path)
    np.savetxt(landmarks_path, image_landmarks * 0.05)  # a face 2 px wide
    with pytest.raises(InputError, match="too small"):
        align_file(image_path, landmarks_path)


def test_grayscale_is_converted_and_aligned(tmp_path: Path) -> None:
    gray = np.round(color.rgb2gray(data.astronaut()) * 255).astype(np.uint8)
    path = tmp_path / "gray.png"
    save_image(path, gray)
    image, converted = load_image(path)
    assert converted == "gray" and image.shape == (512, 512, 3)
    alignment = align_file(path)
    assert alignment.converted == "gray" and alignment.record()["converted"] == "gray"
    _assert_canonical_eyes(alignment.landmarks_px)


def test_largest_face_is_used_when_clearly_largest() -> None:
    image = data.astronaut()
    small = np.round(transform.rescale(image, 0.5, channel_axis=-1, anti_aliasing=True)
                     * 255).astype(np.uint8)
    canvas = np.zeros((512, 768, 3), dtype=np.uint8)
    canvas[:, :512] = image
    canvas[128:384, 512:] = small
    alignment = align_image(canvas)
    assert alignment.faces_detected == 2
    alone = align_image(image)
    np.testing.assert_allclose(alignment.image_to_crop, alone.image_to_crop, atol=1e-9)


def test_error_paths_name_the_file(tmp_path: Path) -> None:
    twice = np.ascontiguousarray(np.hstack([data.astronaut(), data.astronaut()]))
    cases = {
        "no_face.png": (data.coins(), "no face"),
        "two_faces.png": (twice, "2 faces"),
        "tiny.png": (data.astronaut()[::10, ::10], "too small"),
    }
    for name, (image, message) in cases.items():
        save_image(tmp_path / name, color.gray2rgb(image) if image.ndim == 2 else image)
        with pytest.raises(InputError, match=message) as info:
            align_file(tmp_path / name)
        assert name in str(info.value)
    (tmp_path / "text.jpg").write_text("not an image\n")
    with pytest.raises(InputError, match="not a readable image"):
        align_file(tmp_path / "text.jpg")
    with pytest.raises(InputError, match="not found"):
        align_file(tmp_path / "missing.jpg")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facerecon.images.align", *args], cwd=REPO,
                          capture_output=True, text=True, check=False)


def test_cli_contract(tmp_path: Path) -> None:
    image = tmp_path / "astronaut.jpg"
    save_image(image, data.astronaut())
    result = _cli(str(image), "--out", str(tmp_path / "crop.png"))
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)  # one JSON object, nothing else
    assert record["method"] == "dlib" and np.asarray(record["landmarks"]).shape == (68, 2)
    assert np.asarray(record["image_to_crop"]).shape == (2, 3)
    assert {"faces_detected", "upsampled", "converted", "fit_rms_px"} <= set(record)
    crop, _ = load_image(tmp_path / "crop.png")
    assert crop.shape == (256, 256, 3)
    _assert_canonical_eyes(np.asarray(record["landmarks"]))

    save_image(tmp_path / "coins.png", color.gray2rgb(data.coins()))
    failed = _cli(str(tmp_path / "coins.png"), "--out", str(tmp_path / "none.png"))
    assert failed.returncode == 2 and "coins.png" in failed.stderr and "no face" in failed.stderr
    assert not (tmp_path / "none.png").exists()
