"""Contracts of the reusable pieces under facerecon.models, on small real tensors.

Each piece is checked against an independent computation in the test (numpy for the
encoding, plain per-sample matrix products for the gate and the experts, central finite
differences for the gradient), so that a wrong layout, broadcast or index shows up.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import perturb, random_directions
from torch import nn

import facerecon.config
from facerecon import losses
from facerecon.config import ImplicitModelConfig, LossConfig, TrainConfig
from facerecon.models import MESH_METHODS, MODELS, build_model
from facerecon.models.base import Conditioning, LatentSpace, Model, Query, sdf_with_gradient
from facerecon.models.codes import CODE_INIT_STD, LatentCodes
from facerecon.models.encoding import encoded_dim, fourier_encoding
from facerecon.models.experts import INIT_SPHERE_RADIUS, SOFTPLUS_BETA, ExpertMLPs
from facerecon.models.gating import Gate
from facerecon.models.implicit import ImplicitFace

ID_DIM, EXP_DIM = 4, 3


def small_config(experts: int = 1, pe_frequencies: int = 2, hidden_dim: int = 16,
                 hidden_layers: int = 2) -> ImplicitModelConfig:
    """A tiny implicit model config (fast on CPU)."""
    return ImplicitModelConfig(id_dim=ID_DIM, exp_dim=EXP_DIM, hidden_dim=hidden_dim,
                               hidden_layers=hidden_layers, pe_frequencies=pe_frequencies,
                               experts=experts, gate_hidden_dim=8)


def make_cond(batch: int, seed: int, dtype: torch.dtype = torch.float32) -> Conditioning:
    """Distinct, non-small identity and expression codes for ``batch`` scans."""
    gen = torch.Generator().manual_seed(seed)
    return Conditioning({"identity": torch.randn(batch, ID_DIM, generator=gen, dtype=dtype),
                         "expression": torch.randn(batch, EXP_DIM, generator=gen, dtype=dtype)})


# --------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("frequencies", [0, 1, 4])
def test_fourier_encoding_shape(frequencies: int) -> None:
    """(..., 3) -> (..., 6 L) for any leading shape; L = 0 gives an empty last axis."""
    for lead in [(7,), (2, 5), (2, 3, 4)]:
        points = torch.rand(*lead, 3)
        out = fourier_encoding(points, frequencies)
        assert out.shape == (*lead, 6 * frequencies)
        assert out.dtype == points.dtype


def test_fourier_encoding_values_match_numpy() -> None:
    """Layout: all sines then all cosines; within each, frequency k major, coordinate minor:
    out[..., 3k + c] = sin(2^k pi p_c), out[..., 3L + 3k + c] = cos(2^k pi p_c)."""
    frequencies = 5
    rng = np.random.default_rng(0)
    p = rng.uniform(-1.0, 1.0, size=(2, 6, 3))
    out = fourier_encoding(torch.from_numpy(p), frequencies).numpy()
    for k in range(frequencies):
        for c in range(3):
            angle = (2.0 ** k) * np.pi * p[..., c]
            np.testing.assert_allclose(out[..., 3 * k + c], np.sin(angle), atol=1e-12)
            np.testing.assert_allclose(out[..., 3 * frequencies + 3 * k + c], np.cos(angle),
                                       atol=1e-12)


def test_encoded_dim_is_xyz_plus_encoding() -> None:
    """encoded_dim(L) is the width of [p, gamma(p)]: 3 + 6 L."""
    points = torch.rand(4, 3)
    for frequencies in range(7):
        width = 3 + fourier_encoding(points, frequencies).shape[-1]
        assert encoded_dim(frequencies) == width == 3 + 6 * frequencies


# --------------------------------------------------------------------------- gating


def test_gate_outputs_are_distributions() -> None:
    """(B, N, K) non-negative weights summing to 1 over the experts, even for large inputs."""
    torch.manual_seed(0)
    gate = Gate(point_dim=9, code_dim=5, hidden_dim=12, experts=4)
    perturb(gate, 3.0, seed=1)
    alpha = gate(10.0 * torch.randn(3, 50, 9), 10.0 * torch.randn(3, 5))
    assert alpha.shape == (3, 50, 4)
    assert (alpha >= 0).all()
    torch.testing.assert_close(alpha.sum(-1), torch.ones(3, 50), atol=1e-6, rtol=0)


def test_gate_matches_direct_computation_per_scan() -> None:
    """alpha[b] = softmax(W2 relu(W1p p + b1 + Wc c_b) + b2) with scan b's own code."""
    torch.manual_seed(0)
    gate = Gate(point_dim=6, code_dim=5, hidden_dim=7, experts=3).double()
    perturb(gate, 0.5, seed=2)
    points = torch.randn(4, 11, 6, dtype=torch.float64)
    codes = torch.randn(4, 5, dtype=torch.float64)
    alpha = gate(points, codes)
    for b in range(4):
        hidden = points[b] @ gate.point.weight.T + gate.point.bias + gate.code.weight @ codes[b]
        logits = torch.relu(hidden) @ gate.out.weight.T + gate.out.bias
        torch.testing.assert_close(alpha[b], torch.softmax(logits, dim=-1), rtol=1e-12,
                                   atol=1e-12)


