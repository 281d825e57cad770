"""Landmark-Net, the 8 landmark-based facial regions and their loss terms."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

from facerecon import io, layout, losses  # noqa: E402
from facerecon.data import synthetic  # noqa: E402
from facerecon.models import regions  # noqa: E402
from facerecon.models.landmarks import LandmarkNet  # noqa: E402
from facerecon.models.regions import REGION_NAMES, REGIONS, region_labels  # noqa: E402

ID_DIM, EXP_DIM = 16, 12


pytestmark = pytest.mark.usefixtures("one_thread")


def _template(seed: int = 0) -> torch.Tensor:
    return 0.3 * torch.randn(68, 3, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------
# LandmarkNet


def test_landmark_net_shapes_and_identity_head_ignores_expression() -> None:
    torch.manual_seed(0)
    net = LandmarkNet(ID_DIM, EXP_DIM, hidden_dim=32)
    z_id, z_exp = torch.randn(5, ID_DIM), torch.randn(5, EXP_DIM)
    out = net(z_id, z_exp)
    assert set(out) == {"expression", "identity"}
    assert out["expression"].shape == out["identity"].shape == (5, 68, 3)
    with torch.no_grad():  # make the heads' outputs visibly depend on their inputs
        for head in (net.expression, net.identity):
            head[-1].weight.normal_(0.0, 0.1)
        before = net(z_id, z_exp)
        after = net(z_id, z_exp + 1.0)
    torch.testing.assert_close(after["identity"], before["identity"], rtol=0, atol=0)
    assert (after["expression"] - before["expression"]).abs().max() > 1e-3


def test_fresh_landmark_net_predicts_its_template() -> None:
    torch.manual_seed(1)
    template = _template()
    out = LandmarkNet(ID_DIM, EXP_DIM, template=template)(torch.randn(4, ID_DIM),
                                                          torch.randn(4, EXP_DIM))
    for key in ("expression", "identity"):
        torch.testing.assert_close(out[key], template.expand(4, 68, 3), rtol=0, atol=1e-3)
    zeros = LandmarkNet(ID_DIM, EXP_DIM)(torch.randn(2, ID_DIM), torch.randn(2, EXP_DIM))
    assert zeros["identity"].abs().max() < 1e-3
    with pytest.raises(ValueError, match="template"):
        LandmarkNet(ID_DIM, EXP_DIM, template=torch.zeros(67, 3))


def test_landmark_net_fits_per_code_targets() -> None:
    torch.manual_seed(2)
    template = _template()
    z_id, z_exp = torch.randn(6, ID_DIM), torch.randn(6, EXP_DIM)
    offsets = 0.1 * torch.randn(6, 68, 3)
    target_id = template + offsets
    target_exp = target_id + 0.05 * torch.randn(6, 68, 3)  # expression moves the landmarks
    net = LandmarkNet(ID_DIM, EXP_DIM, hidden_dim=64, template=template)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)

    def loss() -> torch.Tensor:
        out = net(z_id, z_exp)
        return (losses.landmark_l2(out["expression"], target_exp)
                + losses.landmark_l2(out["identity"], target_id))

    start = float(loss().detach())
    for _ in range(200):
        optimiser.zero_grad()
        value = loss()
        value.backward()
        optimiser.step()
    end = float(loss().detach())
    assert end < 0.1 * start, (start, end)


# --------------------------------------------------------------------------------------
# Regions


def test_region_table_is_a_partition_of_landmarks() -> None:
    assert REGION_NAMES == tuple(REGIONS) and len(REGION_NAMES) == 8
    assert REGION_NAMES[regions.REST] == "forehead"
    owner: dict[int, str] = {}
    for name, anchors in REGIONS.items():
        for anchor in anchors:
            for index in (anchor,) if isinstance(anchor, int) else anchor:
                assert 0 <= index < 68
            if isinstance(anchor, int):
                assert anchor not in owner, f"landmark {anchor} in {owner[anchor]} and {name}"
                owner[anchor] = name
    assert sorted(owner) == list(range(68))  # every landmark defines exactly one region


def _face_units(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) and landmarks (68, 3) of subject 1's neutral synthetic scan, in units
    of the crop frame (origin 40 mm behind the nose tip, 1 unit = 100 mm)."""
    synthetic.build_subject(root, 1, 0, [1])
    mesh = io.load_mesh(layout.scan_path(root, 1, 1))
    landmarks = io.load_landmarks(layout.landmarks_path(root, 1, 1))
    centre = landmarks[30] - np.array([0.0, 0.0, 40.0])
    return (np.asarray(mesh.vertices) - centre) / 100.0, (landmarks - centre) / 100.0


