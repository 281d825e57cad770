"""Fit a trained model to one test scan: decoder frozen, new identity and expression codes.

    python -m facerecon.fit --model model.pt --samples scan.npz --fit-json JSON \
        --out codes.pt [--device auto] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from facerecon.batches import draw_points, load_scan_samples, setup_torch
from facerecon.config import FitConfig, MethodConfig, from_dict, method_from_json
from facerecon.io import InputError, atomic_path, run_cli
from facerecon.models import build_model


def load_trained(path: Path, device: torch.device) -> tuple[nn.Module, MethodConfig, dict]:
    """Load a model written by facerecon.train, in eval mode with frozen weights."""
    if not path.is_file():
        raise InputError(f"{path}: trained model not found")
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # torch raises several types for corrupt files
        raise InputError(f"{path}: cannot read trained model ({exc})") from exc
    cfg = method_from_json(state["config"])
    model = build_model(cfg.model).to(device)
    model.load_state_dict(state["model"])
    model.eval().requires_grad_(False)
    return model, cfg, state


def initial_codes(state: dict, fit: FitConfig, generator: torch.Generator) -> torch.Tensor:
    """Start codes (id_dim + exp_dim,): the training mean (ImFace++) or N(0, 0.01^2)."""
    identity = state["codes"]["identity.weight"].cpu()
    expression = state["codes"]["expression.weight"].cpu()
    if fit.code_init == "mean":
        return torch.cat([identity.mean(0), expression.mean(0)])
    size = identity.shape[1] + expression.shape[1]
    return torch.randn(size, generator=generator) * 0.01


def fit_scan(model_path: Path, samples_path: Path, fit: FitConfig, out: Path,
             device_name: str = "auto", threads: int = 1) -> dict:
    """Optimise codes for one scan and save them with the loss history."""
    device = setup_torch(device_name, threads, fit.seed)
    model, cfg, state = load_trained(model_path, device)
    scan = load_scan_samples(samples_path)
    if abs(scan.radius_mm - state["radius_mm"]) > 1e-9:
        raise InputError(f"{samples_path}: crop radius {scan.radius_mm} mm differs from the "
                         f"model's {state['radius_mm']} mm")
    generator = torch.Generator().manual_seed(fit.seed)
    code = initial_codes(state, fit, generator).to(device)[None].requires_grad_(True)
    optimizer = torch.optim.Adam([code], lr=fit.lr)
    history = []
    tic = time.perf_counter()
    for step in range(fit.iterations):
        batch = draw_points([scan], fit.points_per_scan, cfg.train.surface_fraction,
                            generator, device)
        z_id, z_exp = code[:, :cfg.model.id_dim], code[:, cfg.model.id_dim:]
        terms = model.get_loss_dict(batch, z_id, z_exp, cfg.loss)
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append({"step": step + 1, "loss": loss.item(),
                        **{k: v.item() for k, v in terms.items()}})
    code = code.detach().cpu()[0]
    result = {
        "subject": scan.subject,
        "expression": scan.expression,
        "z_id": code[:cfg.model.id_dim],
        "z_exp": code[cfg.model.id_dim:],
        "history": history,
        "seconds": time.perf_counter() - tic,
    }
    with atomic_path(out, suffix=".pt") as tmp:
        torch.save(result, tmp)
    return result


def main(argv: list[str] | None = None) -> None:
    """Command line of :func:`fit_scan`."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="trained model (.pt)")
    parser.add_argument("--samples", type=Path, required=True, help="the test scan's samples")
    parser.add_argument("--fit-json", required=True, help="FitConfig as JSON")
    parser.add_argument("--out", type=Path, required=True, help="fitted codes (.pt)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    args = parser.parse_args(argv)
    fit = from_dict(FitConfig, json.loads(args.fit_json), "fit")
    result = fit_scan(args.model, args.samples, fit, args.out, args.device, args.threads)
    last = result["history"][-1] if result["history"] else {"loss": float("nan")}
    print(f"fitted {result['subject']}/{result['expression']} in {result['seconds']:.1f} s: "
          f"final loss {last['loss']:.4f}")


if __name__ == "__main__":
    run_cli(main)