# --------------------------------------------------------------------------- experts


def reference_expert(module: ExpertMLPs, k: int, point_features: torch.Tensor,
                     code: torch.Tensor) -> torch.Tensor:
    """Expert k as a plain MLP on [point_features, code]: (N, P), (C,) -> (N,)."""
    x = torch.cat([point_features, code.expand(point_features.shape[0], -1)], dim=-1)
    n_layers = len(module.weights)
    for i in range(n_layers):
        x = x @ module.weights[i][k] + module.biases[i][k]
        if i < n_layers - 1:
            x = F.softplus(x, beta=SOFTPLUS_BETA)
    return x[:, 0]


def test_experts_output_shape() -> None:
    """(B, N, P), (B, C) -> (B, N, K)."""
    module = ExpertMLPs(experts=5, point_dim=9, code_dim=4, hidden_dim=8, hidden_layers=3)
    assert module(torch.randn(2, 13, 9), torch.randn(2, 4)).shape == (2, 13, 5)


def test_each_expert_is_a_plain_mlp() -> None:
    """Expert k of scan b equals its own MLP (weights[i][k], biases[i][k], softplus) on
    [point features, code_b]; all weights perturbed so that the code columns count."""
    torch.manual_seed(0)
    module = ExpertMLPs(experts=3, point_dim=9, code_dim=4, hidden_dim=8,
                        hidden_layers=3).double()
    perturb(module, 0.3, seed=3)
    points = torch.randn(2, 10, 9, dtype=torch.float64)
    codes = torch.randn(2, 4, dtype=torch.float64)
    out = module(points, codes)
    for b in range(2):
        for k in range(3):
            torch.testing.assert_close(out[b, :, k], reference_expert(module, k, points[b],
                                                                      codes[b]),
                                       rtol=1e-10, atol=1e-12)


def test_experts_init_reads_only_xyz() -> None:
    """At initialisation the weights on everything but the first 3 point features are zero:
    the output does not change with the codes or the other point features."""
    torch.manual_seed(0)
    module = ExpertMLPs(experts=2, point_dim=3 + 12, code_dim=6, hidden_dim=16,
                        hidden_layers=2)
    points = torch.randn(3, 20, 15)
    base = module(points, torch.zeros(3, 6))
    other = points.clone()
    other[..., 3:] = torch.randn(3, 20, 12)
    torch.testing.assert_close(module(other, torch.randn(3, 6)), base, rtol=0, atol=0)


