"""Train an implicit method's network and its auto-decoder codes on the training scans.

    python -m facerecon.train --config JSON --samples A.npz B.npz ... \
        --out model.pt --log-csv train_log.csv [--steps-csv CSV] [--tensorboard-dir DIR] \
        [--device auto] [--threads N]

``--config`` holds the method's name and the sections that produce a model
(facerecon.config.TRAINING_SECTIONS: dataset, preprocess, sampling, model, loss,
train), as the workflow writes them.
Resumable: a checkpoint ``<out>.ckpt`` is written atomically every
``checkpoint_every_epochs``; a rerun continues from it only if it belongs to the same
method, config and training samples (else it is set aside with a message).

Logs: one JSON line per logged epoch on stdout, a progress bar on stderr (when it is a
terminal), the per-epoch means in ``--log-csv`` at the end, and every step's scalars
(:class:`facerecon.steplog.StepLog`) in ``--steps-csv`` and as TensorBoard scalars in
``--tensorboard-dir`` as they happen (``tensorboard --logdir DIR`` plots them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from contextlib import closing
from pathlib import Path

import torch
from tqdm import tqdm

from facerecon.batches import (
    Precision,
    ScanSamples,
    add_device_arguments,
    add_view_arguments,
    conditioning,
    draw_points,
    load_scans,
    loss_function,
    optimisation_step,
    samples_digest,
    setup_torch,
)
from facerecon.config import (
    TRAINING_SECTIONS,
    LossConfig,
    TrainConfig,
    add_config_arguments,
    parse_config_arguments,
)
from facerecon.io import InputError, run_cli, write_text
from facerecon.models import LatentCodes, build_model
from facerecon.steplog import STEPS_CSV, TENSORBOARD_DIR, StepLog
from facerecon.trained import TrainedModel, TrainingCheckpoint, training_config

#: What the train stage reads: the method's name and the sections that produce a model.
TRAIN_STAGE = ("method", *TRAINING_SECTIONS)
#: Terms shown next to the total loss in the progress bar (every SDF model has them).
BAR_TERMS = ("sdf", "normal", "eikonal")


def lr_factor(epoch: int, t: TrainConfig) -> float:
    """Step decay: x decay_factor every decay_every_epochs after decay_start_epoch."""
    if epoch < t.decay_start_epoch:
        return 1.0
    return t.decay_factor ** ((epoch - t.decay_start_epoch) // t.decay_every_epochs)


def loss_weights(loss: LossConfig, epoch: int) -> LossConfig:
    """The loss weights of an epoch: gate supervision stops after gate_supervision_epochs."""
    if loss.gate_supervision_epochs and epoch >= loss.gate_supervision_epochs:
        return dataclasses.replace(loss, gate_supervision=0.0)
    return loss


def index_scans(scans: list[ScanSamples]) -> tuple[list[str], list[tuple[str, str]]]:
    """Subjects (rows of per-subject codes) and scans (rows of per-scan codes), sorted."""
    keys = [(s.subject, s.expression) for s in scans]
    if len(set(keys)) != len(keys):
        raise InputError("training samples contain the same (subject, expression) twice")
    radii = {s.radius_mm for s in scans}
    if len(radii) != 1:
        raise InputError(f"training samples mix crop radii {sorted(radii)} mm")
    return sorted({s.subject for s in scans}), sorted(keys)


def train(sample_paths: list[Path], method: str, sections: dict, out: Path, log_csv: Path,
          device_name: str = "auto", threads: int = 1, views: list[Path] | None = None,
          transforms: list[Path] | None = None, steps_csv: Path | None = None,
          tensorboard_dir: Path | None = None) -> dict[str, float]:
    """Train and write ``out`` (a :class:`TrainedModel`) and a per-epoch loss CSV.

    ``views`` and ``transforms`` (one per sample file) give image-reading models each
    scan's crop and camera. Every step is logged (:class:`facerecon.steplog.StepLog`) to
    ``steps_csv`` and ``tensorboard_dir`` (default: STEPS_CSV, TENSORBOARD_DIR beside out)."""
    model_cfg, t = sections["model"], sections["train"]
    if not method:
        raise InputError("--config: the method's name ('method') is missing")
    if model_cfg.kind != "implicit":
        raise InputError(f"method {method!r}: model {model_cfg.name!r} is not trained "
                         "(it is of the 'mesh' kind)")
    if t.compile and sections["loss"].gradients != "forward":
        raise InputError(f"method {method!r}: train.compile needs loss.gradients 'forward' "
                         "(torch.compile refuses the double backward of 'reverse')")
    device = setup_torch(device_name, threads, t.seed)
    precision = Precision.setup(t.precision, device)
    scans = sorted(load_scans(sample_paths, views, transforms),
                   key=lambda s: (s.subject, s.expression))
    subjects, scan_keys = index_scans(scans)
    subject_idx = torch.tensor([subjects.index(s.subject) for s in scans], device=device)
    scan_idx = torch.tensor(
        [scan_keys.index((s.subject, s.expression)) for s in scans], device=device
    )

    model = build_model(model_cfg).to(device)
    model.initialise(torch.stack([s.landmarks for s in scans]).mean(0).to(device))
    loss_fn = loss_function(model, t.compile)
    codes = LatentCodes(model.latent_spec(), len(subjects), len(scan_keys)).to(device)
    optimizer = torch.optim.Adam(
        [*model.param_groups(t), {"name": "codes", "params": codes.parameters(),
                                  "lr": t.code_lr}])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(e, t))
    generator = torch.Generator().manual_seed(t.seed)
    digest = samples_digest(scans)

    def snapshot() -> TrainedModel:
        return TrainedModel(
            method=method,
            config=training_config(sections),
            samples_digest=digest, subjects=subjects, scans=scan_keys,
            radius_mm=scans[0].radius_mm, network=model.state_dict(),
            codes=codes.state_dict())

    history: list[dict[str, float]] = []
    start_epoch = 0
    ckpt_path = out.with_name(out.name + ".ckpt")
    checkpoint = TrainingCheckpoint.resume(ckpt_path, snapshot())
    if checkpoint is not None:
        model.load_state_dict(checkpoint.model.network)
        codes.load_state_dict(checkpoint.model.codes)
        optimizer.load_state_dict(checkpoint.optimizer)
        scheduler.load_state_dict(checkpoint.scheduler)
        generator.set_state(checkpoint.generator)
        torch.set_rng_state(checkpoint.torch_rng)
        history, start_epoch = checkpoint.history, checkpoint.epoch
        print(f"resuming from {ckpt_path} at epoch {start_epoch}", flush=True)

    n_batches = max(1, -(-len(scans) // t.scans_per_batch))
    print(json.dumps({"device": device.type, "precision": precision.name,
                      "tf32": precision.tf32}), flush=True)
    with (closing(StepLog(steps_csv or out.parent / STEPS_CSV,
                          tensorboard_dir or out.parent / TENSORBOARD_DIR,
                          start_epoch * n_batches)) as steps,
          tqdm(range(start_epoch, t.epochs), desc=method, total=t.epochs, initial=start_epoch,
               unit="epoch", file=sys.stderr, disable=None) as bar):
        for epoch in bar:
            tic = time.perf_counter()
            for group in optimizer.param_groups:  # a group may stay fixed for its first epochs
                for p in group["params"]:
                    p.requires_grad_(epoch >= group.get("frozen_epochs", 0))
            order = torch.randperm(len(scans), generator=generator)
            sums: dict[str, float] = {}
            for b in range(n_batches):
                members = order[b * t.scans_per_batch:(b + 1) * t.scans_per_batch]
                batch_scans = [scans[i] for i in members]
                batch = draw_points(batch_scans, t.points_per_scan, t.surface_fraction,
                                    generator, device)
                members = members.to(device)
                with precision.autocast():
                    cond = model.prepare(conditioning(
                        codes(subject_idx[members], scan_idx[members]), batch_scans, device))
                step = optimisation_step(loss_fn, batch, cond,
                                         loss_weights(sections["loss"], epoch), optimizer,
                                         precision)
                for k, v in step.items():
                    sums[k] = sums.get(k, 0.0) + v / n_batches
                steps.append({"epoch": epoch + 1, "step": epoch * n_batches + b + 1,
                              "wall_time": time.time(), **step,
                              **{f"lr_{g.get('name', i)}": g["lr"]
                                 for i, g in enumerate(optimizer.param_groups)}})
            scheduler.step()
            history.append({"epoch": epoch + 1, **sums, "seconds": time.perf_counter() - tic})
            bar.set_postfix({k: f"{sums[k]:.4g}" for k in ("loss", *BAR_TERMS) if k in sums})
            if (epoch + 1) % max(1, t.epochs // 20) == 0 or epoch == 0:
                tqdm.write(json.dumps(history[-1]), file=sys.stdout)
                sys.stdout.flush()
            if (epoch + 1) % t.checkpoint_every_epochs == 0:
                TrainingCheckpoint(snapshot(), epoch + 1, optimizer.state_dict(),
                                   scheduler.state_dict(), generator.get_state(),
                                   torch.get_rng_state(), history).save(ckpt_path)

    snapshot().save(out)
    columns = list(history[0])
    write_text(log_csv, ",".join(columns) + "\n" + "".join(
        ",".join(f"{row.get(c, 0.0):.6g}" for c in columns) + "\n" for row in history))
    ckpt_path.unlink(missing_ok=True)
    return history[-1]


def main(argv: list[str] | None = None) -> None:
    """Command line of :func:`train`."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, TRAIN_STAGE)
    parser.add_argument("--samples", type=Path, nargs="+", required=True,
                        help="sample files of the training scans (facerecon.sample)")
    parser.add_argument("--out", type=Path, required=True, help="trained model (.pt)")
    parser.add_argument("--log-csv", type=Path, required=True, help="per-epoch losses")
    parser.add_argument("--steps-csv", type=Path, default=None,
                        help=f"per-step losses and learning rates (default: {STEPS_CSV} beside "
                             "--out)")
    parser.add_argument("--tensorboard-dir", type=Path, default=None,
                        help="the same per-step scalars as TensorBoard event files (default: "
                             f"{TENSORBOARD_DIR}/ beside --out)")
    add_view_arguments(parser)
    add_device_arguments(parser)
    args = parser.parse_args(argv)
    sections = parse_config_arguments(args, TRAIN_STAGE)
    last = train(args.samples, sections["method"], sections, args.out, args.log_csv, args.device,
                 args.threads, args.views, args.transforms, args.steps_csv,
                 args.tensorboard_dir)
    print(f"trained {args.out}: final loss {last['loss']:.4f}")


if __name__ == "__main__":
    run_cli(main)
