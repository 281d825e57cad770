"""The gate report (facerecon.gate_report): its statistic on hand-made gates, and the
command line on a tiny trained paper model with 8 experts."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_sphere_samples
from test_paper_model import SMALL, face_landmarks

from facerecon import gate_report, train
from facerecon.config import PaperModelConfig
from facerecon.io import InputError
from facerecon.models import LatentCodes
from facerecon.models.paper import PaperFace
from facerecon.models.regions import REGION_NAMES
from facerecon.trained import FittedCodes, TrainedModel, file_sha256

REPO = Path(__file__).resolve().parents[1]
SCANS = [("1", "1_neutral"), ("2", "2_smile")]
POINTS = 600


pytestmark = pytest.mark.usefixtures("one_thread")


def test_statistics_of_one_hot_and_uniform_gates() -> None:
    regions = torch.tensor([0, 0, 1, 2, 2, 2])
    expert = torch.tensor([3, 3, 1, 2, 2, 5])
    one_hot = torch.nn.functional.one_hot(expert, 8).float()
    mean_max, entropy, dominant, confusion = gate_report.gate_statistics(one_hot, regions, 8)
    assert mean_max == 1.0 and entropy == 0.0
    assert dominant.tolist() == expert.tolist()
    assert confusion.shape == (8, 8) and confusion.sum() == 6
    assert confusion[0, 3] == 2 and confusion[1, 1] == 1
    assert confusion[2, 2] == 2 and confusion[2, 5] == 1
    rows = gate_report.region_experts(confusion)
    assert rows[0] == {"points": 2, "expert": 3, "share": 1.0}
    assert rows[2] == {"points": 3, "expert": 2, "share": pytest.approx(2 / 3)}
    assert rows[7] == {"points": 0, "expert": None, "share": None}
    assert gate_report.expert_regions(confusion)[:4] == [None, "left_eye", "nose", "right_eye"]
    mean_max, entropy, _, _ = gate_report.gate_statistics(torch.full((6, 8), 1 / 8), regions, 8)
    assert mean_max == pytest.approx(1 / 8) and entropy == pytest.approx(math.log(8))


def save_codes(model: Path, samples: Path, codes: dict[str, torch.Tensor], out: Path) -> None:
    """Fitted-codes file of the scan in ``samples`` with the given (dim,) codes."""
    data = np.load(samples)
    FittedCodes(method="ours", model_sha256=file_sha256(model), subject=str(data["subject"]),
                expression=str(data["expression"]), codes=codes, history=[],
                seconds=0.0).save(out)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A paper model with 8 experts trained for a few steps on two sphere scans with
    face-like landmarks, and each scan's training codes as its fitted codes."""
    root = tmp_path_factory.mktemp("gates")
    samples = []
    for i, (subject, expression) in enumerate(SCANS):
        samples.append(root / f"{subject}_{expression}.npz")
        write_sphere_samples(samples[-1], subject, expression, 0.4, i, surface_points=1000,
                             uniform_points=500, landmarks=face_landmarks(i))
    config = {"method": "ours", "model": {"name": "paper", **SMALL, "experts": 8},
              "train": {"epochs": 6, "scans_per_batch": 2, "points_per_scan": 256,
                        "lr": 0.01}}
    model = root / "model.pt"
    train.main(["--config", json.dumps(config), "--samples", *map(str, samples), "--out",
                str(model), "--log-csv", str(root / "log.csv"), "--device", "cpu"])
    codes = TrainedModel.load(model).build(torch.device("cpu"))[1]
    fits = []
    for i, path in enumerate(samples):  # training order: sorted scans, one subject each
        fits.append(root / f"fit_{i}.pt")
        save_codes(model, path, {name: code[0].detach() for name, code in codes(
            torch.tensor([i]), torch.tensor([i])).items()}, fits[-1])
    return {"root": root, "model": model, "samples": samples, "fits": fits}


def test_command_line_writes_the_report(trained: dict) -> None:
    out = trained["root"] / "report"
    gate_report.main(["--config", json.dumps({"method": "ours"}), "--model",
                      str(trained["model"]), "--fits", *map(str, trained["fits"]),
                      "--samples", *map(str, trained["samples"]), "--points", str(POINTS),
                      "--out-json", f"{out}.json", "--out-csv", f"{out}.csv",
                      "--out-png", f"{out}.png", "--device", "cpu"])
    for suffix in (".png", ".pdf"):
        assert out.with_suffix(suffix).stat().st_size > 10_000
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["method"] == "ours" and summary["experts"] == 8
    assert 1 / 8 <= summary["mean_max_gate"] <= 1.0
    assert 0.0 <= summary["entropy"] <= math.log(8) + 1e-6
    assert summary["meets_target"] == (summary["mean_max_gate"] >= 0.7)
    confusion = np.array(summary["confusion"])
    assert confusion.shape == (len(REGION_NAMES), 8)
    assert confusion.sum() == summary["points"] == len(SCANS) * POINTS
    assert 0.0 < summary["own_expert_share"] <= 1.0
    assert 1 <= summary["distinct_experts"] <= 8
    for name, row in summary["region_experts"].items():
        assert row["points"] == confusion[REGION_NAMES.index(name)].sum()
        if row["points"]:
            assert row["share"] == pytest.approx(confusion[REGION_NAMES.index(name)].max()
                                                 / row["points"])
    for scan, (subject, expression) in zip(summary["scans"], SCANS, strict=True):
        assert (scan["subject"], scan["expression"]) == (subject, expression)
        assert np.array(scan["confusion"]).sum() == POINTS
        assert 1 / 8 <= scan["mean_max_gate"] <= 1.0
    table = pd.read_csv(out.with_suffix(".csv"), dtype={"subject": str})
    assert list(table["subject"]) == ["1", "2"] and list(table["points"]) == [POINTS] * 2
    np.testing.assert_allclose(table["mean_max_gate"],
                               [s["mean_max_gate"] for s in summary["scans"]], rtol=1e-5)
    assert (table[[f"{r}_points" for r in REGION_NAMES]].sum(axis=1) == POINTS).all()
    # the scans' codes in the wrong order are refused, naming the mismatch
    with pytest.raises(InputError, match="same order"):
        gate_report.gate_report(trained["model"], "ours", trained["fits"][::-1],
                                gate_report.load_scans(trained["samples"], [], []), 10, 0,
                                torch.device("cpu"))


def test_a_model_without_experts_is_refused(trained: dict) -> None:
    root = trained["root"]
    cfg = PaperModelConfig(**SMALL, experts=1)
    model = PaperFace(cfg)
    codes = LatentCodes(model.latent_spec(), 1, 1)
    path = root / "single.pt"
    TrainedModel(method="imface", config={"model": {"name": "paper", **SMALL, "experts": 1},
                                          "loss": {}, "train": {}},
                 samples_digest="", subjects=["1"], scans=[SCANS[0]], radius_mm=100.0,
                 network=model.state_dict(), codes=codes.state_dict()).save(path)
    fit = root / "single_fit.pt"
    save_codes(path, trained["samples"][0], {"identity": torch.zeros(6),
                                            "expression": torch.zeros(5)}, fit)
    result = subprocess.run(
        [sys.executable, "-m", "facerecon.gate_report", "--model", str(path), "--fits",
         str(fit), "--samples", str(trained["samples"][0]), "--out-json", str(root / "s.json"),
         "--out-csv", str(root / "s.csv"), "--out-png", str(root / "s.png"), "--device", "cpu"],
        cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 2, result.stderr
    assert "method 'imface'" in result.stderr and "no local experts" in result.stderr
    assert not (root / "s.json").exists()