@pytest.mark.parametrize("encoding", ["zeros", "fourier"])
def test_experts_init_is_sphere_sdf_on_average(encoding: str) -> None:
    """Geometric init: averaged over many independently initialised experts and directions,
    f(p) = |p| - INIT_SPHERE_RADIUS within 0.02 for |p| in [0.1, 0.8] (one narrow hidden
    layer, where softplus is close to the ReLU of the derivation)."""
    frequencies = 3
    torch.manual_seed(0)
    module = ExpertMLPs(experts=256, point_dim=3 + 6 * frequencies, code_dim=4, hidden_dim=16,
                        hidden_layers=1)
    radii = torch.linspace(0.1, 0.8, 8)
    points = (random_directions(256, seed=4)[:, None] * radii[None, :, None]).reshape(1, -1, 3)
    extra = (torch.zeros(1, points.shape[1], 6 * frequencies) if encoding == "zeros"
             else fourier_encoding(points, frequencies))
    with torch.no_grad():
        out = module(torch.cat([points, extra], dim=-1), torch.zeros(1, 4))
    mean = out.reshape(256, 8, 256).mean(dim=(0, 2))
    torch.testing.assert_close(mean, radii - INIT_SPHERE_RADIUS, atol=0.02, rtol=0)


def test_each_expert_starts_sphere_like() -> None:
    """At config.yaml's size (128 wide, 3 hidden layers) each expert at initialisation,
    with zero codes, is negative near the centre, positive at |p| = 0.8, increasing along
    every ray, and within 0.2 of |p| - r on average over |p| in [0.1, 0.8]."""
    torch.manual_seed(0)
    module = ExpertMLPs(experts=4, point_dim=3, code_dim=4, hidden_dim=128, hidden_layers=3)
    radii = torch.linspace(0.1, 0.8, 15)
    points = (random_directions(256, seed=5)[:, None] * radii[None, :, None]).reshape(1, -1, 3)
    with torch.no_grad():
        out = module(points, torch.zeros(1, 4)).reshape(256, 15, 4)
    assert (out[:, 0] < 0).all()
    assert (out[:, -1] > 0).all()
    assert (out.diff(dim=1) > 0).all()
    error = (out - (radii[None, :, None] - INIT_SPHERE_RADIUS)).abs().mean(dim=(0, 1))
    assert (error < 0.2).all(), error


# --------------------------------------------------------------------------- codes

SPEC = (LatentSpace("shape", 4, "subject"), LatentSpace("motion", 6, "scan"),
        LatentSpace("style", 2, "subject"))


def test_code_tables_follow_per() -> None:
    """A 'subject' space has n_subjects rows, a 'scan' space n_scans rows, of its dim."""
    codes = LatentCodes(SPEC, n_subjects=3, n_scans=7)
    assert set(codes.tables) == {"shape", "motion", "style"}
    assert codes.tables["shape"].weight.shape == (3, 4)
    assert codes.tables["motion"].weight.shape == (7, 6)
    assert codes.tables["style"].weight.shape == (3, 2)


def test_code_forward_picks_rows_by_the_right_index() -> None:
    """Subject spaces are indexed by subject_idx, scan spaces by scan_idx: (B, dim) each."""
    torch.manual_seed(0)
    codes = LatentCodes(SPEC, n_subjects=3, n_scans=7)
    subject_idx = torch.tensor([2, 0, 1, 2])
    scan_idx = torch.tensor([6, 1, 3, 0])
    out = codes(subject_idx, scan_idx)
    assert set(out) == {"shape", "motion", "style"}
    for name, index in [("shape", subject_idx), ("motion", scan_idx), ("style", subject_idx)]:
        table = codes.tables[name].weight
        assert out[name].shape == (4, table.shape[1])
        torch.testing.assert_close(out[name], table[index], rtol=0, atol=0)


def test_code_means() -> None:
    """means(): each table's column mean, detached, of shape (dim,)."""
    torch.manual_seed(0)
    codes = LatentCodes(SPEC, n_subjects=3, n_scans=7)
    means = codes.means()
    assert set(means) == {"shape", "motion", "style"}
    for name, mean in means.items():
        assert not mean.requires_grad
        torch.testing.assert_close(mean, codes.tables[name].weight.detach().mean(0))


