"""The i3DMM baseline (facerecon.models.i3dmm) on small real tensors.

Each property is checked against an independent computation in the test: the sphere the
geometric initialisation should give, a plain per-scan MLP for the deformation network,
a parameter count from the configured sizes, central finite differences for the gradient,
analytic spheres for training, and the trainer's command line end to end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import perturb, random_directions, write_sphere_samples
from torch import nn

from facerecon.config import I3dmmModelConfig, LossConfig, TrainConfig
from facerecon.models import MODELS, LatentCodes
from facerecon.models.base import Conditioning, LatentSpace, Model, Query, sdf_with_gradient
from facerecon.models.encoding import fourier_encoding
from facerecon.models.experts import INIT_SPHERE_RADIUS, SOFTPLUS_BETA
from facerecon.models.i3dmm import I3dmm

REPO = Path(__file__).resolve().parents[1]
ID_DIM, EXP_DIM = 4, 3
LOSS_TERMS = {"sdf", "normal", "eikonal", "embedding", "deformation"}


def small_config(**changes: int) -> I3dmmModelConfig:
    """A tiny i3DMM config (fast on CPU)."""
    sizes = {"id_dim": ID_DIM, "exp_dim": EXP_DIM, "pe_frequencies": 2,
             "deform_hidden_dim": 32, "deform_layers": 4, "reference_hidden_dim": 32,
             "reference_layers": 2}
    return I3dmmModelConfig(**{**sizes, **changes})


def make_cond(batch: int, seed: int, dtype: torch.dtype = torch.float32) -> Conditioning:
    """Distinct, non-small identity and expression codes for ``batch`` scans."""
    gen = torch.Generator().manual_seed(seed)
    return Conditioning({"identity": torch.randn(batch, ID_DIM, generator=gen, dtype=dtype),
                         "expression": torch.randn(batch, EXP_DIM, generator=gen, dtype=dtype)})


def sphere_batch(radii: torch.Tensor, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A loss batch of spheres of ``radii`` (B,): n surface points with normals, n points
    uniform in the unit ball with their exact SDF |p| - r."""
    b = len(radii)
    normals = torch.randn(b, n, 3, generator=gen)
    normals = normals / normals.norm(dim=-1, keepdim=True)
    space = torch.randn(b, n, 3, generator=gen)
    space = (space / space.norm(dim=-1, keepdim=True)
             * torch.rand(b, n, 1, generator=gen) ** (1 / 3))
    return {"surface_points": normals * radii[:, None, None], "surface_normals": normals,
            "space_points": space, "space_sdf": space.norm(dim=-1) - radii[:, None]}


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in module.parameters())


pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- contract


def test_i3dmm_is_a_model_with_its_latent_spec() -> None:
    """A Model with an identity code per subject and an expression code per scan."""
    model = I3dmm(small_config())
    assert isinstance(model, Model)
    assert model.latent_spec() == (LatentSpace("identity", ID_DIM, "subject"),
                                   LatentSpace("expression", EXP_DIM, "scan"))


def test_forward_output_shapes() -> None:
    """{'sdf': (B, N), 'displacement': (B, N, 3)}, also after training moved the weights."""
    torch.manual_seed(0)
    model = I3dmm(small_config())
    for _ in range(2):
        out = model(Query(torch.rand(2, 9, 3) - 0.5, make_cond(2, seed=0)))
        assert set(out) == {"sdf", "displacement"}
        assert out["sdf"].shape == (2, 9)
        assert out["displacement"].shape == (2, 9, 3)
        perturb(model, 0.1, seed=1)


def test_init_is_the_identity_field_into_a_sphere() -> None:
    """At initialisation d(p) = 0 exactly for any code, so the SDF is the reference
    network's and the same for every scan; averaged over independently initialised models
    and directions it is |p| - INIT_SPHERE_RADIUS within 0.04 (geometric initialisation;
    one hidden reference layer, where softplus is close to the ReLU of the derivation, as
    in tests/test_models.py); every model is negative near the centre."""
    radii = torch.linspace(0.1, 0.8, 8)
    points = (random_directions(128, seed=2)[:, None] * radii[None, :, None]).reshape(1, -1, 3)
    points = points.expand(3, -1, -1)
    sdfs = []
    for seed in range(24):
        torch.manual_seed(seed)
        model = I3dmm(small_config(reference_layers=1))
        with torch.no_grad():
            out = model(Query(points, make_cond(3, seed=seed)))
        assert torch.equal(out["displacement"], torch.zeros_like(out["displacement"]))
        torch.testing.assert_close(out["sdf"][1:], out["sdf"][:1].expand(2, -1), rtol=0, atol=0)
        sdf = out["sdf"][0].reshape(128, 8)
        assert (sdf[:, 0] < 0).all()
        sdfs.append(sdf)
    mean = torch.stack(sdfs).mean(dim=(0, 1))
    torch.testing.assert_close(mean, radii - INIT_SPHERE_RADIUS, atol=0.04, rtol=0)


