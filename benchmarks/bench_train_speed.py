"""Training-step speed of the paper's model: optimised against an eager fp32 reference,
in the same process, and the `paper` profile's training time extrapolated from it.

    python benchmarks/bench_train_speed.py --profile demo --device cpu --threads 2
    python benchmarks/bench_train_speed.py --profile paper --device cuda --scans 18

Each variant runs whole optimisation steps (forward, every loss term of `ours` including
the eikonal/normal double backward, gate smoothness and entropy, backward, Adam) on random
points and landmark-like targets; warm-up steps are not timed. Variants:

* ``reference``: eager fp32, each deformation mini-net evaluated on its own (a Python
  loop over the 5 centres, as the first implementation did);
* ``batched``: the shipped model, fp32: the mini-nets of a field in one batched SIREN pass,
  the smoothness neighbours through the gate only;
* ``batched_bf16``: the same under bfloat16 autocast (TF32 for what stays fp32 on CUDA),
  what `train.precision: auto` picks on CUDA;
* ``forward``: the shipped model with `loss.gradients: forward` (the spatial gradients by
  forward mode, so the backward is first order), eager fp32;
* ``forward_compiled`` and ``forward_compiled_bf16``: the same through torch.compile
  (`train.compile: true`), fp32 and bfloat16 autocast; the compilation happens in the
  untimed warm-up steps and is reported as ``warmup_s``. Forward mode does not reach
  through the image branch: with --images these variants are skipped.

Extrapolation: paper profile = 1500 epochs x 5,323 scans x 16,384 points, divided by the
measured points per second; the model sizes are config/paper.yaml's (``--profile paper``)
or config.yaml's demo sizes (``--profile demo``). Image branch excluded unless --images;
with it, the demo's trunk is fixed and its output cached per crop, as in training.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import time

import torch
from _profiles import add_profile_arguments, profile_method

from facerecon.batches import loss_function
from facerecon.config import LossConfig, PaperModelConfig
from facerecon.models import Conditioning
from facerecon.models.deformation import DeformationField, apply_se3
from facerecon.models.paper import PaperFace

PAPER_POINTS = 1500 * 5323 * 16384  # epochs x scans x points per scan per epoch


def looped_forward(self: DeformationField, points: torch.Tensor, code: torch.Tensor,
                   centres: torch.Tensor) -> dict[str, torch.Tensor]:
    """The reference: one SIREN pass per mini-net, summed in a loop."""
    blend = torch.softmax(self.blend(points), dim=-1)
    twist = points.new_zeros(*points.shape[:-1], 6)
    for k, net in enumerate(self.mini_nets):
        twist = twist + blend[..., k:k + 1] * net(points - centres[:, k:k + 1], code)
    return {"points": apply_se3(points, twist), "twist": twist, "blend": blend}


def model_config(profile: str, images: bool) -> PaperModelConfig:
    """`ours`'s model in the profile, the image branch on or off."""
    return dataclasses.replace(profile_method(profile).model, multiscale_features=images)


def time_variant(variant: str, cfg: PaperModelConfig, scans: int, points: int, steps: int,
                 device: torch.device) -> tuple[float, float]:
    """Seconds per optimisation step (mean of ``steps`` after two warm-up steps) and the
    seconds of the warm-up (compilation included)."""
    torch.manual_seed(0)
    model = PaperFace(cfg).to(device)
    if variant == "reference":
        for field in (model.expression_field, model.identity_field):
            field.forward = looped_forward.__get__(field)
    angles = torch.rand(68, 2, device=device) * 1.2 - 0.6
    mean = 0.4 * torch.stack([angles[:, 0].sin(), angles[:, 1].sin(),
                              angles[:, 0].cos() * angles[:, 1].cos()], -1)
    model.initialise(mean)
    if cfg.multiscale_features and cfg.cache_frozen_trunk:  # the demo: trunk fixed, cached
        model.encoder.trunk.requires_grad_(False)
    half = points // 2
    batch = {"surface_points": torch.rand(scans, half, 3, device=device) - 0.5,
             "surface_normals": torch.nn.functional.normalize(
                 torch.randn(scans, half, 3, device=device), dim=-1),
             "space_points": torch.rand(scans, points - half, 3, device=device) - 0.5,
             "space_sdf": torch.rand(scans, points - half, device=device) * 0.1,
             "landmarks": mean.expand(scans, 68, 3).contiguous(),
             "neutral": torch.zeros(scans, dtype=torch.bool, device=device)}
    codes = {"identity": (torch.randn(scans, cfg.id_dim, device=device) * 0.01),
             "expression": (torch.randn(scans, cfg.exp_dim, device=device) * 0.01)}
    for code in codes.values():
        code.requires_grad_(True)
    cond = Conditioning(codes)
    if cfg.multiscale_features:
        cond = Conditioning(codes, image=torch.rand(scans, 3, 256, 256, device=device),
                            camera=torch.tensor([[[100.0, 0, 0, 128], [0, -100.0, 0, 128]]],
                                                device=device).expand(scans, 2, 4))
    weights = LossConfig(smooth=10.0, entropy=1.0,
                         gradients="forward" if variant.startswith("forward") else "reverse")
    loss_fn = loss_function(model, "compiled" in variant)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam([*trainable, *codes.values()], lr=1e-4)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if variant.endswith("bf16")
                else contextlib.nullcontext())
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = variant.endswith("bf16")
        torch.backends.cudnn.allow_tf32 = variant.endswith("bf16")

    def step() -> None:
        with autocast:
            terms = loss_fn(batch, model.prepare(cond), weights)
        loss = sum(t.float() for t in terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def timed(n: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        tic = time.perf_counter()
        for _ in range(n):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - tic

    warmup = timed(2)
    return timed(steps) / steps, warmup


def main() -> None:
    """Time the variants, print a JSON line each and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_profile_arguments(parser, scans=10)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--variants", nargs="+",
                        default=["reference", "batched", "batched_bf16", "forward",
                                 "forward_compiled", "forward_compiled_bf16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = model_config(args.profile, args.images)
    results = {}
    for variant in args.variants:
        if variant.startswith("forward") and cfg.multiscale_features:
            print(json.dumps({"variant": variant, "skipped": "forward mode does not reach "
                              "through the image branch"}), flush=True)
            continue
        seconds, warmup = time_variant(variant, cfg, args.scans, args.points, args.steps,
                                       device)
        rate = args.scans * args.points / seconds
        results[variant] = rate
        print(json.dumps({"variant": variant, "profile": args.profile, "device": str(device),
                          "seconds_per_step": round(seconds, 4), "warmup_s": round(warmup, 1),
                          "points_per_second": round(rate),
                          "paper_profile_hours": round(PAPER_POINTS / rate / 3600, 1)}),
              flush=True)
    if "reference" in results:
        print(json.dumps({f"{v}_over_reference": round(r / results["reference"], 2)
                          for v, r in results.items() if v != "reference"}))


if __name__ == "__main__":
    main()
