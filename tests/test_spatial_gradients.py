"""Forward-mode spatial gradients (LossConfig.gradients: forward) give every model the loss
terms and parameter gradients that reverse mode gives, and their first-order backward lets
torch.compile take a training step (TrainConfig.compile)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from test_i3dmm import make_cond, small_config, sphere_batch
from test_paper_model import SMALL, batch_of, image_query, model_and_query

from facerecon.batches import Precision, loss_function, optimisation_step
from facerecon.config import ImplicitModelConfig, LossConfig, PaperModelConfig, TrainConfig
from facerecon.errors import InputError
from facerecon.models import Conditioning, Model
from facerecon.models.i3dmm import I3dmm
from facerecon.models.implicit import ImplicitFace
from facerecon.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


def moved(model: Model, seed: int) -> Model:
    """``model`` in float64 with every weight nudged: away from the start, where the
    deformation fields are exactly the identity and a wrong gradient could hide."""
    torch.manual_seed(seed)
    model = model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def paper_case() -> tuple[Model, dict[str, torch.Tensor], Conditioning, LossConfig]:
    """The paper's model with 8 experts (no image branch), all its loss terms on."""
    model, query = model_and_query(experts=8, batch=2, n=32, dtype=torch.float64)
    batch = batch_of(query, neutral=True)
    batch = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    return moved(model, 1), batch, query.cond, LossConfig(smooth=1.0, entropy=0.1)


def i3dmm_case() -> tuple[Model, dict[str, torch.Tensor], Conditioning, LossConfig]:
    batch = sphere_batch(torch.tensor([0.3, 0.4]), 32, torch.Generator().manual_seed(0))
    batch = {k: v.double() for k, v in batch.items()}
    return moved(I3dmm(small_config()), 2), batch, make_cond(2, 3, torch.float64), LossConfig()


def implicit_case() -> tuple[Model, dict[str, torch.Tensor], Conditioning, LossConfig]:
    cfg = ImplicitModelConfig(id_dim=4, exp_dim=3, hidden_dim=16, hidden_layers=2,
                              pe_frequencies=2, experts=4, gate_hidden_dim=8)
    batch = sphere_batch(torch.tensor([0.3, 0.4]), 32, torch.Generator().manual_seed(0))
    batch = {k: v.double() for k, v in batch.items()}
    return (moved(ImplicitFace(cfg), 4), batch, make_cond(2, 5, torch.float64),
            LossConfig(smooth=1.0, entropy=0.1))


@pytest.mark.parametrize("case", [paper_case, i3dmm_case, implicit_case])
def test_forward_mode_gives_the_reverse_terms_and_gradients(case) -> None:
    model, batch, cond, weights = case()
    params = [p for p in model.parameters() if p.requires_grad]
    results = {}
    for mode in ("reverse", "forward"):
        torch.manual_seed(7)  # the smoothness term's neighbour draw
        terms = model.get_loss_dict(batch, cond, dataclasses.replace(weights, gradients=mode))
        grads = torch.autograd.grad(sum(terms.values()), params, allow_unused=True)
        results[mode] = terms, grads
    (terms_r, grads_r), (terms_f, grads_f) = results["reverse"], results["forward"]
    assert set(terms_r) == set(terms_f) and {"normal", "eikonal"} <= set(terms_r)
    for key in terms_r:
        torch.testing.assert_close(terms_f[key], terms_r[key], rtol=1e-9, atol=1e-12)
    assert sum(g is not None for g in grads_r) > 0.9 * len(params)
    for g_r, g_f in zip(grads_r, grads_f, strict=True):
        assert (g_r is None) == (g_f is None)
        if g_r is not None:
            torch.testing.assert_close(g_f, g_r, rtol=1e-7, atol=1e-10)


def test_a_compiled_step_matches_the_eager_one() -> None:
    """torch.compile takes the forward-mode step (reverse mode's double backward it
    refuses) and trains as eager does, to float32 rounding. i3DMM: a small graph, so the
    compilation stays short on a CPU."""
    weights = LossConfig(gradients="forward")
    batch = sphere_batch(torch.tensor([0.3, 0.4]), 64, torch.Generator().manual_seed(0))
    losses = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = I3dmm(small_config())
        codes = make_cond(2, 3).codes
        for code in codes.values():
            code.requires_grad_(True)
        optimizer = torch.optim.Adam([*model.parameters(), *codes.values()], lr=1e-3)
        loss_fn = loss_function(model, compiled)
        losses[compiled] = [
            optimisation_step(loss_fn, batch, Conditioning(codes), weights, optimizer,
                              Precision.setup("fp32", torch.device("cpu")))["loss"]
            for _ in range(3)]
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
    assert losses[False][2] != losses[False][0]  # the steps did move the model


def test_forward_mode_refuses_the_image_branch() -> None:
    model, query = image_query(batch=2, n=32)
    with pytest.raises(InputError, match="image branch"):
        model.get_loss_dict(batch_of(query, neutral=False), model.prepare(query.cond),
                            LossConfig(gradients="forward"))


def test_compile_needs_forward_gradients(tmp_path: Path) -> None:
    sections = {"model": PaperModelConfig(**SMALL), "loss": LossConfig(),
                "train": TrainConfig(compile=True)}
    with pytest.raises(InputError, match="train.compile needs loss.gradients 'forward'"):
        train([tmp_path / "missing.npz"], "ours", sections, tmp_path / "m.pt",
              tmp_path / "log.csv")
