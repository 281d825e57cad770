"""The SE(3) deformation field on real tensors, against independent computations.

The exp maps are checked against scipy's rotations and torch's matrix exponential of
the 4x4 twist matrix, their gradients against finite differences (also at exactly 0);
the hyper-SIREN against a per-scan evaluation written out here; the field against its
documented initial identity, its training signal and its blend normalisation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from torch import nn

from facerecon.models.deformation import (
    SIREN_OMEGA_0,
    DeformationField,
    HyperSiren,
    apply_se3,
    hat,
    se3_exp,
    so3_exp,
)

EYE = torch.eye(3, dtype=torch.float64)


def random_rotvecs(n: int, seed: int) -> np.ndarray:
    """n rotation vectors: random axes, angles spread from 1e-9 to just under pi."""
    rng = np.random.default_rng(seed)
    axes = rng.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.concatenate([10.0 ** rng.uniform(-9, 0, n // 2),
                             rng.uniform(0, math.pi - 1e-3, n - n // 2)])
    angles[:4] = [0.0099, 0.01, 0.0101, 1e-5]  # either side of the series switch
    return axes * angles[:, None]


def twist_matrix(twist: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 4, 4) element [[W, v], [0, 0]] of se(3)."""
    top = torch.cat([hat(twist[..., :3]), twist[..., 3:, None]], dim=-1)
    return torch.cat([top, torch.zeros_like(top[..., :1, :])], dim=-2)


# --- so3_exp -------------------------------------------------------------------------------

def test_so3_exp_matches_scipy() -> None:
    rotvecs = random_rotvecs(200, seed=0)
    ours = so3_exp(torch.from_numpy(rotvecs)).numpy()
    np.testing.assert_allclose(ours, Rotation.from_rotvec(rotvecs).as_matrix(), rtol=0,
                               atol=1e-10)


def test_so3_exp_identity_at_zero_and_tiny_angle() -> None:
    assert torch.equal(so3_exp(torch.zeros(3, dtype=torch.float64)), EYE)
    assert torch.equal(so3_exp(torch.zeros(2, 3)), torch.eye(3).expand(2, 3, 3))
    tiny = torch.tensor([1e-12, -0.5e-12, 0.3e-12], dtype=torch.float64)
    rot = so3_exp(tiny)
    assert torch.isfinite(rot).all()
    torch.testing.assert_close(rot, EYE, rtol=0, atol=2e-12)
    torch.testing.assert_close(rot - EYE, hat(tiny), rtol=0, atol=1e-20)  # first order


def test_so3_exp_is_a_rotation() -> None:
    rot = so3_exp(torch.from_numpy(random_rotvecs(200, seed=1)) * 1.3)  # angles beyond pi too
    torch.testing.assert_close(rot @ rot.transpose(-1, -2), EYE.expand_as(rot), rtol=0,
                               atol=1e-12)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(200, dtype=torch.float64),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("scale", [0.0, 1e-9, 1e-4, 9.9e-3, 1.01e-2, 0.5, 2.5])
def test_so3_exp_gradients_match_finite_differences(scale: float) -> None:
    direction = torch.tensor([0.6, -0.48, 0.64], dtype=torch.float64)
    omega = (scale * direction).requires_grad_(True)
    assert torch.autograd.gradcheck(so3_exp, (omega,), eps=1e-6, atol=1e-7)
    assert torch.autograd.gradgradcheck(so3_exp, (omega,), eps=1e-6, atol=1e-6)


def test_so3_exp_gradient_at_zero_is_the_skew_generator() -> None:
    omega = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad((so3_exp(omega) * weights).sum(), omega)
    # d R / d w_i at 0 is hat(e_i): the gradient is sum(weights * hat(e_i)).
    expected = torch.stack([(weights * hat(e)).sum() for e in EYE])
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-15)


# --- se3_exp / apply_se3 ------------------------------------------------------------------

def test_se3_exp_without_rotation_is_a_translation() -> None:
    v = torch.tensor([[0.3, -0.2, 0.7], [0.0, 0.0, 0.0]], dtype=torch.float64)
    rot, t = se3_exp(torch.cat([torch.zeros_like(v), v], dim=-1))
    assert torch.equal(rot, EYE.expand(2, 3, 3))
    assert torch.equal(t, v)
    points = torch.randn(2, 3, dtype=torch.float64)
    assert torch.equal(apply_se3(points, torch.cat([torch.zeros_like(v), v], -1)), points + v)