def test_code_init_std() -> None:
    """New codes are N(0, CODE_INIT_STD^2), CODE_INIT_STD = 0.01, in every table."""
    assert CODE_INIT_STD == 0.01
    torch.manual_seed(0)
    codes = LatentCodes((LatentSpace("a", 64, "subject"), LatentSpace("b", 32, "scan")),
                        n_subjects=2000, n_scans=4000)
    for table in codes.tables.values():
        weight = table.weight.detach()
        assert abs(weight.std().item() - 0.01) < 0.0005
        assert abs(weight.mean().item()) < 0.0005


def test_code_seeded_construction_is_reproducible() -> None:
    """The same torch seed builds the same tables; another seed other ones."""
    def build(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return {k: v.detach().clone()
                for k, v in LatentCodes(SPEC, n_subjects=5, n_scans=9).state_dict().items()}

    first, again, other = build(3), build(3), build(4)
    assert first.keys() == again.keys() == other.keys()
    for key in first:
        torch.testing.assert_close(first[key], again[key], rtol=0, atol=0)
        assert not torch.equal(first[key], other[key])


# --------------------------------------------------------------------------- implicit model


def test_implicit_face_is_a_model_with_its_latent_spec() -> None:
    """ImplicitFace is a Model with an identity code per subject, an expression per scan."""
    cfg = small_config()
    model = ImplicitFace(cfg)
    assert isinstance(model, Model)
    assert isinstance(build_model(cfg), ImplicitFace)
    assert model.latent_spec() == (LatentSpace("identity", ID_DIM, "subject"),
                                   LatentSpace("expression", EXP_DIM, "scan"))


@pytest.mark.parametrize("experts", [1, 3])
def test_implicit_forward_outputs(experts: int) -> None:
    """'sdf' (B, N) always; 'gates' (B, N, K), a distribution, only when K > 1."""
    torch.manual_seed(0)
    model = ImplicitFace(small_config(experts=experts))
    out = model(Query(torch.rand(2, 9, 3) - 0.5, make_cond(2, seed=0)))
    assert set(out) == ({"sdf"} if experts == 1 else {"sdf", "gates"})
    assert out["sdf"].shape == (2, 9)
    if experts > 1:
        assert out["gates"].shape == (2, 9, experts)
        torch.testing.assert_close(out["gates"].sum(-1), torch.ones(2, 9), atol=1e-6, rtol=0)


@pytest.mark.parametrize("experts", [1, 3])
def test_implicit_forward_composes_its_parts(experts: int) -> None:
    """sdf = sum_k alpha_k y_k (y_0 alone for K = 1) on h = [p, gamma(p)] and the codes
    [identity, expression], in that order."""
    torch.manual_seed(0)
    model = ImplicitFace(small_config(experts=experts)).double()
    perturb(model, 0.3, seed=6)
    points = torch.rand(2, 9, 3, dtype=torch.float64) - 0.5
    cond = make_cond(2, seed=1, dtype=torch.float64)
    out = model(Query(points, cond))
    features = torch.cat([points, fourier_encoding(points, 2)], dim=-1)
    codes = torch.cat([cond.codes["identity"], cond.codes["expression"]], dim=-1)
    per_expert = model.experts(features, codes)
    if experts == 1:
        expected = per_expert[..., 0]
    else:
        assert model.gate is not None
        expected = (model.gate(features, codes) * per_expert).sum(-1)
    torch.testing.assert_close(out["sdf"], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("experts", [1, 4])
def test_param_groups_cover_every_parameter_once(experts: int) -> None:
    """The groups hold each parameter exactly once, all at TrainConfig.lr."""
    model = ImplicitFace(small_config(experts=experts))
    groups = model.param_groups(TrainConfig(lr=0.0123))
    grouped = [id(p) for g in groups for p in g["params"]]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in model.parameters()}
    assert all(g["lr"] == 0.0123 for g in groups)
    torch.optim.Adam(groups)  # a valid optimiser spec


def expected_parameter_count(cfg: ImplicitModelConfig) -> int:
    """Experts: K MLPs [3 + 6L + codes] -> hidden x layers -> 1; gate (K > 1): point Linear
    with bias, code Linear without, output Linear with bias."""
    point_dim = 3 + 6 * cfg.pe_frequencies
    code_dim = cfg.id_dim + cfg.exp_dim
    dims = [point_dim + code_dim] + [cfg.hidden_dim] * cfg.hidden_layers + [1]
    per_expert = sum(d_in * d_out + d_out for d_in, d_out in zip(dims[:-1], dims[1:],
                                                                  strict=True))
    count = cfg.experts * per_expert
    if cfg.experts > 1:
        g = cfg.gate_hidden_dim
        count += (point_dim * g + g) + code_dim * g + (g * cfg.experts + cfg.experts)
    return count


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters())


