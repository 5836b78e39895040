"""A trial is what it ran: editing a swept list (insert, remove, reorder) of a study
resumed with `scalingstudy run` trains only the new values, keeps the results of the
others under their own values, and fits only the values listed now."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import yaml

from tests.conftest import run_cli

TRAINER = """
import json, os, sys
from pathlib import Path
from scalingstudy_trainer.report import report_result

rate = float(os.environ["SCALINGSTUDY_LEARNING_RATE"])
data = int(os.environ["SCALINGSTUDY_DATA_SIZE"])
model = int(os.environ["SCALINGSTUDY_MODEL_SIZE"])
with Path(os.environ["CALLS_LOG"]).open("a") as log:
    log.write(json.dumps([os.environ["SCALINGSTUDY_TRIAL"], rate]) + "\\n")
loss = (2.0 * data ** -0.4 + 0.01) * (1 + model / 100) * (1 + 100 * rate)
report_result({"validation_loss": loss, "parameters": model * 100, "train_loss": loss,
               "steps": data, "samples_seen": data}, dict(os.environ))
"""


def expected_loss(data: int, model: int, rate: float) -> float:
    """What the trainer above reports: a loss that names the rate it ran at."""
    return (2.0 * math.pow(data, -0.4) + 0.01) * (1 + model / 100) * (1 + 100 * rate)


def _study(tmp_path: Path, rates: list[float]) -> Path:
    trainer = tmp_path / "rate_trainer.py"
    trainer.write_text(TRAINER)
    doc = {
        "apiVersion": "scalingstudy.io/v1alpha1",
        "kind": "ScalingStudy",
        "metadata": {"name": "sweep"},
        "spec": {
            "task": {"name": "known-curve"},
            "trainer": {"command": [sys.executable, str(trainer)],
                        "env": [{"name": "CALLS_LOG", "value": str(tmp_path / "calls.log")}]},
            "dataSizes": {"values": [100, 200, 400]},
            "modelSizes": {"values": [2, 4]},
            "learningRates": {"values": rates},
            "fit": {"bootstrap": 0},
        },
    }  # fmt: skip
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _run(tmp_path: Path, rates: list[float]) -> tuple[list[float], list[dict[str, str]]]:
    """Run (resume) the study with ``rates``: the rates trained now, and results.csv."""
    log = tmp_path / "calls.log"
    log.unlink(missing_ok=True)
    out = tmp_path / "out"
    result = run_cli("run", str(_study(tmp_path, rates)), "--out", str(out), "--workers", "2")
    assert result.returncode == 0, result.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [rate for _, rate in calls], list(csv.DictReader((out / "results.csv").open()))


def _check(rows: list[dict[str, str]], rates: list[float]) -> None:
    """Every listed value once per cell, each result the one its own rate produced."""
    assert sorted(float(r["learning_rate"]) for r in rows) == sorted(rates * 6)
    for r in rows:
        rate = float(r["learning_rate"])
        loss = expected_loss(int(r["data_size"]), int(r["model_size"]), rate)
        assert abs(float(r["loss"]) - loss) <= 1e-9 * loss, r


def test_editing_the_learning_rates_trains_only_new_values_and_fits_only_listed_ones(
    tmp_path: Path,
) -> None:
    trained, rows = _run(tmp_path, [0.001, 0.003])
    assert sorted(trained) == sorted([0.001, 0.003] * 6)
    _check(rows, [0.001, 0.003])
    # Insert at the front: only 0.0003 is trained (it used to take 0.001's results).
    trained, rows = _run(tmp_path, [0.0003, 0.001, 0.003])
    assert trained == [0.0003] * 6
    _check(rows, [0.0003, 0.001, 0.003])
    # Reorder: nothing to train, the same results.
    trained, rows = _run(tmp_path, [0.003, 0.0003, 0.001])
    assert trained == []
    _check(rows, [0.0003, 0.001, 0.003])
    # Remove: nothing trained, 0.003 out of the results and the fit, its record kept.
    trained, rows = _run(tmp_path, [0.0003, 0.001])
    assert trained == []
    _check(rows, [0.0003, 0.001])
    kept = [json.loads(p.read_text()) for p in (tmp_path / "out" / "trials").glob("*.json")]
    assert sorted(r["learningRate"] for r in kept if r.get("learningRate") == 0.003) == [0.003] * 6
    # Back again: its kept results count once more, nothing trained twice.
    trained, rows = _run(tmp_path, [0.0003, 0.001, 0.003])
    assert trained == []
    _check(rows, [0.0003, 0.001, 0.003])


def test_records_under_an_older_naming_are_the_same_trials_after_an_upgrade(
    tmp_path: Path,
) -> None:
    """A sweep recorded when rates were named by position (`-l0`, `-l1`): resumed by
    this version, nothing is trained again and every result keeps its own rate."""
    trained, _ = _run(tmp_path, [0.001, 0.003])
    assert len(trained) == 12
    for path in (tmp_path / "out" / "trials").glob("*.json"):
        record = json.loads(path.read_text())
        position = [0.001, 0.003].index(record["learningRate"])
        old = record["trial"].replace(
            f"-l{str(record['learningRate']).replace('.', 'p')}-", f"-l{position}-"
        )
        assert old != record["trial"]
        record["trial"] = old
        path.unlink()
        (path.parent / f"{old}.json").write_text(json.dumps(record))
    trained, rows = _run(tmp_path, [0.001, 0.003])
    assert trained == []
    _check(rows, [0.001, 0.003])
