"""The paper's model (facerecon.models.paper): its contract, its start, its losses, and a
train -> fit -> mesh run through the real command lines."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_sphere_samples

from facerecon.config import LossConfig, PaperModelConfig, TrainConfig
from facerecon.errors import InputError
from facerecon.models import MODELS, Conditioning, Model, Query
from facerecon.models.fusion import image_features_at
from facerecon.models.paper import PaperFace

REPO = Path(__file__).resolve().parents[1]
SMALL = {"id_dim": 6, "exp_dim": 5, "pe_frequencies": 2, "landmark_hidden_dim": 16,
         "deform_hidden_dim": 8, "deform_layers": 1, "hyper_hidden_dim": 8,
         "template_hidden_dim": 16, "template_layers": 2, "hidden_dim": 8, "hidden_layers": 1,
         "gate_hidden_dim": 8, "multiscale_features": False}
#: The image branch at test size: a 2-stage trunk, small head, 16-px feature map.
IMAGES = {"multiscale_features": True, "trunk_stages": 2, "branch_channels": 4,
          "image_channels": 8, "feature_resolution": 16, "fusion_dim": 4,
          "freeze_backbone_epochs": 2}


pytestmark = pytest.mark.usefixtures("one_thread")


def face_landmarks(seed: int) -> torch.Tensor:
    """68 landmark-like points (units) on the front of a 0.4-unit sphere."""
    rng = np.random.default_rng(seed)
    angles = rng.uniform(-0.6, 0.6, (68, 2))
    return torch.tensor(0.4 * np.c_[np.sin(angles[:, 0]), np.sin(angles[:, 1]),
                                    np.cos(angles[:, 0]) * np.cos(angles[:, 1])],
                        dtype=torch.float32)


def model_and_query(experts: int = 8, batch: int = 2, n: int = 64, dtype=torch.float32
                    ) -> tuple[PaperFace, Query]:
    torch.manual_seed(0)
    model = PaperFace(PaperModelConfig(**SMALL, experts=experts)).to(dtype)
    codes = {"identity": torch.randn(batch, 6, dtype=dtype) * 0.1,
             "expression": torch.randn(batch, 5, dtype=dtype) * 0.1}
    points = (torch.rand(batch, n, 3, dtype=dtype) - 0.5)
    return model, Query(points, Conditioning(codes))


def test_contract_and_start() -> None:
    model, query = model_and_query()
    assert isinstance(model, Model) and MODELS["paper"] is PaperFace
    assert [(s.name, s.dim, s.per) for s in model.latent_spec()] == [
        ("identity", 6, "subject"), ("expression", 5, "scan")]
    out = model(query)
    assert out["sdf"].shape == (2, 64) and out["gates"].shape == (2, 64, 8)
    torch.testing.assert_close(out["gates"].sum(-1), torch.ones(2, 64))
    # a fresh model: both fields are the identity, the correction is zero, sdf = T(p)
    torch.testing.assert_close(out["neutral_points"], query.points, rtol=0, atol=1e-6)
    torch.testing.assert_close(out["template_points"], query.points, rtol=0, atol=1e-6)
    assert torch.count_nonzero(out["correction"]) == 0
    torch.testing.assert_close(out["sdf"], out["template_sdf"] + out["correction"])
    single, q = model_and_query(experts=1)
    assert "gates" not in single(q)


def test_initialise_centres_the_landmarks_on_the_data() -> None:
    model, query = model_and_query()
    mean = face_landmarks(1)
    model.initialise(mean)
    out = model(query)
    for key in ("landmarks_expression", "landmarks_identity"):
        torch.testing.assert_close(out[key], mean.expand(2, 68, 3), rtol=0, atol=1e-3)
    torch.testing.assert_close(model.template_landmarks.detach(), mean)


def test_experts_add_parameters_as_configured() -> None:
    counts = {k: sum(p.numel() for p in model_and_query(experts=k)[0].parameters())
              for k in (1, 8)}
    point_dim, code_dim = 3 + 6 * SMALL["pe_frequencies"], 11
    expert = (point_dim + code_dim) * 8 + 8 + 8 * 1 + 1  # one expert MLP, one hidden layer
    gate = (point_dim * 8 + 8) + code_dim * 8 + (8 * 8 + 8)
    assert counts[8] - counts[1] == 7 * expert + gate


def test_sdf_gradient_matches_finite_differences() -> None:
    model, query = model_and_query(batch=1, n=5, dtype=torch.float64)
    with torch.no_grad():  # leave the start, so the fields actually deform
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    points = query.points.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(query.at(points))["sdf"].sum(), points)
    h = 1e-6
    for axis in range(3):
        step = torch.zeros_like(points)
        step[..., axis] = h
        with torch.no_grad():
            fd = (model(query.at(points + step))["sdf"]
                  - model(query.at(points - step))["sdf"]) / (2 * h)
        torch.testing.assert_close(grad[..., axis], fd, rtol=1e-4, atol=1e-7)


def batch_of(query: Query, neutral: bool) -> dict[str, torch.Tensor]:
    points = query.points
    b, n = points.shape[:2]
    return {"surface_points": points[:, : n // 2], "surface_normals": torch.nn.functional
            .normalize(points[:, : n // 2], dim=-1), "space_points": points[:, n // 2:],
            "space_sdf": points[:, n // 2:].norm(dim=-1) - 0.4,
            "landmarks": torch.stack([face_landmarks(i) for i in range(b)]),
            **({"neutral": torch.tensor([True, False])} if neutral else {})}


@pytest.mark.parametrize(("experts", "neutral", "expected"), [
    (8, True, {"smooth", "entropy", "gate_supervision", "disentangle"}),
    (8, False, {"smooth", "entropy", "gate_supervision"}),
    (4, False, {"smooth", "entropy"}),  # regions supervise the gate only when K = 8
    (1, True, {"disentangle"}),
])
def test_loss_terms(experts: int, neutral: bool, expected: set[str]) -> None:
    model, query = model_and_query(experts=experts)
    weights = LossConfig(smooth=1.0, entropy=0.1)
    terms = model.get_loss_dict(batch_of(query, neutral), query.cond, weights)
    shared = {"sdf", "normal", "eikonal", "embedding", "eikonal_template", "landmark",
              "landmark_warp", "correction"}
    assert set(terms) == shared | expected
    assert all(t.ndim == 0 and torch.isfinite(t) for t in terms.values())
    doubled = model.get_loss_dict(batch_of(query, neutral), query.cond,
                                  dataclasses.replace(weights, landmark=2 * weights.landmark))
    torch.testing.assert_close(doubled["landmark"], 2 * terms["landmark"])


def test_region_labels_teach_the_gate_only() -> None:
    model, query = model_and_query(experts=8)
    for net in (*model.expression_field.mini_nets, *model.identity_field.mini_nets):
        torch.nn.init.normal_(net.heads[-1].weight, std=0.1)  # fields that move points
    codes = {k: v.clone().requires_grad_(True) for k, v in query.cond.codes.items()}
    cond = Conditioning(codes)
    only = LossConfig(**{f.name: 0.0 for f in dataclasses.fields(LossConfig)
                         if f.name not in ("smooth_sigma", "gate_supervision_epochs")})
    terms = model.get_loss_dict(batch_of(query, False), cond,
                                dataclasses.replace(only, gate_supervision=1.0))
    assert set(terms) == {"sdf", "normal", "eikonal", "embedding", "eikonal_template",
                          "landmark", "landmark_warp", "correction", "gate_supervision"}
    terms["gate_supervision"].backward()
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in model.gate.parameters())
    for name, p in model.named_parameters():
        if not name.startswith("gate."):
            assert p.grad is None or not p.grad.any(), name
    assert all(c.grad is None or not c.grad.any() for c in codes.values())


def test_train_fit_mesh_through_the_command_lines(tmp_path: Path) -> None:
    samples = []
    for i, (subject, expression) in enumerate([("1", "1_neutral"), ("1", "2_smile"),
                                                ("2", "1_neutral"), ("2", "2_smile")]):
        samples.append(tmp_path / f"{i}.npz")
        radius = 0.35 + 0.05 * i
        write_sphere_samples(samples[-1], subject, expression, radius, i, surface_points=2000,
                             uniform_points=1000, landmarks=face_landmarks(i) * radius / 0.4)
    config = {"method": "ours", "model": {"name": "paper", **SMALL},
              "loss": {"embedding": 10.0, "smooth": 1.0, "entropy": 0.1},
              "train": {"epochs": 30, "scans_per_batch": 4, "points_per_scan": 256,
                        "lr": 0.003, "code_lr": 0.01}}
    model = tmp_path / "model.pt"
    run = [sys.executable, "-m"]
    result = subprocess.run([*run, "facerecon.train", "--config", json.dumps(config),
                             "--samples", *map(str, samples), "--out", str(model), "--log-csv",
                             str(tmp_path / "log.csv"), "--device", "cpu"], cwd=REPO,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    log = np.genfromtxt(tmp_path / "log.csv", delimiter=",", names=True)
    assert log["sdf"][-3:].mean() < 0.5 * log["sdf"][:2].mean()
    assert log["landmark"][-1] < log["landmark"][0]
    codes = tmp_path / "codes.pt"
    fit = {**{k: config[k] for k in ("method", "model", "loss", "train")},
           "fit": {"iterations": 10, "points_per_scan": 256, "lr": 0.01}}
    result = subprocess.run([*run, "facerecon.fit", "--config", json.dumps(fit), "--model",
                             str(model), "--samples", str(samples[0]), "--out", str(codes),
                             "--device", "cpu"], cwd=REPO, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    result = subprocess.run([*run, "facerecon.mesh", "--model", str(model), "--codes",
                             str(codes), "--out", str(tmp_path / "m.ply"), "--resolution", "32",
                             "--coarse-resolution", "0", "--device", "cpu"], cwd=REPO,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def front_camera(batch: int, size: int = 64) -> torch.Tensor:
    """(B, 2, 4): orthographic front view, the unit sphere's [-1, 1]^2 onto the crop."""
    half = (size - 1) / 2
    return torch.tensor([[half, 0.0, 0.0, half], [0.0, -half, 0.0, half]]).expand(batch, 2, 4)