def test_parameter_count_with_experts() -> None:
    """Going from 1 to 4 experts adds 3 more MLPs and the gate's three Linear layers."""
    one, four = small_config(experts=1), small_config(experts=4)
    assert count_parameters(ImplicitFace(one)) == expected_parameter_count(one)
    assert count_parameters(ImplicitFace(four)) == expected_parameter_count(four)
    per_expert = expected_parameter_count(one)
    point_dim, code_dim, g = 3 + 6 * 2, ID_DIM + EXP_DIM, 8
    gate = (point_dim * g + g) + code_dim * g + (g * 4 + 4)
    assert count_parameters(ImplicitFace(four)) - count_parameters(ImplicitFace(one)) == (
        3 * per_expert + gate)


@pytest.mark.parametrize("experts", [1, 3])
def test_parameter_count_with_encoding(experts: int) -> None:
    """The first layer reads 3 + 6 L point features (and the gate's, with K > 1)."""
    counts = {}
    for frequencies in (0, 1, 4):
        cfg = small_config(experts=experts, pe_frequencies=frequencies)
        model = ImplicitFace(cfg)
        assert model.experts.weights[0].shape == (experts, 3 + 6 * frequencies + ID_DIM
                                                  + EXP_DIM, 16)
        if model.gate is not None:
            assert model.gate.point.in_features == 3 + 6 * frequencies
        counts[frequencies] = count_parameters(model)
        assert counts[frequencies] == expected_parameter_count(cfg)
    gate_hidden = 8 if experts > 1 else 0
    assert counts[4] - counts[0] == 6 * 4 * (experts * 16 + gate_hidden)
    assert counts[1] - counts[0] == 6 * (experts * 16 + gate_hidden)


@pytest.mark.parametrize("experts", [1, 3])
def test_sdf_gradient_matches_finite_differences(experts: int) -> None:
    """sdf_with_gradient's d sdf / d p equals central differences (float64), and keeps the
    graph for the double backward."""
    torch.manual_seed(0)
    model = ImplicitFace(small_config(experts=experts)).double()
    perturb(model, 0.2, seed=7)
    points = torch.rand(2, 12, 3, dtype=torch.float64) - 0.5
    query = Query(points, make_cond(2, seed=2, dtype=torch.float64))
    out, grad = sdf_with_gradient(model, query)
    assert grad.shape == (2, 12, 3)
    assert grad.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(out["sdf"], model(query)["sdf"])
        h = 1e-6
        numeric = torch.empty_like(points)
        for axis in range(3):
            step = torch.zeros(3, dtype=torch.float64)
            step[axis] = h
            plus = model(query.at(points + step))["sdf"]
            minus = model(query.at(points - step))["sdf"]
            numeric[..., axis] = (plus - minus) / (2 * h)
    assert numeric.abs().max() > 0.1  # a gradient worth comparing
    torch.testing.assert_close(grad.detach(), numeric, rtol=1e-4, atol=1e-7)


