"""Auto-decoder codes: one table per latent space of a model, indexed by subject or scan."""

from __future__ import annotations

import torch
from torch import nn

from facerecon.models.base import LatentSpace

#: Standard deviation of new codes (ImFace, DeepSDF: N(0, 0.01^2)).
CODE_INIT_STD = 0.01


class LatentCodes(nn.Module):
    """Code tables for a model's :class:`LatentSpace` s: ``n_subjects`` rows for a space
    kept per subject, ``n_scans`` rows for one kept per scan."""

    def __init__(self, spec: tuple[LatentSpace, ...], n_subjects: int, n_scans: int) -> None:
        super().__init__()
        self.spec = spec
        self.tables = nn.ModuleDict()
        for space in spec:
            rows = n_subjects if space.per == "subject" else n_scans
            self.tables[space.name] = nn.Embedding(rows, space.dim)
        for table in self.tables.values():  # after all are built: the seeded draws stay put
            nn.init.normal_(table.weight, 0.0, CODE_INIT_STD)

    def forward(self, subject_idx: torch.Tensor, scan_idx: torch.Tensor
                ) -> dict[str, torch.Tensor]:
        """subject_idx, scan_idx: (B,) long -> space name -> (B, dim) codes."""
        return {space.name: self.tables[space.name](
            subject_idx if space.per == "subject" else scan_idx) for space in self.spec}

    def means(self) -> dict[str, torch.Tensor]:
        """Space name -> (dim,) mean of its trained codes (fitting's ImFace++ start)."""
        return {name: table.weight.detach().mean(0) for name, table in self.tables.items()}
