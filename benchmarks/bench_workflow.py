"""Time the default workflow end to end, and each rule, from a clean working directory.

    python benchmarks/bench_workflow.py [--cores N] [--configfile EXTRA.yaml ...]

Runs `snakemake --cores N results/table1.csv` in a fresh temporary directory
(nothing cached), then prints a Markdown table with the wall time, the sum of
each rule's job times from Snakemake's benchmark files, and the date, machine
and command, ready for BENCHMARKS.md. Target (issue 2): under 15 minutes on
2 CPU cores with the default config.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", default="all")
    parser.add_argument("--configfile", nargs="*", default=[], help="overlays on config.yaml")
    parser.add_argument("--target", default="results/table1.csv")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [str(Path(sys.executable).parent / "snakemake"), "-s",
               str(REPO / "workflow/Snakefile"), args.target, "-d", tmp, "--cores", args.cores,
               "--configfile", str(REPO / "config.yaml"), *args.configfile]
        tic = time.perf_counter()
        env = {**os.environ,
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)
        wall_s = time.perf_counter() - tic
        rows = []
        for rule_dir in sorted(Path(tmp).glob("results/*/benchmarks/*")):
            files = [rule_dir] if rule_dir.is_file() else sorted(rule_dir.rglob("*.tsv"))
            times = [pd.read_csv(f, sep="\t")["s"].iloc[0] for f in files]
            rss = [pd.read_csv(f, sep="\t")["max_rss"].iloc[0] for f in files]
            rows.append((rule_dir.name.removesuffix(".tsv"), len(files), sum(times), max(rss)))
        table1 = (Path(tmp) / "results/table1.md").read_text()
    print(f"- date: {datetime.date.today()}; machine: {platform.platform()}, "
          f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}")
    print(f"- command: `python benchmarks/bench_workflow.py --cores {args.cores}"
          + (f" --configfile {' '.join(args.configfile)}" if args.configfile else "") + "`")
    print(f"- wall time: {wall_s:.0f} s ({wall_s / 60:.1f} min) for {args.target}\n")
    print("| rule | jobs | summed job time (s) | max RSS (MB) |\n|---|---|---|---|")
    for name, jobs, seconds, rss in rows:
        print(f"| {name} | {jobs} | {seconds:.1f} | {rss:.0f} |")
    print("\n" + table1)


if __name__ == "__main__":
    main()
