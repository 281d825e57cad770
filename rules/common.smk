"""Config validation, scan lists and helpers shared by every stage."""

import dataclasses
import json
from pathlib import Path

from snakemake.utils import validate

from facerecon.config import load_workflow_config, method_config
from facerecon.data.layout import expression_number, scan_name


validate(config, "../workflow/schemas/config.schema.json")
CFG = load_workflow_config(config)

#: Every output of the configured dataset lives under this folder.
DATA = f"results/{CFG.dataset}"
TRAIN_SCANS = [
    (str(s), scan_name(e))
    for s in CFG.split.train_subjects
    for e in CFG.split.train_expressions
]
TEST_SCANS = [
    (str(s), scan_name(e))
    for s in CFG.split.test_subjects
    for e in CFG.split.test_expressions
]
TABLE1 = CFG.table1 or list(CFG.methods)
TABLE2 = CFG.table2 or list(CFG.methods)
#: Methods that appear in a table: what per-scan and per-subject reports cover.
METHODS = list(dict.fromkeys(TABLE1 + TABLE2))


wildcard_constraints:
    subject=r"[^/]+",
    expression=r"\d+_[a-z_]+",
    method=r"[^/]+",


def scan_files(pattern, scans, **fixed):
    """Expand a path pattern over (subject, expression) pairs."""
    return [pattern.format(subject=s, expression=e, **fixed) for s, e in scans]


def method_json(method, *sections):
    """The resolved method config, restricted to ``sections``, as compact JSON.

    Used as rule params, so Snakemake reruns exactly the stages whose section changed.
    """
    cfg = method_config(config, method)
    return json.dumps(
        {s: dataclasses.asdict(getattr(cfg, s)) for s in sections},
        sort_keys=True,
        separators=(",", ":"),
    )


def table_methods_json(methods):
    """Row descriptions for a table: latent dimension and the ablation flags."""
    rows = {}
    for name in methods:
        cfg = method_config(config, name)
        rows[name] = {"dim": cfg.dim, **cfg.ablation_flags}
    return json.dumps(rows, separators=(",", ":"))


def metric_files(methods, scans):
    """Metric JSON paths of these methods on these scans."""
    return [
        f"{DATA}/metrics/{m}/{s}/{e}.json" for m in methods for s, e in scans
    ]


def scan_images_dir(wildcards):
    """FaceScape's view folder of a scan when image archives are configured, else none."""
    if CFG.dataset == "facescape" and CFG.facescape.images:
        return f"{DATA}/raw/{wildcards.subject}/images/{wildcards.expression}"
    return []