@pytest.fixture(scope="module")
def face(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    return _face_units(tmp_path_factory.mktemp("regions_face"))


def test_landmarks_are_labelled_with_their_own_region(face: tuple[np.ndarray, np.ndarray]
                                                      ) -> None:
    _, landmarks = face
    lm = torch.tensor(landmarks, dtype=torch.float32)[None]
    labels = region_labels(lm, lm)[0]
    expected = torch.full((68,), -1)
    for label, anchors in enumerate(REGIONS.values()):
        for anchor in anchors:
            if isinstance(anchor, int):
                expected[anchor] = label
    assert torch.equal(labels, expected), [(i, REGION_NAMES[int(a)], REGION_NAMES[int(b)])
                                           for i, (a, b) in enumerate(zip(labels, expected,
                                                                          strict=True))
                                           if a != b]
    # Batched: a second, shifted and mirrored face gets the same labels for its landmarks.
    mirrored = lm.clone()
    mirrored[..., 0] *= -1
    swap = [16 - i for i in range(17)] + [26 - i for i in range(10)] + list(range(27, 31))
    swap += [35 - i for i in range(5)] + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    swap += [54 - i for i in range(7)] + [59 - i for i in range(5)]
    swap += [64 - i for i in range(5)] + [67, 66, 65]
    assert sorted(swap) == list(range(68))
    mirrored = mirrored[:, swap] + 0.05
    both = region_labels(torch.cat([lm, mirrored]), torch.cat([lm, mirrored]))
    assert torch.equal(both[0], expected) and torch.equal(both[1], expected)


def _save_region_png(path: Path, vertices: np.ndarray, landmarks: np.ndarray,
                     labels: np.ndarray) -> None:
    """Front and side views of the vertices in the crop sphere, coloured by region."""
    colours = plt.get_cmap("tab10")(labels)
    inside = np.linalg.norm(vertices, axis=1) < 1.0
    fig, axes = plt.subplots(1, 2, figsize=(12, 7))
    views = (("front (x, y), subject's right on the left", 0, 1, 2),
             ("profile from the subject's right (z, y)", 2, 1, 0))
    for ax, (title, u, v, depth) in zip(axes, views, strict=True):
        order = np.argsort(vertices[:, depth] * (1 if depth == 2 else -1))
        order = order[inside[order]]  # nearest to the viewer drawn last
        ax.scatter(vertices[order, u], vertices[order, v], c=colours[order], s=2.0, lw=0)
        ax.scatter(landmarks[:, u], landmarks[:, v], c="k", s=5)
        ax.set_title(title)
        ax.set_aspect("equal")
    for label, name in enumerate(REGION_NAMES):
        axes[0].plot([], [], "o", color=plt.get_cmap("tab10")(label), label=name)
    axes[0].legend(loc="upper right", fontsize=7)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def test_region_labels_on_a_synthetic_face(face: tuple[np.ndarray, np.ndarray],
                                           tmp_path: Path) -> None:
    vertices, landmarks = face
    labels = region_labels(torch.tensor(vertices)[None], torch.tensor(landmarks)[None])[0]
    assert labels.dtype == torch.long and labels.shape == (len(vertices),)
    labels = labels.numpy()
    counts = np.bincount(labels, minlength=8)
    assert (counts > 100).all(), dict(zip(REGION_NAMES, counts, strict=True))
    name = np.array(REGION_NAMES)[labels]

    distance = np.linalg.norm(vertices[:, None] - landmarks[[48, 54]], axis=-1)
    near_corners = (distance < 0.03).any(axis=1)  # within 3 mm of a mouth corner
    assert near_corners.sum() > 10 and (name[near_corners] == "mouth").all()
    top = np.argsort(vertices[:, 1])[-200:]
    assert (name[top] == "forehead").all()
    brows = landmarks[17:27]
    above_brows = ((vertices[:, 1] > brows[:, 1].max() + 0.03) & (vertices[:, 2] > 0.0)
                   & (np.abs(vertices[:, 0]) < np.abs(brows[:, 0]).max()))
    assert above_brows.sum() > 100 and (name[above_brows] == "forehead").all()
    assert (vertices[name == "right_cheek", 0] < 0).all()
    assert (vertices[name == "left_cheek", 0] > 0).all()
    nose_tip = np.linalg.norm(vertices - landmarks[30], axis=1).argmin()
    assert name[nose_tip] == "nose"
    assert (vertices[name == "mouth", 1] < landmarks[33, 1]).all()  # below the nose base
    centres = regions.anchors(torch.tensor(landmarks)[None])[0][0].numpy()
    far = cKDTree(centres).query(vertices)[0] > 0.3
    assert far.sum() > 1000 and (name[far] == "forehead").all()

    png = tmp_path / "regions.png"
    _save_region_png(png, vertices, landmarks, labels)
    assert png.stat().st_size > 10_000
    print(f"region partition PNG: {png}")


def test_region_labels_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="landmarks"):
        region_labels(torch.zeros(2, 5, 3), torch.zeros(1, 68, 3))
    with pytest.raises(ValueError, match="points"):
        region_labels(torch.zeros(2, 5), torch.zeros(2, 68, 3))


