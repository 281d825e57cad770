"""Fit a trained model to one test scan: network frozen, new codes for the scan.

    python -m facerecon.fit --config JSON --model model.pt --samples scan.npz \
        --out codes.pt [--device auto] [--threads N]

``--config`` holds the method's name, the sections that trained the model (the file
is refused if they differ) and the ``fit`` section. Every latent space of the model
(``Model.latent_spec``) gets one code for this scan, started at the mean of the
training codes (ImFace++) or at N(0, 0.01^2), and optimised on the model's own loss.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from facerecon.batches import (
    Precision,
    add_device_arguments,
    add_view_arguments,
    conditioning,
    draw_points,
    load_scans,
    optimisation_step,
    setup_torch,
)
from facerecon.config import (
    TRAINING_SECTIONS,
    FitConfig,
    add_config_arguments,
    parse_config_arguments,
)
from facerecon.io import InputError, run_cli
from facerecon.models import LatentCodes, LatentSpace
from facerecon.models.codes import CODE_INIT_STD
from facerecon.trained import FittedCodes, TrainedModel, file_sha256, training_config

#: What the fit stage reads.
FIT_STAGE = ("method", *TRAINING_SECTIONS, "fit")


def initial_codes(spec: tuple[LatentSpace, ...], training: LatentCodes, fit: FitConfig,
                  generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Start codes, space name -> (dim,): the training means or N(0, 0.01^2) (one draw,
    split over the spaces in spec order)."""
    if fit.code_init == "mean":
        return {name: mean.cpu() for name, mean in training.means().items()}
    draw = torch.randn(sum(s.dim for s in spec), generator=generator) * CODE_INIT_STD
    return dict(zip([s.name for s in spec], draw.split([s.dim for s in spec]), strict=True))


def fit_scan(model_path: Path, samples_path: Path, sections: dict, out: Path,
             device_name: str = "auto", threads: int = 1,
             checked: tuple[str, ...] = TRAINING_SECTIONS, views: list[Path] | None = None,
             transforms: list[Path] | None = None) -> FittedCodes:
    """Optimise codes for one scan and save them (:class:`FittedCodes`). The model file is
    refused if its method or its ``checked`` sections differ from ``sections``."""
    fit = sections["fit"]
    device = setup_torch(device_name, threads, fit.seed)
    expected = {k: v for k, v in training_config(sections).items() if k in checked}
    trained = TrainedModel.load(model_path, sections["method"] or None, expected)
    model, training_codes = trained.build(device)
    method_cfg = trained.method_config
    precision = Precision.setup(method_cfg.train.precision, device)  # as the model trained
    scan = load_scans([samples_path], views or [], transforms or [])[0]
    if abs(scan.radius_mm - trained.radius_mm) > 1e-9:
        raise InputError(f"{samples_path}: crop radius {scan.radius_mm} mm differs from the "
                         f"model's {trained.radius_mm} mm")
    generator = torch.Generator().manual_seed(fit.seed)
    spec = model.latent_spec()
    codes = {name: code.to(device)[None].requires_grad_(True)
             for name, code in initial_codes(spec, training_codes, fit, generator).items()}
    optimizer = torch.optim.Adam(list(codes.values()), lr=fit.lr)
    with precision.autocast():  # the network is frozen: once
        view = model.prepare(conditioning({}, [scan], device))
    history = []
    tic = time.perf_counter()
    for step in range(fit.iterations):
        batch = draw_points([scan], fit.points_per_scan, method_cfg.train.surface_fraction,
                            generator, device)
        del batch["neutral"]  # a test scan's expression is not known to the fit
        terms = optimisation_step(model, batch, dataclasses.replace(view, codes=codes),
                                  method_cfg.loss, optimizer, precision)
        history.append({"step": step + 1, **terms})
    result = FittedCodes(
        method=trained.method, model_sha256=file_sha256(model_path), subject=scan.subject,
        expression=scan.expression,
        codes={name: code.detach().cpu()[0] for name, code in codes.items()},
        history=history, seconds=time.perf_counter() - tic)
    result.save(out)
    return result


def main(argv: list[str] | None = None) -> None:
    """Command line of :func:`fit_scan`."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, FIT_STAGE, flags=("fit",))
    parser.add_argument("--model", type=Path, required=True, help="trained model (.pt)")
    parser.add_argument("--samples", type=Path, required=True, help="the test scan's samples")
    parser.add_argument("--out", type=Path, required=True, help="fitted codes (.pt)")
    add_view_arguments(parser)
    add_device_arguments(parser)
    args = parser.parse_args(argv)
    sections = parse_config_arguments(args, FIT_STAGE)
    given = tuple(json.loads(args.config or "{}"))  # by hand, absent sections go unchecked
    result = fit_scan(args.model, args.samples, sections, args.out, args.device, args.threads,
                      checked=given, views=args.views, transforms=args.transforms)
    last = result.history[-1]
    print(f"fitted {result.subject}/{result.expression} in {result.seconds:.1f} s: "
          f"final loss {last['loss']:.4f}")


if __name__ == "__main__":
    run_cli(main)