def test_sdf_is_the_reference_shape_at_the_displaced_point() -> None:
    """sdf(p) = g(p + d(p)) with weights perturbed; g reads no code (it gives the same
    value for every scan), d does (it differs between scans)."""
    torch.manual_seed(0)
    model = I3dmm(small_config()).double()
    perturb(model, 0.1, seed=3)
    points = (torch.rand(1, 20, 3, dtype=torch.float64) - 0.5).expand(3, -1, -1)
    out = model(Query(points, make_cond(3, seed=4, dtype=torch.float64)))
    reference = model.reference_sdf(points + out["displacement"])
    torch.testing.assert_close(out["sdf"], reference, rtol=1e-12, atol=1e-12)
    assert (out["displacement"][0] - out["displacement"][1]).abs().max() > 1e-3
    same_q = model.reference_sdf(points)
    torch.testing.assert_close(same_q[1:], same_q[:1].expand(2, -1), rtol=0, atol=0)


def plain_deformation(model: I3dmm, points: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """The deformation network as a plain MLP on one scan: x = [p, gamma(p), code];
    softplus hidden layers; layer L // 2 reads [h, x]; linear 3-vector output."""
    cfg = model.cfg
    x = torch.cat([points, fourier_encoding(points, cfg.pe_frequencies),
                   code.expand(points.shape[0], -1)], dim=-1)
    layers = model.deformation.layers
    assert len(layers) == cfg.deform_layers + 1
    h = x
    for i, layer in enumerate(layers):
        if i == cfg.deform_layers // 2 and i > 0:
            h = torch.cat([h, x], dim=-1)
        h = h @ layer.weight.T + layer.bias
        if i < cfg.deform_layers:
            h = F.softplus(h, beta=SOFTPLUS_BETA)
    return h


@pytest.mark.parametrize("deform_layers", [1, 4, 5])
def test_deformation_is_a_plain_mlp_per_scan(deform_layers: int) -> None:
    """Scan b's displacement equals the plain MLP on [p, gamma(p), z_id_b, z_exp_b]
    (identity before expression), with the skip at hidden layer deform_layers // 2."""
    torch.manual_seed(0)
    model = I3dmm(small_config(deform_layers=deform_layers, deform_hidden_dim=16)).double()
    perturb(model, 0.2, seed=5)
    points = torch.rand(3, 11, 3, dtype=torch.float64) - 0.5
    cond = make_cond(3, seed=6, dtype=torch.float64)
    out = model(Query(points, cond))
    for b in range(3):
        code = torch.cat([cond.codes["identity"][b], cond.codes["expression"][b]])
        torch.testing.assert_close(out["displacement"][b],
                                   plain_deformation(model, points[b], code),
                                   rtol=1e-10, atol=1e-12)


def test_param_groups_cover_every_parameter_once() -> None:
    """The groups hold each parameter exactly once: the deformation network at
    TrainConfig.lr, the reference network at reference_lr_scale times it."""
    model = I3dmm(small_config())
    groups = model.param_groups(TrainConfig(lr=0.0125))
    grouped = [id(p) for g in groups for p in g["params"]]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in model.parameters()}
    lrs = {g["name"]: g["lr"] for g in groups}
    scale = I3dmmModelConfig().reference_lr_scale
    assert lrs == {"deformation": 0.0125, "reference": 0.0125 * scale}
    torch.optim.Adam(groups)  # a valid optimiser spec


def test_loss_dict_terms() -> None:
    """The five named terms, finite scalars; the deformation term is LossConfig().deformation x
    mean |d|^2 over the batch's surface and space points (0 at initialisation)."""
    torch.manual_seed(0)
    model = I3dmm(small_config())
    gen = torch.Generator().manual_seed(7)
    batch = sphere_batch(torch.tensor([0.3, 0.5]), 16, gen)
    cond = make_cond(2, seed=8)
    terms = model.get_loss_dict(batch, cond, LossConfig())
    assert set(terms) == LOSS_TERMS
    assert all(t.shape == () and torch.isfinite(t) for t in terms.values())
    assert terms["deformation"].item() == 0.0
    perturb(model, 0.05, seed=9)
    terms = model.get_loss_dict(batch, cond, LossConfig())
    points = torch.cat([batch["surface_points"], batch["space_points"]], dim=1)
    d = model(Query(points, cond))["displacement"]
    expected = LossConfig().deformation * (d ** 2).sum(-1).mean()
    assert expected.item() > 0
    torch.testing.assert_close(terms["deformation"], expected)