def test_pure_rotation_through_origin_matches_scipy() -> None:
    rotvecs = random_rotvecs(50, seed=2)
    points = np.random.default_rng(3).normal(size=(50, 3))
    twist = torch.cat([torch.from_numpy(rotvecs), torch.zeros(50, 3, dtype=torch.float64)], -1)
    rot, t = se3_exp(twist)
    assert torch.equal(t, torch.zeros_like(t))
    expected = Rotation.from_rotvec(rotvecs).apply(points)
    np.testing.assert_allclose(apply_se3(torch.from_numpy(points), twist).numpy(), expected,
                               rtol=0, atol=1e-10)
    np.testing.assert_allclose((rot.numpy() @ points[..., None])[..., 0], expected, rtol=0,
                               atol=1e-10)


def test_rotation_about_an_offset_axis_fixes_the_axis() -> None:
    """Twist (w, q x w) turns space by |w| about the line through q along w."""
    rng = np.random.default_rng(4)
    rotvecs, q = random_rotvecs(50, seed=5), rng.normal(size=(50, 3))
    points = rng.normal(size=(50, 3))
    twist = torch.from_numpy(np.concatenate([rotvecs, np.cross(q, rotvecs)], axis=-1))
    expected = Rotation.from_rotvec(rotvecs).apply(points - q) + q
    np.testing.assert_allclose(apply_se3(torch.from_numpy(points), twist).numpy(), expected,
                               rtol=0, atol=1e-10)
    on_axis = torch.from_numpy(q + 0.7 * rotvecs)
    torch.testing.assert_close(apply_se3(on_axis, twist), on_axis, rtol=0, atol=1e-12)


def test_screw_motion_matches_matrix_exponential() -> None:
    rng = np.random.default_rng(6)
    rotvecs = torch.from_numpy(random_rotvecs(100, seed=7))
    v = torch.from_numpy(rng.normal(size=(100, 3)))
    twist = torch.cat([rotvecs, v], dim=-1)
    transform = torch.linalg.matrix_exp(twist_matrix(twist))
    rot, t = se3_exp(twist)
    torch.testing.assert_close(rot, transform[:, :3, :3], rtol=0, atol=1e-10)
    torch.testing.assert_close(t, transform[:, :3, 3], rtol=0, atol=1e-10)
    points = torch.from_numpy(rng.normal(size=(100, 7, 3)))
    expected = (transform[:, None, :3, :3] @ points[..., None])[..., 0] + transform[:, None, :3, 3]
    torch.testing.assert_close(apply_se3(points, twist[:, None]), expected, rtol=0, atol=1e-10)


