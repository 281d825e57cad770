"""SE(3) deformation field: per-point screw motions from landmark-centred hyper-SIRENs.

The deformation fields of the paper (section 2.1, eq. 3) and of ImFace, on which it
builds, move each query point p by a rigid motion of its own, p -> R p + t, given as a
twist xi = (omega, v) in se(3) and mapped to SE(3) by the exponential map:
R = exp(omega^) by Rodrigues' formula (eq. 3) and t = V v. Space is the unit sphere of
the preprocessed scans, so p, t, v and the centres are in units; omega is in radians.

Our reading of ImFace's public code (MingwuZheng/ImFace, ``model/imface.py``,
``model/modules.py``, ``model/rigid.py``):

- mini-nets: SIRENs evaluated on the offsets p - c_k of the point from 5 landmarks
  (eye corners, nose tip, mouth corners), each producing a twist (6 numbers);
- conditioning: a hypernetwork maps the per-scan code to all weights and biases of the
  SIREN, so that the code changes the function rather than being one more input;
- blending: a softmax over a small MLP of the point's xyz weights the K twists, and the
  blended twist sum_k w_k xi_k is applied to p with the exponential map.

Where we differ from that code, on purpose: one independent hyper-SIREN per centre
(ImFace packs the K offsets into one SIREN with 3K inputs and 6K outputs); a two-layer
ReLU blend MLP (ImFace: three layers with LayerNorm and LeakyReLU); no positional
encoding of the offsets; the hypernetwork is one shared ReLU trunk with a linear head
per SIREN layer (ImFace: one MLP per weight and per bias tensor); and the twist head
starts at exactly zero, so a fresh field is the identity map.

Shapes: points (B, N, 3), code (B, D), centres (B, K, 3) -> deformed points (B, N, 3),
blended twist (B, N, 6), blend weights (B, N, K). The exponential maps switch to their
Taylor series below a small angle, so values and gradients are finite and exact at
omega = 0 (ImFace divides by |omega| + 1e-8 instead).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

#: |omega| (radians) below which the exp maps use Taylor series instead of sin/cos ratios.
SMALL_ANGLE = 1e-2
#: Frequency factor of SIREN's first layer (Sitzmann et al. 2020).
SIREN_OMEGA_0 = 30.0
#: Scale of the hypernetwork's code-dependent output weights (ImFace divides by 100).
HYPER_OUT_SCALE = 1e-2


def _exp_coefficients(theta_sq: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """theta^2 (...,) -> (sin t / t, (1 - cos t) / t^2, (t - sin t) / t^3) at t = sqrt(theta^2).

    Below SMALL_ANGLE the Taylor series (to t^4; next terms < 1e-15) replace the ratios;
    the exact branch sees a safe angle there, so neither branch gives NaN gradients.
    """
    small = theta_sq < SMALL_ANGLE**2
    safe_sq = torch.where(small, torch.ones_like(theta_sq), theta_sq)
    t = torch.sqrt(safe_sq)
    sin, cos = torch.sin(t), torch.cos(t)
    a_exact = sin / t
    b_exact = (1.0 - cos) / safe_sq
    c_exact = (t - sin) / (safe_sq * t)
    s = theta_sq
    a_series = 1.0 - s / 6.0 + s * s / 120.0
    b_series = 0.5 - s / 24.0 + s * s / 720.0
    c_series = 1.0 / 6.0 - s / 120.0 + s * s / 5040.0
    return (torch.where(small, a_series, a_exact), torch.where(small, b_series, b_exact),
            torch.where(small, c_series, c_exact))


def hat(omega: Tensor) -> Tensor:
    """(..., 3) -> (..., 3, 3) skew matrix W with W x = omega x x."""
    x, y, z = omega.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).unflatten(-1, (3, 3))


def so3_exp(omega: Tensor) -> Tensor:
    """Rotation vector (..., 3) (radians) -> rotation matrix (..., 3, 3), eq. 3 (Rodrigues).

    R = I + sin|w|/|w| W + (1 - cos|w|)/|w|^2 W^2, with W^2 = w w^T - |w|^2 I.
    """
    theta_sq = (omega * omega).sum(-1)
    a, b, _ = _exp_coefficients(theta_sq)
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device)
    w_sq = omega[..., :, None] * omega[..., None, :] - theta_sq[..., None, None] * eye
    return eye + a[..., None, None] * hat(omega) + b[..., None, None] * w_sq


def se3_exp(twist: Tensor) -> tuple[Tensor, Tensor]:
    """Twist (..., 6) = (omega radians, v units) -> R (..., 3, 3), t (..., 3) units.

    t = V v, V = I + (1 - cos|w|)/|w|^2 W + (|w| - sin|w|)/|w|^3 W^2 (the left Jacobian).
    """
    omega, v = twist[..., :3], twist[..., 3:]
    _, b, c = _exp_coefficients((omega * omega).sum(-1))
    w_v = torch.linalg.cross(omega, v, dim=-1)
    t = v + b[..., None] * w_v + c[..., None] * torch.linalg.cross(omega, w_v, dim=-1)
    return so3_exp(omega), t


def apply_se3(points: Tensor, twist: Tensor) -> Tensor:
    """points (..., 3) units, twists (..., 6) (broadcast) -> exp(twist) applied: R p + t.

    Evaluated with cross products (W x = w x x), without forming the 3x3 matrices.
    """
    batch = torch.broadcast_shapes(points.shape[:-1], twist.shape[:-1])
    points, twist = points.expand(*batch, 3), twist.expand(*batch, 6)
    omega, v = twist[..., :3], twist[..., 3:]
    a, b, c = _exp_coefficients((omega * omega).sum(-1))
    a, b, c = a[..., None], b[..., None], c[..., None]
    w_p = torch.linalg.cross(omega, points, dim=-1)
    w_v = torch.linalg.cross(omega, v, dim=-1)
    rotated = points + a * w_p + b * torch.linalg.cross(omega, w_p, dim=-1)
    return rotated + v + b * w_v + c * torch.linalg.cross(omega, w_v, dim=-1)


class HyperSiren(nn.Module):
    """A SIREN whose weights and biases a hypernetwork makes per scan from a code.

    SIREN (Sitzmann et al. 2020): dims [in_dim] + [hidden_dim] * hidden_layers + [out_dim];
    x -> sin(omega_0 (W_0 x + b_0)) -> sin(omega_0 (W_i h + b_i)) ... -> W_L h + b_L (linear).
    Hypernetwork: code (B, code_dim) -> trunk (two Linear + ReLU, width hyper_hidden_dim)
    -> one linear head per SIREN layer, ``heads[i]`` giving [W_i (d_in * d_out, row-major
    (d_in, d_out)), b_i (d_out)]. Each head's bias holds the Sitzmann-initialised SIREN
    (first layer U(-1/d_in, 1/d_in), others U(+-sqrt(6/d_in)/omega_0), biases
    U(+-1/sqrt(d_in))) and its weight a small code-dependent part (Kaiming x
    HYPER_OUT_SCALE, as ImFace). With ``zero_last`` the last head starts at zero, so the
    output is 0 for every input and code until training moves it.
    """

    def __init__(self, in_dim: int, out_dim: int, code_dim: int, hidden_dim: int = 128,
                 hidden_layers: int = 3, hyper_hidden_dim: int = 64,
                 omega_0: float = SIREN_OMEGA_0, zero_last: bool = False) -> None:
        super().__init__()
        if hidden_layers < 1:
            raise ValueError(f"HyperSiren: hidden_layers must be >= 1, got {hidden_layers}")
        self.omega_0 = omega_0
        dims = [in_dim] + [hidden_dim] * hidden_layers + [out_dim]
        self.shapes = list(zip(dims[:-1], dims[1:], strict=True))
        self.trunk = nn.Sequential(nn.Linear(code_dim, hyper_hidden_dim), nn.ReLU(),
                                   nn.Linear(hyper_hidden_dim, hyper_hidden_dim), nn.ReLU())
        self.heads = nn.ModuleList()
        for i, (d_in, d_out) in enumerate(self.shapes):
            head = nn.Linear(hyper_hidden_dim, d_in * d_out + d_out)
            with torch.no_grad():
                if zero_last and i == len(self.shapes) - 1:
                    head.weight.zero_()
                    head.bias.zero_()
                else:
                    nn.init.kaiming_normal_(head.weight, nonlinearity="relu")
                    head.weight.mul_(HYPER_OUT_SCALE)
                    bound = 1.0 / d_in if i == 0 else math.sqrt(6.0 / d_in) / omega_0
                    head.bias[: d_in * d_out].uniform_(-bound, bound)
                    head.bias[d_in * d_out:].uniform_(-1 / math.sqrt(d_in), 1 / math.sqrt(d_in))
            self.heads.append(head)

    def siren_params(self, code: Tensor) -> list[tuple[Tensor, Tensor]]:
        """code (B, code_dim) -> per layer (W (B, d_in, d_out), b (B, 1, d_out))."""
        hidden = self.trunk(code)
        params = []
        for head, (d_in, d_out) in zip(self.heads, self.shapes, strict=True):
            flat = head(hidden)
            params.append((flat[:, : d_in * d_out].view(-1, d_in, d_out),
                           flat[:, d_in * d_out:].view(-1, 1, d_out)))
        return params

    def evaluate(self, x: Tensor, params: list[tuple[Tensor, Tensor]]) -> Tensor:
        """x (B, N, in_dim) with per-scan ``params`` (see :meth:`siren_params`) -> (B, N, out).
        Only the layer shapes and omega_0 are this module's: params of several SIRENs of the
        same shapes, stacked along B, are evaluated in one pass."""
        for w, b in params[:-1]:
            x = torch.sin(self.omega_0 * torch.baddbmm(b, x, w))
        w, b = params[-1]
        return torch.baddbmm(b, x, w)

    def forward(self, x: Tensor, code: Tensor) -> Tensor:
        """x (B, N, in_dim), code (B, code_dim) -> (B, N, out_dim)."""
        return self.evaluate(x, self.siren_params(code))


class DeformationField(nn.Module):
    """p -> exp(sum_k w_k(p) xi_k(p - c_k | code)) p: K landmark-centred SE(3) fields.

    xi_k: one :class:`HyperSiren` per centre on the offset p - c_k (units), giving a twist
    (omega radians, v units); w(p) = softmax(MLP(p)), MLP = Linear(3, blend_hidden_dim),
    ReLU, Linear(blend_hidden_dim, K). Every mini-net's twist head starts at zero, so a
    fresh field is exactly the identity map; the first optimiser step moves those heads,
    after which gradients reach the code and every other weight.
    """

    def __init__(self, code_dim: int, hidden_dim: int = 128, hidden_layers: int = 3,
                 hyper_hidden_dim: int = 64, n_centres: int = 5,
                 blend_hidden_dim: int = 32) -> None:
        super().__init__()
        self.n_centres = n_centres
        self.mini_nets = nn.ModuleList(
            HyperSiren(3, 6, code_dim, hidden_dim=hidden_dim, hidden_layers=hidden_layers,
                       hyper_hidden_dim=hyper_hidden_dim, zero_last=True)
            for _ in range(n_centres))
        self.blend = nn.Sequential(nn.Linear(3, blend_hidden_dim), nn.ReLU(),
                                   nn.Linear(blend_hidden_dim, n_centres))

    def forward(self, points: Tensor, code: Tensor, centres: Tensor) -> dict[str, Tensor]:
        """points (B, N, 3) units, code (B, D), centres (B, n_centres, 3) (landmarks in units)
        -> 'points': (B, N, 3) deformed points, 'twist': (B, N, 6) blended se(3) twist,
        'blend': (B, N, n_centres) softmax weights."""
        if centres.shape[-2] != self.n_centres:
            raise ValueError(f"DeformationField: expected {self.n_centres} centres, "
                             f"got centres of shape {tuple(centres.shape)}")
        blend = torch.softmax(self.blend(points), dim=-1)
        # All mini-nets in one batched SIREN pass: their per-scan weights stacked to
        # (B * K, d_in, d_out) per layer, the offsets p - c_k to (B * K, N, 3).
        per_net = [net.siren_params(code) for net in self.mini_nets]
        stacked = [(torch.stack([p[i][0] for p in per_net], 1).flatten(0, 1),
                    torch.stack([p[i][1] for p in per_net], 1).flatten(0, 1))
                   for i in range(len(per_net[0]))]
        offsets = (points[:, None] - centres[:, :, None]).flatten(0, 1)  # (B * K, N, 3)
        twists = self.mini_nets[0].evaluate(offsets, stacked).unflatten(0, centres.shape[:2])
        # (B, N, 6); the exponential map runs in the points' precision (fp32 under autocast)
        twist = torch.einsum("bnk,bknd->bnd", blend, twists).to(points.dtype)
        return {"points": apply_se3(points, twist), "twist": twist, "blend": blend}
