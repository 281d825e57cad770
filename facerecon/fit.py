"""Fit a trained model to test scans: network frozen, new codes per scan, many scans at once.

    python -m facerecon.fit --config JSON --model model.pt --samples A.npz B.npz ... \
        --out A.pt B.pt ... [--device auto] [--threads N]

``--config`` holds the method's name, the sections that trained the model (the file
is refused if they differ) and the ``fit`` section. Every latent space of the model
(``Model.latent_spec``) gets one code per scan (with ``fit.share_identity``, one code
per subject for the spaces training keeps per subject), started at the mean of the
training codes (ImFace++) or at N(0, 0.01^2), and optimised on the model's own loss.

The scans given are fitted as one batched problem (``fit.chunk_scans`` splits it): the
loss is the mean over the scans and Adam scales each code's step by its own gradient
statistics, so apart from the point draws this equals fitting each scan alone, in one
pass of the frozen network for all of them. Each chunk is resumable from
``<its first output>.ckpt``, kept until every output is written.
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
    ScanSamples,
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
    LossConfig,
    add_config_arguments,
    parse_config_arguments,
)
from facerecon.io import InputError, run_cli
from facerecon.models import LatentCodes, LatentSpace, Model
from facerecon.models.codes import CODE_INIT_STD
from facerecon.trained import (
    FitCheckpoint,
    FittedCodes,
    TrainedModel,
    file_sha256,
    training_config,
)

#: What the fit stage reads.
FIT_STAGE = ("method", *TRAINING_SECTIONS, "fit")


def initial_codes(spec: tuple[LatentSpace, ...], training: LatentCodes, fit: FitConfig,
                  rows: dict[str, int], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Start codes, space name -> (rows[name], dim): every row the training mean, or each
    row its own N(0, 0.01^2) draw (spaces in spec order, rows in order)."""
    if fit.code_init == "mean":
        return {s.name: training.means()[s.name].cpu().expand(rows[s.name], s.dim).clone()
                for s in spec}
    return {s.name: torch.randn(rows[s.name], s.dim, generator=generator) * CODE_INIT_STD
            for s in spec}


def fitting_loss(loss: LossConfig) -> LossConfig:
    """The training loss weights less gate supervision: that term trains the gate alone (on
    detached input), and the gate is frozen in a fit."""
    return dataclasses.replace(loss, gate_supervision=0.0)


def chunks(scans: list[ScanSamples], fit: FitConfig) -> list[list[int]]:
    """Indices of the scans of each batched problem: consecutive runs of at most
    ``fit.chunk_scans`` scans (0: all), a subject's scans kept together when they share
    an identity (a subject with more scans than that is a chunk of its own)."""
    size = fit.chunk_scans or len(scans)
    if not fit.share_identity:
        return [list(range(i, min(i + size, len(scans)))) for i in range(0, len(scans), size)]
    by_subject: dict[str, list[int]] = {}
    for i, scan in enumerate(scans):
        by_subject.setdefault(scan.subject, []).append(i)
    result: list[list[int]] = []
    for members in by_subject.values():
        if result and len(result[-1]) + len(members) <= size:
            result[-1].extend(members)
        else:
            result.append(list(members))
    return result


@dataclasses.dataclass
class Fitting:
    """The frozen model and what every chunk's fit needs of it."""

    model: Model
    training_codes: LatentCodes
    model_sha256: str
    method: str
    fit: FitConfig
    loss: LossConfig
    surface_fraction: float
    precision: Precision
    device: torch.device

    def fit_chunk(self, scans: list[ScanSamples], checkpoint: Path) -> list[FittedCodes]:
        """Optimise the codes of ``scans`` as one problem; resume from and update
        ``checkpoint``; the scans' FittedCodes, in order."""
        fit, spec = self.fit, self.model.latent_spec()
        subjects = sorted({s.subject for s in scans}) if fit.share_identity else None
        scan_idx = torch.arange(len(scans), device=self.device)
        subject_idx = (torch.tensor([subjects.index(s.subject) for s in scans],
                                    device=self.device) if subjects else scan_idx)
        generator = torch.Generator().manual_seed(fit.seed)
        with torch.random.fork_rng(devices=[]):  # its random draws are replaced below
            codes = LatentCodes(spec, len(subjects or scans), len(scans))
        rows = {name: table.num_embeddings for name, table in codes.tables.items()}
        start = initial_codes(spec, self.training_codes, fit, rows, generator)
        codes.load_state_dict({f"tables.{name}.weight": value for name, value in start.items()})
        codes.to(self.device)
        optimizer = torch.optim.Adam(codes.parameters(), lr=fit.lr)
        key = {"model_sha256": self.model_sha256, "fit": dataclasses.asdict(fit),
               "scans": [[s.subject, s.expression] for s in scans]}
        history: list[dict[str, float]] = []
        step0, seconds = 0, 0.0
        resumed = FitCheckpoint.resume(checkpoint, key)
        if resumed is not None:
            codes.load_state_dict(resumed.codes)
            optimizer.load_state_dict(resumed.optimizer)
            generator.set_state(resumed.generator)
            torch.set_rng_state(resumed.torch_rng)
            history, step0, seconds = resumed.history, resumed.step, resumed.seconds
            print(f"resuming from {checkpoint} at iteration {step0}", flush=True)
        with self.precision.autocast():  # the network is frozen: once
            view = self.model.prepare(conditioning({}, scans, self.device))
        tic = time.perf_counter()

        def save(step: int) -> None:
            FitCheckpoint(key, step, codes.state_dict(), optimizer.state_dict(),
                          generator.get_state(), torch.get_rng_state(), history,
                          seconds + time.perf_counter() - tic).save(checkpoint)

        for step in range(step0, fit.iterations):
            batch = draw_points(scans, fit.points_per_scan, self.surface_fraction, generator,
                                self.device)
            del batch["neutral"]  # a test scan's expression is not known to the fit
            cond = dataclasses.replace(view, codes=codes(subject_idx, scan_idx))
            terms = optimisation_step(self.model.get_loss_dict, batch, cond, self.loss,
                                      optimizer, self.precision)
            history.append({"step": step + 1, **terms})
            if (step + 1) % fit.checkpoint_every_iterations == 0 or step + 1 == fit.iterations:
                save(step + 1)
        seconds += time.perf_counter() - tic
        fitted = codes(subject_idx, scan_idx)
        return [FittedCodes(method=self.method, model_sha256=self.model_sha256,
                            subject=scan.subject, expression=scan.expression,
                            codes={name: code[i].detach().cpu() for name, code in fitted.items()},
                            history=history, seconds=seconds)
                for i, scan in enumerate(scans)]


