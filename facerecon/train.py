"""Train a method's decoder and its auto-decoder codes on the training scans.

    python -m facerecon.train --samples A.npz B.npz ... --method-json JSON \
        --out model.pt --log-csv train_log.csv [--device auto] [--threads N]

Resumable: a checkpoint ``<out>.ckpt`` is written atomically every
``checkpoint_every_epochs``; a rerun with the same method config continues from
it (Snakemake removes ``model.pt`` of a failed job, not the checkpoint).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from facerecon.batches import ScanSamples, draw_points, load_scan_samples, setup_torch
from facerecon.config import MethodConfig, method_from_json, to_json
from facerecon.io import InputError, atomic_path, run_cli, write_text
from facerecon.models import LatentCodes, build_model


def lr_factor(epoch: int, cfg: MethodConfig) -> float:
    """Step decay: x decay_factor every decay_every_epochs after decay_start_epoch."""
    t = cfg.train
    if epoch < t.decay_start_epoch:
        return 1.0
    return t.decay_factor ** ((epoch - t.decay_start_epoch) // t.decay_every_epochs)


def index_scans(scans: list[ScanSamples]) -> tuple[list[str], list[tuple[str, str]]]:
    """Subjects (one identity code each) and scans (one expression code each), sorted."""
    keys = [(s.subject, s.expression) for s in scans]
    if len(set(keys)) != len(keys):
        raise InputError("training samples contain the same (subject, expression) twice")
    radii = {s.radius_mm for s in scans}
    if len(radii) != 1:
        raise InputError(f"training samples mix crop radii {sorted(radii)} mm")
    return sorted({s.subject for s in scans}), sorted(keys)


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save atomically."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def train(
    sample_paths: list[Path],
    cfg: MethodConfig,
    out: Path,
    log_csv: Path,
    device_name: str = "auto",
    threads: int = 1,
) -> dict:
    """Train and write ``out`` (decoder, codes, index, config) and a per-epoch loss CSV."""
    device = setup_torch(device_name, threads, cfg.train.seed)
    scans = sorted((load_scan_samples(p) for p in sample_paths),
                   key=lambda s: (s.subject, s.expression))
    subjects, scan_keys = index_scans(scans)
    subject_idx = torch.tensor([subjects.index(s.subject) for s in scans], device=device)
    scan_idx = torch.tensor(
        [scan_keys.index((s.subject, s.expression)) for s in scans], device=device
    )

    model = build_model(cfg.model).to(device)
    codes = LatentCodes(len(subjects), len(scan_keys), cfg.model.id_dim, cfg.model.exp_dim)
    codes = codes.to(device)
    optimizer = torch.optim.Adam(
        [
            {"params": model.parameters(), "lr": cfg.train.lr},
            {"params": codes.parameters(), "lr": cfg.train.code_lr},
        ]
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(e, cfg))
    generator = torch.Generator().manual_seed(cfg.train.seed)
    history: list[dict[str, float]] = []
    start_epoch = 0
    config_json = to_json(cfg)

    ckpt_path = out.with_name(out.name + ".ckpt")
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ckpt["config"] == config_json and ckpt["scans"] == scan_keys:
            model.load_state_dict(ckpt["model"])
            codes.load_state_dict(ckpt["codes"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            generator.set_state(ckpt["generator"])
            torch.set_rng_state(ckpt["torch_rng"])
            history, start_epoch = ckpt["history"], ckpt["epoch"]
            print(f"resuming from {ckpt_path} at epoch {start_epoch}", flush=True)
        else:
            print(f"ignoring {ckpt_path}: it was written for another config or scan set")

    def state(epoch: int) -> dict:
        return {
            "config": config_json,
            "subjects": subjects,
            "scans": scan_keys,
            "radius_mm": scans[0].radius_mm,
            "model": model.state_dict(),
            "codes": codes.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": history,
            "epoch": epoch,
        }

    t = cfg.train
    n_batches = max(1, -(-len(scans) // t.scans_per_batch))
    for epoch in range(start_epoch, t.epochs):
        tic = time.perf_counter()
        order = torch.randperm(len(scans), generator=generator)
        sums: dict[str, float] = {}
        for b in range(n_batches):
            members = order[b * t.scans_per_batch:(b + 1) * t.scans_per_batch]
            batch = draw_points([scans[i] for i in members], t.points_per_scan,
                                t.surface_fraction, generator, device)
            members = members.to(device)
            z_id, z_exp = codes(subject_idx[members], scan_idx[members])
            terms = model.get_loss_dict(batch, z_id, z_exp, cfg.loss)
            loss = sum(terms.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for k, v in {"loss": loss, **terms}.items():
                sums[k] = sums.get(k, 0.0) + v.item() / n_batches
        scheduler.step()
        history.append({"epoch": epoch + 1, **sums, "seconds": time.perf_counter() - tic})
        if (epoch + 1) % max(1, t.epochs // 20) == 0 or epoch == 0:
            print(json.dumps(history[-1]), flush=True)
        if (epoch + 1) % t.checkpoint_every_epochs == 0:
            save_checkpoint(ckpt_path, state(epoch + 1))

    final = state(t.epochs)
    for key in ("optimizer", "scheduler", "generator", "torch_rng"):
        final.pop(key)
    save_checkpoint(out, final)
    columns = list(history[0])
    write_text(log_csv, ",".join(columns) + "\n" + "".join(
        ",".join(f"{row.get(c, 0.0):.6g}" for c in columns) + "\n" for row in history))
    ckpt_path.unlink(missing_ok=True)
    return history[-1]


def main(argv: list[str] | None = None) -> None:
    """Command line of :func:`train`."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=Path, nargs="+", required=True,
                        help="sample files of the training scans (facerecon.sample)")
    parser.add_argument("--method-json", required=True,
                        help="the method's model/loss/train config as JSON")
    parser.add_argument("--out", type=Path, required=True, help="trained model (.pt)")
    parser.add_argument("--log-csv", type=Path, required=True, help="per-epoch losses")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    args = parser.parse_args(argv)
    last = train(args.samples, method_from_json(args.method_json), args.out, args.log_csv,
                 args.device, args.threads)
    print(f"trained {args.out}: final loss {last['loss']:.4f}")


if __name__ == "__main__":
    run_cli(main)
