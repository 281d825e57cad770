"""Config loading, validation errors and the generated schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from facerecon.config import (
    MODEL_CONFIGS,
    MethodConfig,
    NearestTrainConfig,
    deep_merge,
    load_workflow_config,
    method_config,
    method_from_json,
    parse_stage_json,
    stage_json,
    to_json,
    workflow_schema,
)
from facerecon.io import InputError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_committed_schema_is_generated_from_the_dataclasses() -> None:
    committed = json.loads((REPO / "workflow/schemas/config.schema.json").read_text())
    assert committed == json.loads(json.dumps(workflow_schema()))


def test_default_config_is_valid_and_every_key_documented(config: dict) -> None:
    jsonschema.validate(config, workflow_schema())
    cfg = load_workflow_config(config)
    assert cfg.dataset == "ict"
    schema = workflow_schema()
    for section, props in schema["properties"].items():
        assert props["description"], section
        for key, sub in props.get("properties", {}).items():
            assert sub["description"], f"{section}.{key} has no description"


def test_method_overrides_merge_over_shared_sections(config: dict) -> None:
    cfg = method_config(config, "ablation_experts_reg")
    assert cfg.model.experts == 8
    assert cfg.model.hidden_dim == config["model"]["hidden_dim"]  # the shared section
    assert cfg.loss.smooth > 0
    assert cfg.train.epochs == config["train"]["epochs"]
    assert cfg.ablation_flags == {"multiscale": False, "local_experts": True,
                                  "regularization": True}
    assert method_config(config, "imface").ablation_flags == {
        "multiscale": False, "local_experts": False, "regularization": False}
    assert all(method_config(config, "ours").ablation_flags.values())
    assert cfg.dim == config["model"]["id_dim"] + config["model"]["exp_dim"]
    # a method of another model takes none of the shared section
    deepsdf = method_config(config, "deepsdf")
    assert deepsdf.model.name == "implicit" and deepsdf.ablation_flags["local_experts"] is False


def test_method_json_round_trip() -> None:
    cfg = MethodConfig()
    assert method_from_json(to_json(cfg)) == cfg


def test_unknown_method_in_table_is_named(config: dict) -> None:
    config["table1"] = ["deepsdf", "no_such_method"]
    with pytest.raises(InputError, match="no_such_method"):
        load_workflow_config(config)


def test_unknown_model_name_is_named(config: dict) -> None:
    config = deep_merge(config, {"methods": {"bad": {"model": {"name": "transformer"}}}})
    with pytest.raises(InputError, match=r"methods\.bad\.model\.name.*transformer"):
        load_workflow_config(config)


def test_unknown_key_and_wrong_type_are_named(config: dict) -> None:
    with pytest.raises(InputError, match=r"config\.train.*unknown key.*'epoch'"):
        load_workflow_config(deep_merge(config, {"train": {"epoch": 3}}))
    with pytest.raises(InputError, match=r"config\.fit\.iterations: expected int"):
        load_workflow_config(deep_merge(config, {"fit": {"iterations": "many"}}))
    with pytest.raises(InputError, match=r"config\.dataset: 'mystery'"):
        load_workflow_config(deep_merge(config, {"dataset": "mystery"}))


def test_bad_splits_are_rejected(config: dict) -> None:
    """The configured dataset's split (config.yaml's default) is checked."""
    dataset = config["dataset"]
    split, count = config[dataset]["split"], config[dataset]["subjects"]
    with pytest.raises(InputError, match=rf"{dataset}\.split.*\['1'\].*both train and test"):
        load_workflow_config(deep_merge(config, {dataset: {"split": {"test_subjects": [1]}}}))
    with pytest.raises(InputError, match=rf"\['{count + 1}'\] are not among the {count} "
                                         rf"{dataset} subjects"):
        load_workflow_config(deep_merge(config, {dataset: {"split": {
            "test_subjects": [count + 1]}}}))
    with pytest.raises(InputError, match=r"test_expressions: \[21\]"):
        load_workflow_config(deep_merge(config, {dataset: {"split": {
            "test_expressions": split["test_expressions"] + [21]}}}))


def test_config_imports_neither_torch_nor_trimesh() -> None:
    """Validating a config (as Snakemake does) works where torch and trimesh cannot load."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'trimesh', 'numpy'):\n"
        "            raise ImportError(f'{name} is blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import yaml\n"
        "from facerecon.config import load_workflow_config, method_config, stage_json\n"
        "config = yaml.safe_load(open('config.yaml'))\n"
        "cfg = load_workflow_config(config)\n"
        "print(stage_json(cfg, ('method', 'model', 'fit'), 'deepsdf',\n"
        "                 method_config(config, 'deepsdf')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"]["pe_frequencies"] == 0


def test_a_field_the_model_lacks_is_named(config: dict) -> None:
    config = deep_merge(config, {"methods": {"nt": {"model": {"name": "nearest_train",
                                                               "experts": 8}}}})
    with pytest.raises(InputError, match=r"methods\.nt\.model: unknown key.*'experts'"):
        load_workflow_config(config)


def test_a_method_of_another_model_does_not_inherit_the_shared_model_section(
        config: dict) -> None:
    cfg = method_config(config, "nearest_train")
    own = {k: v for k, v in config["methods"]["nearest_train"]["model"].items() if k != "name"}
    assert cfg.kind == "mesh" and cfg.model == NearestTrainConfig(**own)
    assert method_config(config, "deepsdf").kind == "implicit"


@pytest.mark.parametrize(("override", "message"), [
    ({"train": {"epochs": 0}}, r"config\.train\.epochs: must be >= 1, got 0"),
    ({"train": {"lr": -1}}, r"train\.lr: must be > 0, got -1"),
    ({"fit": {"iterations": 0}}, r"fit\.iterations: must be >= 1"),
    ({"mesh": {"resolution": 1}}, r"config\.mesh\.resolution: must be >= 8"),
    ({"train": {"surface_fraction": 1.5}}, r"surface_fraction: must be <= 1"),
    ({"sampling": {"near_sigma_mm": [1.0, -2.0]}}, r"near_sigma_mm\[1\]: must be > 0"),
])
def test_values_out_of_range_are_refused_with_the_key(config: dict, override: dict,
                                                      message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_workflow_config(deep_merge(config, override))


def test_schema_carries_the_bounds_and_one_alternative_per_model() -> None:
    schema = workflow_schema()
    assert schema["properties"]["train"]["properties"]["epochs"]["minimum"] == 1
    models = schema["properties"]["model"]["oneOf"]
    assert {m["properties"]["name"]["enum"][0] for m in models} == set(MODEL_CONFIGS)


def test_stage_json_round_trips_through_the_command_line_parser(config: dict) -> None:
    text = stage_json(load_workflow_config(config), ("method", "model", "loss", "fit"),
                      "ours", method_config(config, "ours"))
    sections = parse_stage_json(text, ("method", "model", "loss", "fit"))
    assert sections["method"] == "ours"
    assert sections["model"] == method_config(config, "ours").model
    with pytest.raises(InputError, match=r"unexpected section\(s\) \['fit'\]"):
        parse_stage_json(text, ("method", "model", "loss"))