# --------------------------------------------------------------------------- sizes


def expected_parameter_counts(cfg: I3dmmModelConfig) -> tuple[int, int]:
    """(deformation, reference). Deformation: Linear layers [3 + 6 L + codes] -> H x
    deform_layers -> 3, the input concatenated again to hidden layer deform_layers // 2
    (when deform_layers >= 2); reference: Linear layers 3 -> R x reference_layers -> 1."""
    inp = 3 + 6 * cfg.pe_frequencies + cfg.id_dim + cfg.exp_dim
    h, n = cfg.deform_hidden_dim, cfg.deform_layers
    deform = (inp * h + h) + (n - 1) * (h * h + h) + (h * 3 + 3)
    if n >= 2:
        deform += inp * h  # skip connection
    r, m = cfg.reference_hidden_dim, cfg.reference_layers
    reference = (3 * r + r) + (m - 1) * (r * r + r) + (r + 1)
    return deform, reference


@pytest.mark.parametrize("changes", [{}, {"deform_layers": 1}, {"deform_layers": 3},
                                     {"pe_frequencies": 0}, {"reference_layers": 1},
                                     {"deform_hidden_dim": 24, "reference_hidden_dim": 8},
                                     {"id_dim": 9, "exp_dim": 5}])
def test_parameter_count_matches_the_configured_sizes(changes: dict) -> None:
    cfg = small_config(**changes)
    model = I3dmm(cfg)
    deform, reference = expected_parameter_counts(cfg)
    assert count_parameters(model.deformation) == deform
    assert count_parameters(model.reference) == reference
    assert count_parameters(model) == deform + reference


def test_parameter_count_at_protocol_size() -> None:
    """PROTOCOL.md's sizes (8 x 1024 deformation, 3 x 512 reference, 6 frequencies,
    128 + 128 codes) are I3dmmModelConfig's defaults: 295 inputs, so
    (295 + 1) 1024 + 7 (1024 + 1) 1024 + (1024 + 1) 3 + 295 x 1024 (skip) = 7,955,459 and
    (3 + 1) 512 + 2 (512 + 1) 512 + 513 = 527,873."""
    cfg = I3dmmModelConfig()
    assert (cfg.deform_layers, cfg.deform_hidden_dim, cfg.reference_layers,
            cfg.reference_hidden_dim, cfg.pe_frequencies) == (8, 1024, 3, 512, 6)
    model = I3dmm(cfg)
    assert expected_parameter_counts(cfg) == (7_955_459, 527_873)
    assert count_parameters(model) == 7_955_459 + 527_873


# --------------------------------------------------------------------------- gradient


def test_sdf_gradient_matches_finite_differences() -> None:
    """sdf_with_gradient's d sdf / d p (through the deformation and the reference network)
    equals central differences in float64, and keeps the graph for the double backward."""
    torch.manual_seed(0)
    model = I3dmm(small_config()).double()
    perturb(model, 0.1, seed=10)
    points = torch.rand(2, 12, 3, dtype=torch.float64) - 0.5
    query = Query(points, make_cond(2, seed=11, dtype=torch.float64))
    out, grad = sdf_with_gradient(model, query)
    assert grad.shape == (2, 12, 3)
    assert grad.requires_grad
    # the deformation contributes: the gradient is not that of the reference shape at q
    q = (points + out["displacement"]).detach().requires_grad_(True)
    (grad_q,) = torch.autograd.grad(model.reference_sdf(q).sum(), q)
    assert (grad - grad_q).abs().max() > 1e-3
    eps = 1e-6
    numeric = torch.zeros_like(points)
    with torch.no_grad():
        for c in range(3):
            step = torch.zeros(3, dtype=torch.float64)
            step[c] = eps
            plus = model(query.at(points + step))["sdf"]
            minus = model(query.at(points - step))["sdf"]
            numeric[..., c] = (plus - minus) / (2 * eps)
    torch.testing.assert_close(grad.detach(), numeric, rtol=1e-5, atol=1e-6)
    # double backward: the eikonal term reaches the deformation network's weights
    (second,) = torch.autograd.grad(grad.norm(dim=-1).sum(),
                                    model.deformation.layers[0].weight)
    assert second.abs().max() > 0


