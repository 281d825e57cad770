"""The config profiles the speed benchmarks measure, and their shared command-line options."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml
from snakemake.utils import update_config

from facerecon.config import MethodConfig, method_config

REPO = Path(__file__).resolve().parents[1]


def profile_method(profile: str, method: str = "ours") -> MethodConfig:
    """A method as config.yaml (``demo``) or config.yaml + config/paper.yaml (``paper``)
    resolve it, as ``--configfile config.yaml config/paper.yaml`` does."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    if profile == "paper":
        update_config(config, yaml.safe_load((REPO / "config/paper.yaml").read_text()))
    return method_config(config, method)


def add_profile_arguments(parser: argparse.ArgumentParser, scans: int) -> None:
    """--profile, --device, --threads, --scans (default ``scans``), --points, --images."""
    parser.add_argument("--profile", choices=["demo", "paper"], default="demo")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scans", type=int, default=scans, help="scans per step")
    parser.add_argument("--points", type=int, default=1024, help="points per scan per step")
    parser.add_argument("--images", action="store_true", help="include the image branch")
