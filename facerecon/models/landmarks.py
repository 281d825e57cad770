"""Landmark-Net (paper sec. 2.1, figure 2): 68 landmarks from the latent codes.

Two three-layer ReLU MLPs: eta(z_exp, z_id) predicts the landmarks of the
expressive face, eta'(z_id) those of the subject's neutral face (ImFace's
landmark heads; their L2 losses are weighted 1000 and 100). Landmarks are dlib's
68 in Multi-PIE order, in units (1 unit = 100 mm) of the crop frame.
"""

from __future__ import annotations

import torch
from torch import nn

#: Standard deviation of the last layers' initial weights: small, so that a fresh net
#: predicts its template up to ~1e-4 units for codes of norm ~1.
LAST_LAYER_INIT_STD = 1e-5


def _mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Three fully connected layers with ReLU between them (none on the output)."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(),
                         nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
                         nn.Linear(hidden_dim, out_dim))


class LandmarkNet(nn.Module):
    """eta(z_exp, z_id) -> expressive landmarks, eta'(z_id) -> neutral (identity) landmarks.

    The last layers' biases start at ``template`` (68, 3) in units (zeros if None)
    and their weights near zero, so a fresh net predicts the template for any code.
    """

    def __init__(self, id_dim: int, exp_dim: int, hidden_dim: int = 256, n_landmarks: int = 68,
                 template: torch.Tensor | None = None) -> None:
        super().__init__()
        self.n_landmarks = n_landmarks
        if template is None:
            template = torch.zeros(n_landmarks, 3)
        template = torch.as_tensor(template, dtype=torch.float32)
        if template.shape != (n_landmarks, 3):
            raise ValueError(f"template must be ({n_landmarks}, 3), got {tuple(template.shape)}")
        self.expression = _mlp(exp_dim + id_dim, hidden_dim, n_landmarks * 3)
        self.identity = _mlp(id_dim, hidden_dim, n_landmarks * 3)
        with torch.no_grad():
            for head in (self.expression, self.identity):
                nn.init.normal_(head[-1].weight, 0.0, LAST_LAYER_INIT_STD)
        self.set_template(template)

    def set_template(self, template: torch.Tensor) -> None:
        """Make both heads predict ``template`` (68, 3) for zero-effect weights: the last
        layers' biases."""
        with torch.no_grad():
            for head in (self.expression, self.identity):
                head[-1].bias.copy_(template.reshape(-1))

    def forward(self, z_id: torch.Tensor, z_exp: torch.Tensor) -> dict[str, torch.Tensor]:
        """z_id (B, id_dim), z_exp (B, exp_dim) -> {'expression': (B, 68, 3) landmarks of
        the expressive face, 'identity': (B, 68, 3) of the neutral face}, in units."""
        b = z_id.shape[0]
        expression = self.expression(torch.cat([z_exp, z_id], dim=-1))
        identity = self.identity(z_id)
        return {"expression": expression.view(b, self.n_landmarks, 3),
                "identity": identity.view(b, self.n_landmarks, 3)}