def make_batch(seed: int, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """2 scans x (8 surface + 10 space) samples in draw_points' keys."""
    gen = torch.Generator().manual_seed(seed)
    normals = torch.randn(2, 8, 3, generator=gen, dtype=dtype)
    normals = normals / normals.norm(dim=-1, keepdim=True)
    space = torch.rand(2, 10, 3, generator=gen, dtype=dtype) - 0.5
    return {"surface_points": 0.35 * normals, "surface_normals": normals,
            "space_points": space, "space_sdf": space.norm(dim=-1) - 0.35}


@pytest.mark.parametrize(("experts", "smooth", "entropy", "extra"), [
    (1, 1.0, 1.0, set()),
    (3, 0.0, 0.0, set()),
    (3, 1.0, 0.0, {"smooth"}),
    (3, 0.0, 1.0, {"entropy"}),
    (3, 1.0, 1.0, {"smooth", "entropy"}),
])
def test_loss_dict_terms(experts: int, smooth: float, entropy: float, extra: set[str]) -> None:
    """Finite scalar terms sdf, normal, eikonal, embedding; smooth and entropy only with
    experts > 1 and a positive weight."""
    torch.manual_seed(0)
    model = ImplicitFace(small_config(experts=experts)).double()
    perturb(model, 0.1, seed=8)
    terms = model.get_loss_dict(make_batch(0), make_cond(2, seed=3, dtype=torch.float64),
                                LossConfig(smooth=smooth, entropy=entropy))
    assert set(terms) == {"sdf", "normal", "eikonal", "embedding"} | extra
    for name, value in terms.items():
        assert value.dim() == 0, name
        assert torch.isfinite(value), name
        assert value > 0, name


def test_loss_terms_are_multiplied_by_their_weights() -> None:
    """Doubling one weight doubles exactly that term (same inputs, same seed)."""
    model = ImplicitFace(small_config(experts=3)).double()
    perturb(model, 0.1, seed=9)
    batch, cond = make_batch(1), make_cond(2, seed=4, dtype=torch.float64)
    base_weights = LossConfig(sdf=3.0, normal=2.0, eikonal=1.5, embedding=5.0, smooth=0.7,
                              entropy=0.3)

    def terms(weights: LossConfig) -> dict[str, float]:
        torch.manual_seed(11)  # the smoothness term draws neighbour offsets
        return {k: v.item() for k, v in model.get_loss_dict(batch, cond, weights).items()}

    base = terms(base_weights)
    for name in base:
        doubled = terms(dataclasses.replace(base_weights,
                                            **{name: 2 * getattr(base_weights, name)}))
        for other, value in doubled.items():
            factor = 2.0 if other == name else 1.0
            assert math.isclose(value, factor * base[other], rel_tol=1e-12), (name, other)


def test_loss_terms_values() -> None:
    """The sdf term targets 0 on the surface points and space_sdf on the space points; the
    embedding term is the prior on the batch's codes."""
    model = ImplicitFace(small_config(experts=1)).double()
    perturb(model, 0.1, seed=10)
    batch, cond = make_batch(2), make_cond(2, seed=5, dtype=torch.float64)
    weights = LossConfig(sdf=3.0, embedding=5.0)
    terms = model.get_loss_dict(batch, cond, weights)
    with torch.no_grad():
        surface = model(Query(batch["surface_points"], cond))["sdf"]
        space = model(Query(batch["space_points"], cond))["sdf"]
    errors = torch.cat([surface.abs(), (space - batch["space_sdf"]).abs()], dim=1)
    assert math.isclose(terms["sdf"].item(), 3.0 * errors.mean().item(), rel_tol=1e-10)
    prior = losses.embedding_prior(cond.codes["identity"], cond.codes["expression"])
    assert math.isclose(terms["embedding"].item(), 5.0 * prior.item(), rel_tol=1e-12)


# --------------------------------------------------------------------------- registry


def test_registry_matches_model_configs() -> None:
    """MODELS and MESH_METHODS partition MODEL_CONFIGS' names, by the config class's kind."""
    configs = facerecon.config.MODEL_CONFIGS
    assert set(MODELS) | set(MESH_METHODS) == set(configs)
    assert not set(MODELS) & set(MESH_METHODS)
    for name in MODELS:
        assert configs[name].kind == "implicit", name
        assert issubclass(MODELS[name], Model), name
    for name in MESH_METHODS:
        assert configs[name].kind == "mesh", name
    for name, cls in configs.items():
        assert cls().name == name
