"""Config validation, scan lists and helpers shared by every stage."""

import json
import re
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

from facerecon.config import TRAINING_SECTIONS, load_workflow_config, method_config, stage_json
from facerecon.errors import InputError
from facerecon.layout import expression_number, scan_name


try:  # our own checks first: one line naming the key, exit code 2, no traceback
    CFG = load_workflow_config(config)
except InputError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
# then the schema (generated from the same dataclasses); defaults live in the dataclasses
validate(config, "../workflow/schemas/config.schema.json", set_default=False)

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
#: Every method by kind: 'implicit' ones train -> fit -> mesh, 'mesh' ones fit a mesh directly.
#: Every method's resolved config, computed once (rule params and inputs read it per job).
METHOD_CFG = {name: method_config(config, name) for name in CFG.methods}
KIND = {name: cfg.kind for name, cfg in METHOD_CFG.items()}


def names_regex(names):
    """A wildcard constraint matching exactly these names (nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


IMPLICIT_METHODS = names_regex([m for m, kind in KIND.items() if kind == "implicit"])
MESH_METHODS = names_regex([m for m, kind in KIND.items() if kind == "mesh"])


wildcard_constraints:
    subject=r"[^/]+",
    expression=r"\d+_[a-z_]+",
    method=r"[^/]+",


def scan_files(pattern, scans, **fixed):
    """Expand a path pattern over (subject, expression) pairs."""
    return [pattern.format(subject=s, expression=e, **fixed) for s, e in scans]


def stage_config(*sections, method=None):
    """The resolved config sections a stage reads, as compact JSON for its ``--config``.

    A string param, so Snakemake records it and reruns exactly the stages whose
    sections changed, and what follows them.
    """
    return stage_json(CFG, sections, method, METHOD_CFG.get(method))


def table_methods_json(methods):
    """Row descriptions for a table: latent dimension and the ablation flags."""
    rows = {}
    for name in methods:
        cfg = METHOD_CFG[name]
        rows[name] = {"dim": cfg.dim, **cfg.ablation_flags}
    return json.dumps(rows, separators=(",", ":"))


#: Scheduling priority of the network chain (train -> fit -> mesh), the long pole of a run:
#: its jobs start as soon as they can, and the many short ones (evaluations, mesh-kind
#: fits) fill the gaps.
NETWORK_PRIORITY = 10


#: The fit and mesh jobs' wildcards (fit.group): what names one job in its log and
#: benchmark paths.
FIT_JOB = {"scan": "{subject}/{expression}", "subject": "{subject}", "all": "all"}[
    CFG.fit.group
]


def group_outputs(folder, suffix):
    """Outputs of one fit-group job (fit, mesh): a file per scan of its group, under
    ``{DATA}/<folder>/{method}/<subject>/<expression><suffix>``."""
    per_scan = f"{DATA}/{folder}/{{{{method}}}}/{{subject}}/{{expression}}{suffix}"
    if CFG.fit.group == "scan":
        return [per_scan.format(subject="{subject}", expression="{expression}")]
    if CFG.fit.group == "subject":
        return [per_scan.format(subject="{subject}", expression=scan_name(e))
                for e in CFG.split.test_expressions]
    return scan_files(per_scan, TEST_SCANS)


def fit_group(wildcards):
    """The (subject, expression) test scans that one fit (or mesh) job takes together."""
    if CFG.fit.group == "scan":
        return [(wildcards.subject, wildcards.expression)]
    if CFG.fit.group == "subject":
        return [s for s in TEST_SCANS if s[0] == wildcards.subject]
    return TEST_SCANS


def metric_files(methods, scans):
    """Metric JSON paths of these methods on these scans."""
    return [
        f"{DATA}/metrics/{m}/{s}/{e}.json" for m in methods for s, e in scans
    ]


def view_inputs(method, scans):
    """For a method that reads images: each scan's camera (its view folder: the images
    stage) and preprocess record, in the order of ``scans``; else nothing."""
    if not METHOD_CFG[method].ablation_flags["multiscale"]:
        return {}
    return {
        "cameras": scan_files(f"{DATA}/images/{{subject}}/{{expression}}/camera.json", scans),
        "transforms": scan_files(f"{DATA}/preprocessed/{{subject}}/{{expression}}.json", scans),
    }


def view_args(input):
    """``--views`` and ``--transforms`` for the inputs :func:`view_inputs` added, else ''."""
    if not input.get("views"):
        return ""
    views = " ".join(shlex.quote(str(Path(c).parent)) for c in input.views)
    transforms = " ".join(shlex.quote(t) for t in input.transforms)
    return f"--views {views} --transforms {transforms}"


def scan_images_dir(wildcards):
    """FaceScape's view folder of a scan when image archives are configured, else none."""
    if CFG.dataset == "facescape" and CFG.facescape.images:
        return f"{DATA}/raw/{wildcards.subject}/images/{wildcards.expression}"
    return []
