"""How well a trained decoder reproduces its own training scans (issue 9's "fits its own
training scans to a protocol Chamfer distance under 0.5 mm").

    python benchmarks/bench_memorisation.py --data results/ict --method ours \
        [--scans 1/2_smile 3/12_lip_puckerer ...] [--resolution 128] [--out memo.json]

For each training scan: its own trained codes (identity of its subject, expression of the
scan; no fitting) -> facerecon.mesh -> facerecon.evaluate against its ground-truth sheet,
through the same command lines the workflow runs. Prints one line per scan and the mean;
``--out`` keeps them as JSON. The protocol's floor is about 0.28 mm (a sheet against a
second sampling of itself).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from facerecon import evaluate, mesh
from facerecon.io import read_json, write_json
from facerecon.models import LatentCodes
from facerecon.trained import FittedCodes, TrainedModel, file_sha256


def training_codes(trained: TrainedModel, codes: LatentCodes, model_path: Path, subject: str,
                   expression: str, out: Path) -> None:
    """Write the model's own codes of a training scan as a FittedCodes file."""
    if (subject, expression) not in trained.scans:
        raise SystemExit(f"{subject}/{expression} is not a training scan of {model_path}")
    table = codes(torch.tensor([trained.subjects.index(subject)]),
                  torch.tensor([trained.scans.index((subject, expression))]))
    FittedCodes(method=trained.method, model_sha256=file_sha256(model_path), subject=subject,
                expression=expression, codes={k: v[0].detach() for k, v in table.items()},
                history=[], seconds=0.0).save(out)


def main() -> None:
    """Mesh and score training scans from their trained codes."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("results/ict"))
    parser.add_argument("--method", required=True)
    parser.add_argument("--scans", nargs="*", default=[],
                        help="subject/expression pairs; default: 4 spread over the table")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    model_path = args.data / "models" / args.method / "model.pt"
    trained = TrainedModel.load(model_path)
    _, code_tables = trained.build(torch.device("cpu"))
    scans = ([tuple(s.split("/")) for s in args.scans] if args.scans
             else trained.scans[:: max(1, len(trained.scans) // 4)][:4])
    images = trained.method_config.model.components.get("multiscale", False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for subject, expression in scans:
            codes, ply, metrics = (Path(tmp) / f"{subject}_{expression}.{ext}"
                                   for ext in ("pt", "ply", "json"))
            training_codes(trained, code_tables, model_path, subject, expression, codes)
            views = (["--views", str(args.data / "images" / subject / expression),
                      "--transforms", str(args.data / "preprocessed" / subject
                                          / f"{expression}.json")] if images else [])
            mesh.main(["--config", json.dumps({"method": args.method}), "--model",
                       str(model_path), "--codes", str(codes), "--out", str(ply),
                       "--resolution", str(args.resolution), "--threads", str(args.threads),
                       *views])
            evaluate.main(["--pred", str(ply), "--gt",
                           str(args.data / "preprocessed" / subject / f"{expression}.ply"),
                           "--out", str(metrics)])
            result = read_json(metrics)
            rows.append({"subject": subject, "expression": expression,
                         "chamfer_mm": result["chamfer_mm"], "fscore": result["fscore"]})
            print(json.dumps(rows[-1]), flush=True)
    summary = {"method": args.method, "model": str(model_path),
               "mean_chamfer_mm": statistics.fmean(r["chamfer_mm"] for r in rows),
               "mean_fscore": statistics.fmean(r["fscore"] for r in rows), "scans": rows}
    print(json.dumps({k: v for k, v in summary.items() if k != "scans"}))
    if args.out:
        write_json(args.out, summary)


if __name__ == "__main__":
    main()
