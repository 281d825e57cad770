"""Gaussian 3x3 neighbourhood sampling (eq. 1): values, borders, gradients, shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facerecon.images.sampling import gaussian_sample, rescale_pixels

H, W = 6, 9


def _linear_map(a: float = 0.5, b: float = 2.0, c: float = -3.0) -> torch.Tensor:
    """(1, 1, H, W) map a + b x + c y, double."""
    y, x = torch.meshgrid(torch.arange(H, dtype=torch.float64),
                          torch.arange(W, dtype=torch.float64), indexing="ij")
    return (a + b * x + c * y)[None, None]


def _eq1_at_integer_pixel(feature_map: np.ndarray, u: int, v: int, sigma: float) -> np.ndarray:
    """Eq. 1 written out on the 3x3 integer pixels around an interior (u, v): (C,)."""
    total, z = 0.0, 0.0
    for dv in (-1, 0, 1):
        for du in (-1, 0, 1):
            weight = math.exp(-(du * du + dv * dv) / (2 * sigma**2))
            total = total + weight * feature_map[:, v + dv, u + du]
            z += weight
    return total / z


def test_shapes_and_batch_independence() -> None:
    torch.manual_seed(0)
    maps = torch.randn(2, 5, H, W)
    uv = torch.rand(2, 7, 2) * torch.tensor([W - 1.0, H - 1.0])
    out = gaussian_sample(maps, uv)
    assert out.shape == (2, 7, 5) and out.dtype == torch.float32
    alone = gaussian_sample(maps[1:], uv[1:])
    torch.testing.assert_close(out[1:], alone)
    with pytest.raises(ValueError):
        gaussian_sample(maps, uv[0])
    with pytest.raises(ValueError):
        gaussian_sample(maps[:, :, :1], uv)
    with pytest.raises(ValueError):
        gaussian_sample(maps, uv, sigma=0.0)


def test_constant_map_stays_constant_everywhere() -> None:
    maps = torch.full((1, 3, H, W), 2.5, dtype=torch.float64)
    uv = torch.tensor([[[0.0, 0.0], [3.3, 2.7], [W - 1.0, H - 1.0], [-0.4, 1.2],
                        [W - 0.6, 3.0], [-10.0, 40.0]]], dtype=torch.float64)
    torch.testing.assert_close(gaussian_sample(maps, uv), torch.full((1, 6, 3), 2.5,
                                                                     dtype=torch.float64))


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_linear_map_interior_gives_the_linear_value(sigma: float) -> None:
    """Symmetric weights and exact bilinear taps: a linear map is reproduced exactly."""
    uv = torch.tensor([[[1.0, 1.0], [4.0, 3.0], [2.25, 1.5], [6.8, 3.9], [1.01, 4.0]]],
                      dtype=torch.float64)
    expected = 0.5 + 2.0 * uv[0, :, 0] - 3.0 * uv[0, :, 1]
    torch.testing.assert_close(gaussian_sample(_linear_map(), uv, sigma)[0, :, 0], expected)


@pytest.mark.parametrize("sigma", [0.7, 1.0, 1.5])
def test_integer_points_match_eq1_written_out(sigma: float) -> None:
    rng = np.random.default_rng(1)
    feature_map = rng.normal(size=(4, H, W))
    points = [(1, 1), (4, 2), (7, 4)]
    uv = torch.tensor([[[u, v] for u, v in points]], dtype=torch.float64)
    out = gaussian_sample(torch.from_numpy(feature_map)[None], uv, sigma)[0].numpy()
    expected = np.stack([_eq1_at_integer_pixel(feature_map, u, v, sigma) for u, v in points])
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def _nine_bilinear_taps(feature_map: torch.Tensor, uv: torch.Tensor,
                        sigma: float) -> torch.Tensor:
    """Eq. 1 with bilinear taps, read one tap at a time (clamped): (B, N, C)."""
    height, width = feature_map.shape[-2:]
    total = 0.0
    z = 0.0
    for dv in (-1.0, 0.0, 1.0):
        for du in (-1.0, 0.0, 1.0):
            weight = math.exp(-(du * du + dv * dv) / (2 * sigma**2))
            taps = uv + torch.tensor([du, dv], dtype=uv.dtype)
            grid = taps / torch.tensor([(width - 1) / 2, (height - 1) / 2], dtype=uv.dtype) - 1
            read = F.grid_sample(feature_map, grid[:, :, None], mode="bilinear",
                                 padding_mode="border", align_corners=True)[..., 0]
            total = total + weight * read.transpose(1, 2)
            z += weight
    return total / z


@pytest.mark.parametrize("sigma", [0.6, 1.0, 1.8])
def test_blurred_read_equals_nine_taps_inside_the_map(sigma: float) -> None:
    torch.manual_seed(3)
    maps = torch.randn(2, 4, H, W, dtype=torch.float64)
    uv = torch.rand(2, 50, 2, dtype=torch.float64) * torch.tensor([W - 1.0, H - 1.0])
    uv[:, :4] = torch.tensor([[0.0, 0.0], [W - 1.0, H - 1.0], [0.2, H - 1.3], [W - 1.0, 0.4]],
                             dtype=torch.float64)
    torch.testing.assert_close(gaussian_sample(maps, uv, sigma),
                               _nine_bilinear_taps(maps, uv, sigma))


def test_quadratic_map_sees_the_gaussian_weights() -> None:
    """M = x^2 at an integer u: u^2 + E_w[du^2], with E_w[du^2] = 2 e^-1/2 / (1 + 2 e^-1/2)."""
    y, x = torch.meshgrid(torch.arange(H, dtype=torch.float64),
                          torch.arange(W, dtype=torch.float64), indexing="ij")
    uv = torch.tensor([[[4.0, 2.0]]], dtype=torch.float64)
    e = math.exp(-0.5)
    expected = 16.0 + 2 * e / (1 + 2 * e)
    assert gaussian_sample((x**2)[None, None], uv)[0, 0, 0].item() == pytest.approx(expected)


def test_border_taps_are_clamped() -> None:
    """M = x at u = 0: taps at x = -1 read x = 0, so only the du = +1 column counts;
    points further out read that border value (likewise at u = W - 1)."""
    e = math.exp(-0.5)
    share = e / (1 + 2 * e)  # weight of the du = +1 (or -1) column
    x_map = _linear_map(0.0, 1.0, 0.0)
    uv = torch.tensor([[[0.0, 2.0], [-5.0, 2.0], [W - 1.0, 2.0], [W - 1.0 + 3.0, 2.0],
                        [0.5, 0.0]]], dtype=torch.float64)
    out = gaussian_sample(x_map, uv)[0, :, 0]
    expected = [share, share, W - 1.0 - share, W - 1.0 - share, 0.5 * share + 0.5]
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))
    # continuous across the border
    across = torch.tensor([[[-1e-7, 2.0], [1e-7, 2.0]]], dtype=torch.float64)
    values = gaussian_sample(_linear_map(), across)[0, :, 0]
    assert abs(values[0] - values[1]).item() < 1e-5


def test_gradients_pass_gradcheck() -> None:
    torch.manual_seed(2)
    maps = torch.randn(2, 3, H, W, dtype=torch.float64, requires_grad=True)
    # sub-pixel points away from integer coordinates (bilinear kinks), two near a border
    frac = torch.rand(2, 5, 2, dtype=torch.float64) * 0.6 + 0.2
    base = torch.tensor([[0, 0], [3, 2], [6, 4], [7, 1], [2, 4]], dtype=torch.float64)
    uv = (base + frac).requires_grad_(True)
    # One intra-op thread: gradcheck runs thousands of tiny ops, and with two OpenMP
    # threads on a busy 2-core machine under pytest-timeout's SIGALRM it took 40 s, not 0.5 s.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert torch.autograd.gradcheck(lambda m, p: gaussian_sample(m, p), (maps, uv))
    finally:
        torch.set_num_threads(threads)


def test_rescale_pixels_keeps_pixel_centres() -> None:
    """A 256-px crop onto a 32-px map: the centre of crop block [0, 8) is map pixel 0."""
    uv = torch.tensor([[3.5, 3.5], [-0.5, -0.5], [255.5, 127.5], [128.0, 0.0]])
    out = rescale_pixels(uv, (256, 256), (32, 32))
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0], [-0.5, -0.5], [31.5, 15.5],
                                                  [15.5625, -0.4375]]))