def image_query(batch: int = 2, n: int = 32) -> tuple[PaperFace, Query]:
    torch.manual_seed(0)
    model = PaperFace(PaperModelConfig(**{**SMALL, **IMAGES}))
    codes = {"identity": torch.randn(batch, 6) * 0.1, "expression": torch.randn(batch, 5) * 0.1}
    image = torch.rand(batch, 3, 64, 64)
    cond = Conditioning(codes, image=image, camera=front_camera(batch))
    return model, Query(torch.rand(batch, n, 3) - 0.5, cond)


def test_the_image_branch_reads_the_crop_where_the_point_projects() -> None:
    model, query = image_query()
    model.eval()
    prepared = model.prepare(query.cond)
    assert prepared.features.shape == (2, 8, 16, 16)
    out = model(query.at(query.points))
    assert out["image_features"].shape == (2, 32, 4)
    torch.testing.assert_close(model(Query(query.points, prepared))["sdf"], out["sdf"])
    # another crop changes the image features (and, once the correction is trained, the SDF)
    other = dataclasses.replace(query.cond, image=torch.rand(2, 3, 64, 64))
    assert not torch.allclose(model(Query(query.points, other))["image_features"],
                              out["image_features"])
    # the feature of a point comes from where it projects: moving a point along the
    # viewing direction (z) leaves its sampled image feature unchanged
    along_z = query.points + torch.tensor([0.0, 0.0, 0.2])
    f0 = image_features_at(query.points, query.cond.camera, prepared.features, 64, 1.0)
    f1 = image_features_at(along_z, query.cond.camera, prepared.features, 64, 1.0)
    torch.testing.assert_close(f0, f1)
    with pytest.raises(InputError, match="--views"):
        model.prepare(Conditioning(query.cond.codes))


def test_the_trunk_is_its_own_param_group_frozen_first() -> None:
    model, _ = image_query()
    groups = model.param_groups(TrainConfig(lr=1e-3))
    assert [g["name"] for g in groups] == ["backbone", "network"]
    assert groups[0]["frozen_epochs"] == IMAGES["freeze_backbone_epochs"]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert {id(p) for p in groups[0]["params"]} == {
        id(p) for p in model.encoder.backbone_parameters()}