def test_se3_exp_is_accurate_either_side_of_the_series_switch() -> None:
    """Near |w| = SMALL_ANGLE the second-order parts (size |w|^2 |v|) must agree with the
    matrix exponential far below their own size: a wrong series term shows up here."""
    rng = np.random.default_rng(12)
    axes = rng.normal(size=(6, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.array([1e-3, 5e-3, 9.99e-3, 1.001e-2, 1.1e-2, 2e-2])
    v = rng.normal(size=(6, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    twist = torch.from_numpy(np.concatenate([axes * angles[:, None], v], axis=-1))
    transform = torch.linalg.matrix_exp(twist_matrix(twist))
    rot, t = se3_exp(twist)
    torch.testing.assert_close(rot, transform[:, :3, :3], rtol=0, atol=1e-14)
    torch.testing.assert_close(t, transform[:, :3, 3], rtol=0, atol=1e-13)


@pytest.mark.parametrize("scale", [0.0, 1e-4, 0.8])
def test_apply_se3_gradients_match_finite_differences(scale: float) -> None:
    gen = torch.Generator().manual_seed(8)
    points = torch.randn(4, 3, dtype=torch.float64, generator=gen).requires_grad_(True)
    twist = torch.randn(4, 6, dtype=torch.float64, generator=gen)
    twist[:, :3] *= scale / twist[:, :3].norm(dim=-1, keepdim=True)
    twist.requires_grad_(True)
    assert torch.autograd.gradcheck(apply_se3, (points, twist), eps=1e-6, atol=1e-7)
    assert torch.autograd.gradgradcheck(apply_se3, (points, twist), eps=1e-6, atol=1e-6)


# --- HyperSiren ---------------------------------------------------------------------------

def small_siren(seed: int = 0, **kwargs: int | bool) -> HyperSiren:
    torch.manual_seed(seed)
    return HyperSiren(3, 6, code_dim=5, hidden_dim=16, hidden_layers=2, hyper_hidden_dim=8,
                      **kwargs).double()


def test_hyper_siren_depends_on_the_code_only_through_its_value() -> None:
    siren = small_siren()
    gen = torch.Generator().manual_seed(9)
    x = torch.rand(1, 100, 3, dtype=torch.float64, generator=gen) * 2 - 1
    codes = torch.randn(2, 5, dtype=torch.float64, generator=gen)
    out = siren(x.expand(2, -1, -1), codes)
    assert out.shape == (2, 100, 6)
    assert (out[0] - out[1]).abs().max() > 1e-3
    assert torch.equal(siren(x, codes[:1]), siren(x, codes[:1]))
    # Same code in another slot of another batch: the same function (up to BLAS rounding).
    torch.testing.assert_close(siren(x.expand(2, -1, -1), codes[[1, 0]])[1], out[0], rtol=0,
                               atol=1e-12)


def test_hyper_siren_batch_equals_per_scan_evaluation() -> None:
    siren = small_siren()
    gen = torch.Generator().manual_seed(10)
    x = torch.rand(4, 50, 3, dtype=torch.float64, generator=gen) * 2 - 1
    codes = torch.randn(4, 5, dtype=torch.float64, generator=gen)
    batched = siren(x, codes)
    dims = [3, 16, 16, 6]
    for b in range(4):
        hidden = siren.trunk(codes[b])
        h = x[b]
        for i, head in enumerate(siren.heads):
            flat = head(hidden)
            d_in, d_out = dims[i], dims[i + 1]
            w, bias = flat[: d_in * d_out].reshape(d_in, d_out), flat[d_in * d_out:]
            h = h @ w + bias
            if i < len(siren.heads) - 1:
                h = torch.sin(SIREN_OMEGA_0 * h)
        torch.testing.assert_close(batched[b], h, rtol=0, atol=1e-12)
        torch.testing.assert_close(siren(x[b : b + 1], codes[b : b + 1])[0], h, rtol=0,
                                   atol=1e-12)


def test_hyper_siren_starts_as_a_sitzmann_siren() -> None:
    siren = small_siren()
    params = siren.siren_params(torch.zeros(1, 5, dtype=torch.float64))
    (w0, _), (w1, _), (w2, _) = params
    # Base weights U(-1/3, 1/3) on the first layer, U(+-sqrt(6/16)/30) after, plus a small
    # code-dependent part: check the ranges with a little slack.
    assert w0.abs().max() < 1 / 3 + 0.05 and w0.abs().max() > 0.2
    bound = math.sqrt(6 / 16) / SIREN_OMEGA_0
    for w in (w1, w2):
        assert w.abs().max() < 1.5 * bound and w.abs().max() > 0.5 * bound
    zero = small_siren(zero_last=True)
    out = zero(torch.rand(2, 10, 3, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64))
    assert torch.equal(out, torch.zeros_like(out))


# --- DeformationField ---------------------------------------------------------------------

B, N, CODE, K = 3, 64, 8, 5


def small_field(seed: int = 0, n_centres: int = K) -> DeformationField:
    torch.manual_seed(seed)
    return DeformationField(CODE, hidden_dim=16, hidden_layers=2, hyper_hidden_dim=8,
                            n_centres=n_centres, blend_hidden_dim=8)


def field_inputs(seed: int = 11, n_centres: int = K) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    points = torch.rand(B, N, 3, generator=gen) * 1.6 - 0.8
    code = 0.01 * torch.randn(B, CODE, generator=gen)
    centres = 0.3 * torch.randn(B, n_centres, 3, generator=gen)
    return points, code, centres


def test_field_is_the_identity_at_init_with_documented_shapes() -> None:
    field = small_field()
    points, code, centres = field_inputs()
    out = field(points, code, centres)
    assert out["points"].shape == (B, N, 3)
    assert out["twist"].shape == (B, N, 6)
    assert out["blend"].shape == (B, N, K)
    torch.testing.assert_close(out["points"], points, rtol=0, atol=1e-6)
    assert torch.equal(out["twist"], torch.zeros_like(out["twist"]))
    torch.testing.assert_close(out["blend"].sum(-1), torch.ones(B, N), rtol=0, atol=1e-6)
    assert (out["blend"] > 0).all()
    with pytest.raises(ValueError, match="centres"):
        field(points, code, centres[:, :4])


def test_one_adam_step_starts_the_deformation_and_reaches_the_code() -> None:
    field = small_field()
    points, code, centres = field_inputs()
    code = nn.Parameter(code)
    target = points + torch.tensor([0.05, -0.03, 0.02])
    optimiser = torch.optim.Adam([*field.parameters(), code], lr=1e-3)

    def step() -> float:
        optimiser.zero_grad()
        loss = (field(points, code, centres)["points"] - target).square().sum(-1).mean()
        loss.backward()
        return float(loss.detach())

    loss_0 = step()
    # At init only the twist heads are trained (everything else is behind their zeros).
    for net in field.mini_nets:
        assert net.heads[-1].bias.grad.abs().max() > 0
    optimiser.step()
    loss_1 = step()
    assert loss_1 < loss_0
    assert code.grad is not None and code.grad.abs().max() > 0
    for name, param in field.named_parameters():
        assert param.grad is not None and param.grad.abs().max() > 0, name
    moved = field(points, code, centres)["points"]
    assert (moved - points).abs().max() > 1e-4
    # The field stays twice differentiable in the points (eikonal terms need it).
    p = points.clone().requires_grad_(True)
    (jac,) = torch.autograd.grad(field(p, code, centres)["points"][..., 0].sum(), p,
                                 create_graph=True)
    (hess,) = torch.autograd.grad(jac.square().sum(), p)
    assert torch.isfinite(hess).all() and hess.abs().max() > 0


def test_mini_nets_see_offsets_from_their_centres() -> None:
    """With a uniform blend, the twist only depends on p - c_k: moving the points and the
    centres together leaves it unchanged; moving the centres alone does not."""
    field = small_field().double()
    points, code, centres = (t.double() for t in field_inputs())
    with torch.no_grad():
        for net in field.mini_nets:  # a non-zero twist head, so the twist is non-trivial
            nn.init.normal_(net.heads[-1].weight, std=0.1)
            nn.init.normal_(net.heads[-1].bias, std=0.1)
        field.blend[-1].weight.zero_()
        field.blend[-1].bias.zero_()
    shift = torch.tensor([0.2, -0.1, 0.15], dtype=torch.float64)
    twist = field(points, code, centres)["twist"]
    torch.testing.assert_close(field(points + shift, code, centres + shift)["twist"], twist,
                               rtol=0, atol=1e-10)
    assert (field(points, code, centres + shift)["twist"] - twist).abs().max() > 1e-3
    # And the twist is the uniform mean of the mini-nets at those offsets.
    mean = sum(net(points - centres[:, k : k + 1], code)
               for k, net in enumerate(field.mini_nets)) / K
    torch.testing.assert_close(twist, mean, rtol=0, atol=1e-12)


def test_a_twist_shared_by_all_centres_ignores_the_blend() -> None:
    field = small_field().double()
    points, code, centres = (t.double() for t in field_inputs())
    twist = torch.tensor([0.3, -0.2, 0.5, 0.1, 0.05, -0.2], dtype=torch.float64)
    with torch.no_grad():
        for net in field.mini_nets:  # last SIREN layer: W = 0, b = twist, for every code
            net.heads[-1].weight.zero_()
            net.heads[-1].bias.zero_()
            net.heads[-1].bias[-6:] = twist
    expected = apply_se3(points, twist)
    results = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        for layer in field.blend:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=3.0)
                nn.init.normal_(layer.bias, std=3.0)
        out = field(points, code, centres)
        torch.testing.assert_close(out["twist"], twist.expand(B, N, 6), rtol=0, atol=1e-12)
        torch.testing.assert_close(out["points"], expected, rtol=0, atol=1e-12)
        results.append(out["blend"])
    assert (results[0] - results[1]).abs().max() > 0.1  # the blends really differed


# --- parameter count ----------------------------------------------------------------------

def hyper_siren_count(code_dim: int, hidden: int, layers: int, hyper: int) -> int:
    """Trunk (2 Linear) plus one head per SIREN layer making its weights and biases."""
    dims = [3] + [hidden] * layers + [6]
    trunk = code_dim * hyper + hyper + hyper * hyper + hyper
    return trunk + sum((hyper + 1) * (i * o + o) for i, o in zip(dims[:-1], dims[1:],
                                                                 strict=True))


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("n_centres", [1, 2, 5])
def test_parameter_count_scales_with_the_centres(n_centres: int) -> None:
    field = small_field(n_centres=n_centres)
    mini = hyper_siren_count(CODE, 16, 2, 8)
    assert count(field.mini_nets[0]) == mini
    assert count(field) == n_centres * mini + (3 * 8 + 8) + (8 * n_centres + n_centres)
    points, code, centres = field_inputs(n_centres=n_centres)
    assert field(points, code, centres)["blend"].shape == (B, N, n_centres)


def test_default_field_parameter_count() -> None:
    field = DeformationField(64)
    assert count(field) == 5 * hyper_siren_count(64, 128, 3, 64) + (3 * 32 + 32) + (32 * 5 + 5)
