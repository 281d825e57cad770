"""Config loading, validation errors and the generated schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from facerecon.config import (
    MethodConfig,
    deep_merge,
    load_workflow_config,
    method_config,
    method_from_json,
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
    assert cfg.dataset == "synthetic"
    schema = workflow_schema()
    for section, props in schema["properties"].items():
        assert props["description"], section
        for key, sub in props.get("properties", {}).items():
            assert sub["description"], f"{section}.{key} has no description"


def test_method_overrides_merge_over_shared_sections(config: dict) -> None:
    cfg = method_config(config, "ours_experts_reg")
    assert cfg.model.experts == 8
    assert cfg.loss.smooth > 0
    assert cfg.train.epochs == config["train"]["epochs"]
    assert cfg.ablation_flags == {"multiscale": False, "local_experts": True,
                                  "regularization": True}
    assert method_config(config, "deepsdf").ablation_flags["local_experts"] is False
    assert cfg.dim == config["model"]["id_dim"] + config["model"]["exp_dim"]


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
    split = config["synthetic"]["split"]
    with pytest.raises(InputError, match=r"synthetic\.split.*\['1'\].*both train and test"):
        load_workflow_config(deep_merge(config, {"synthetic": {"split": {"test_subjects": [1]}}}))
    with pytest.raises(InputError, match=r"\['9'\] are not among the 8 synthetic subjects"):
        load_workflow_config(deep_merge(config, {"synthetic": {"split": {"test_subjects": [9]}}}))
    with pytest.raises(InputError, match=r"test_expressions: \[21\]"):
        load_workflow_config(deep_merge(config, {"synthetic": {"split": {
            "test_expressions": split["test_expressions"] + [21]}}}))