def fit_scans(model_path: Path, samples_paths: list[Path], sections: dict, outs: list[Path],
              device_name: str = "auto", threads: int = 1,
              checked: tuple[str, ...] = TRAINING_SECTIONS, views: list[Path] | None = None,
              transforms: list[Path] | None = None) -> list[FittedCodes]:
    """Optimise codes for the scans and save each scan's (:class:`FittedCodes`) to its
    ``outs`` path. The model file is refused if its method or its ``checked`` sections
    differ from ``sections``."""
    fit = sections["fit"]
    if len(outs) != len(samples_paths):
        raise InputError(f"--out: {len(outs)} paths for {len(samples_paths)} sample files "
                         "(one per scan, same order)")
    device = setup_torch(device_name, threads, fit.seed)
    expected = {k: v for k, v in training_config(sections).items() if k in checked}
    trained = TrainedModel.load(model_path, sections["method"] or None, expected)
    model, training_codes = trained.build(device)
    method_cfg = trained.method_config
    scans = load_scans(samples_paths, views or [], transforms or [])
    seen: dict[tuple[str, str], Path] = {}
    for path, scan in zip(samples_paths, scans, strict=True):
        if abs(scan.radius_mm - trained.radius_mm) > 1e-9:
            raise InputError(f"{path}: crop radius {scan.radius_mm} mm differs from the "
                             f"model's {trained.radius_mm} mm")
        if (scan.subject, scan.expression) in seen:
            raise InputError(f"{path}: scan {scan.subject}/{scan.expression} is also given "
                             f"as {seen[scan.subject, scan.expression]}")
        seen[scan.subject, scan.expression] = path
    fitting = Fitting(model, training_codes, file_sha256(model_path), trained.method, fit,
                      fitting_loss(method_cfg.loss), method_cfg.train.surface_fraction,
                      Precision.setup(method_cfg.train.precision, device),  # as it trained
                      device)
    results: dict[int, FittedCodes] = {}
    checkpoints = []
    for members in chunks(scans, fit):
        checkpoints.append(outs[members[0]].with_name(outs[members[0]].name + ".ckpt"))
        fitted = fitting.fit_chunk([scans[i] for i in members], checkpoints[-1])
        results.update(zip(members, fitted, strict=True))
    for i, out in enumerate(outs):
        results[i].save(out)
    for checkpoint in checkpoints:
        checkpoint.unlink(missing_ok=True)
    return [results[i] for i in range(len(outs))]


def main(argv: list[str] | None = None) -> None:
    """Command line of :func:`fit_scans`."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, FIT_STAGE, flags=("fit",))
    parser.add_argument("--model", type=Path, required=True, help="trained model (.pt)")
    parser.add_argument("--samples", type=Path, nargs="+", required=True,
                        help="the test scans' samples")
    parser.add_argument("--out", type=Path, nargs="+", required=True,
                        help="fitted codes (.pt), one per sample file, same order")
    add_view_arguments(parser)
    add_device_arguments(parser)
    args = parser.parse_args(argv)
    sections = parse_config_arguments(args, FIT_STAGE)
    given = tuple(json.loads(args.config or "{}"))  # by hand, absent sections go unchecked
    results = fit_scans(args.model, args.samples, sections, args.out, args.device,
                        args.threads, checked=given, views=args.views,
                        transforms=args.transforms)
    for result in results:
        print(f"fitted {result.subject}/{result.expression} in {result.seconds:.1f} s "
              f"(with {len(results)} scans in this job): final loss "
              f"{result.history[-1]['loss']:.4f}")


if __name__ == "__main__":
    run_cli(main)