# --------------------------------------------------------------------------- training


def test_training_fits_spheres_through_the_deformation() -> None:
    """150 Adam steps on 4 analytic spheres (radii 0.3 .. 0.5; 2 subjects x 2 scans, codes
    from LatentCodes): the SDF loss falls below 30% of its start, each scan's surface is
    found within 0.02 units, and the displacements (the only place the codes enter) are
    non-zero and differ between scans."""
    torch.manual_seed(0)
    model = I3dmm(small_config(exp_dim=4))
    radii = torch.tensor([0.30, 0.37, 0.43, 0.50])
    subject_idx, scan_idx = torch.tensor([0, 0, 1, 1]), torch.arange(4)
    codes = LatentCodes(model.latent_spec(), n_subjects=2, n_scans=4)
    optimizer = torch.optim.Adam([*model.param_groups(TrainConfig(lr=2e-3)),
                                  {"name": "codes", "params": codes.parameters(), "lr": 1e-2}])
    weights = LossConfig(embedding=10.0)
    gen = torch.Generator().manual_seed(12)
    sdf_losses = []
    for _ in range(150):
        terms = model.get_loss_dict(sphere_batch(radii, 256, gen),
                                    Conditioning(codes(subject_idx, scan_idx)), weights)
        assert set(terms) == LOSS_TERMS
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sdf_losses.append(terms["sdf"].item())
    assert np.mean(sdf_losses[-10:]) < 0.3 * sdf_losses[0], (sdf_losses[0], sdf_losses[-10:])
    test = sphere_batch(radii, 1000, gen)
    with torch.no_grad():
        out = model(Query(test["surface_points"], Conditioning(codes(subject_idx, scan_idx))))
    per_scan_error = out["sdf"].abs().mean(dim=1)
    assert (per_scan_error < 0.02).all(), per_scan_error
    magnitude = out["displacement"].norm(dim=-1).mean(dim=1)
    assert (magnitude > 0.01).all(), magnitude
    unit = test["surface_points"][0:1] / radii[0]  # the same directions for every scan
    with torch.no_grad():
        d = model(Query(unit.expand(4, -1, -1) * 0.4,
                        Conditioning(codes(subject_idx, scan_idx))))["displacement"]
    assert (d[0] - d[3]).norm(dim=-1).mean() > 0.01


# --------------------------------------------------------------------------- trainer CLI



def test_trainer_cli_trains_i3dmm(tmp_path: Path) -> None:
    """`python -m facerecon.train` on a config naming model 'i3dmm' (registered in
    facerecon.models.MODELS) trains it: exit 0, one log row per epoch with the five loss
    terms, the SDF term going down, and a trained model whose network is an I3dmm state
    dict."""
    assert "i3dmm" in MODELS, "register I3dmm in facerecon.models.MODELS"
    assert MODELS["i3dmm"] is I3dmm
    samples = []
    for i, radius in enumerate([0.3, 0.4, 0.5]):
        path = tmp_path / f"{i}.npz"
        write_sphere_samples(path, str(i), "1_neutral", radius, seed=i, surface_points=2000,
                             uniform_points=1000)
        samples.append(path)
    model_cfg = {"name": "i3dmm", "id_dim": 4, "exp_dim": 4, "pe_frequencies": 2,
                 "deform_hidden_dim": 32, "deform_layers": 2, "reference_hidden_dim": 32,
                 "reference_layers": 2}
    config = {"method": "i3", "model": model_cfg, "loss": {"embedding": 10.0},
              "train": {"epochs": 5, "scans_per_batch": 3, "points_per_scan": 256,
                        "lr": 0.002, "code_lr": 0.01}}
    out, log = tmp_path / "model.pt", tmp_path / "log.csv"
    result = subprocess.run([sys.executable, "-m", "facerecon.train", "--config",
                             json.dumps(config), "--samples", *map(str, samples), "--out",
                             str(out), "--log-csv", str(log), "--device", "cpu"],
                            cwd=REPO, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = np.genfromtxt(log, delimiter=",", names=True)
    assert len(rows) == 5
    assert LOSS_TERMS <= set(rows.dtype.names)
    assert np.isfinite(rows["loss"]).all()
    assert rows["sdf"][-1] < rows["sdf"][0]
    state = torch.load(out, weights_only=True)
    reference = I3dmm(small_config(**{k: v for k, v in model_cfg.items() if k != "name"}))
    assert set(state["network"]) == set(reference.state_dict())