# --------------------------------------------------------------------------------------
# Losses


def test_gate_supervision() -> None:
    k = 8
    labels = torch.randint(0, k, (3, 50), generator=torch.Generator().manual_seed(3))
    one_hot = torch.nn.functional.one_hot(labels, k).float()
    assert float(losses.gate_supervision(one_hot, labels)) < 1e-6
    uniform = torch.full((3, 50, k), 1.0 / k)
    assert math.isclose(float(losses.gate_supervision(uniform, labels)), math.log(k),
                        rel_tol=1e-6)
    wrong = torch.nn.functional.one_hot((labels + 1) % k, k).float()
    value = losses.gate_supervision(wrong, labels)  # clamped: finite, large
    assert torch.isfinite(value) and float(value) > 10
    logits = torch.randn(3, 50, k, requires_grad=True)
    losses.gate_supervision(torch.softmax(logits, -1), labels).backward()
    torch.testing.assert_close(  # equals cross-entropy on the logits
        losses.gate_supervision(torch.softmax(logits, -1), labels),
        torch.nn.functional.cross_entropy(logits.reshape(-1, k), labels.reshape(-1)))


def test_landmark_l2() -> None:
    pred = torch.randn(2, 68, 3)
    assert float(losses.landmark_l2(pred, pred.clone())) == 0.0
    shift = torch.zeros(2, 68, 3)
    shift[0, :, 0] = 3.0  # scan 0: every landmark 3 units off; scan 1: (1, 2, 2) -> 3 units
    shift[1, :] = torch.tensor([1.0, 2.0, 2.0])
    shift[1, :34] *= 2  # half of scan 1's landmarks 6 units off
    expected = (68 * 3.0 + 34 * 6.0 + 34 * 3.0) / 136
    assert math.isclose(float(losses.landmark_l2(pred + shift, pred)), expected, rel_tol=1e-5)


def test_neutral_deformation_only_counts_neutral_scans() -> None:
    displacement = torch.zeros(3, 4, 3)
    displacement[0, :, 2] = 0.5  # neutral scan: norm 0.5 everywhere
    displacement[1] = 100.0  # expressive scan: ignored
    displacement[2, :2, 0] = 1.0  # neutral scan: norms 1, 1, 0, 0
    neutral = torch.tensor([True, False, True])
    assert math.isclose(float(losses.neutral_deformation(displacement, neutral)),
                        (4 * 0.5 + 2 * 1.0) / 8, rel_tol=1e-6)
    none = losses.neutral_deformation(displacement, torch.zeros(3, dtype=torch.bool))
    assert none.shape == () and float(none) == 0.0


def test_sdf_correction_is_mean_absolute_value() -> None:
    delta = torch.tensor([[0.1, -0.3], [0.0, 0.2]])
    assert math.isclose(float(losses.sdf_correction(delta)), 0.6 / 4, rel_tol=1e-6)
