"""One answer wherever it is read: a run's fit.json, `fit` on the run's results.csv (with
and without the study file) and `get` (which fits `planned_records`, as the operator
does) give the same numbers for the same results and settings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from scalingstudy.results import planned_records
from scalingstudy.spec import parse_spec
from scalingstudy.status import TrialRecord
from tests.conftest import run_cli

TRAINER = """
import hashlib, os
from scalingstudy_trainer.report import report_result

rate = float(os.environ["SCALINGSTUDY_LEARNING_RATE"])
data = int(os.environ["SCALINGSTUDY_DATA_SIZE"])
model = int(os.environ["SCALINGSTUDY_MODEL_SIZE"])
seed = os.environ["SCALINGSTUDY_TRIAL"]
noise = int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16) / 2**32 - 0.5
loss = (0.05 + 3 * data ** -0.4 + 2 * model ** -0.5) * (1 + abs(rate - 0.003) * 30)
loss *= 1 + 0.04 * noise
report_result({"validation_loss": loss, "parameters": model * 100, "train_loss": loss,
               "steps": data, "samples_seen": data}, dict(os.environ))
"""


def _study(tmp_path: Path) -> dict:
    trainer = tmp_path / "trainer.py"
    trainer.write_text(TRAINER)
    return {
        "apiVersion": "scalingstudy.io/v1alpha1",
        "kind": "ScalingStudy",
        "metadata": {"name": "answer"},
        "spec": {
            "task": {"name": "known-curve"},
            "trainer": {"command": [sys.executable, str(trainer)]},
            "dataSizes": {"values": [100, 200, 400, 800, 1600, 3200]},
            "modelSizes": {"values": [4, 16, 64]},
            "learningRates": {"values": [0.001, 0.003]},
            "fit": {"bootstrap": 40, "targetLoss": 0.3},
        },
    }


def test_fit_on_a_runs_results_gives_the_runs_fit_json(tmp_path: Path) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(_study(tmp_path)))
    out = tmp_path / "out"
    ran = run_cli("run", str(study), "--out", str(out), "--workers", "2")
    assert ran.returncode == 0, ran.stderr
    written = json.loads((out / "fit.json").read_text())
    results = str(out / "results.csv")

    with_study = run_cli("fit", results, "--study", str(study), "--json")
    assert with_study.returncode == 0, with_study.stderr
    assert json.loads(with_study.stdout) == written

    # Without the study file: the CSV's learning_rate column picks the best rate per cell
    # as the run did, and the defaults are a run's (prediction at 10x, the joint law).
    plain = run_cli("fit", results, "--json", "--bootstrap", "40", "--target-loss", "0.3")
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout) == written


def test_get_and_the_operator_leave_out_trials_the_spec_no_longer_plans(tmp_path: Path) -> None:
    """A user cut dataSizes.max: status.results keeps the larger sizes' rows, the fit (the
    operator's `Plan.relevant`, `get`'s `planned_records`) reads only planned trials."""
    doc = _study(tmp_path)
    spec = parse_spec(doc["spec"])
    records = [
        TrialRecord(trial=f"answer-d{d}-m{m}-l0p003-s0", data_size=d, model_size=m, seed=0,
                    learning_rate=0.003, status="Succeeded", loss=1.0 / d)
        for d in (100, 200, 400, 800, 1600, 3200, 6400) for m in (4, 16, 64)
    ]  # fmt: skip
    kept = planned_records("answer", spec, records)
    assert {r.data_size for r in kept} == {100, 200, 400, 800, 1600, 3200}
    assert len(kept) == 18


def test_a_trainers_word_on_its_result_reaches_the_fits_warnings() -> None:
    """normalisation_batch_changed and diverged_at_step, from the result JSON through the
    record to the fit's first warnings (issue 41: the fit says so)."""
    from scalingstudy.contract import parse_result
    from scalingstudy.planning.plan import Trial
    from scalingstudy.results import fit_input

    spec = parse_spec({**_study(Path("/tmp"))["spec"], "learningRates": None})
    records = []
    for d in (100, 200, 400):
        raw = {"validation_loss": 1.0 / d, "parameters": 400}
        if d == 200:
            raw |= {"normalisation_batch_changed": True, "diverged_at_step": 17}
        trial = Trial(d, 4, 0, f"answer-d{d}-m4-s0")
        records.append(TrialRecord.succeeded(trial, parse_result(json.dumps(raw)), 1.0))
    _, options = fit_input(records, spec)
    assert any("answer-d200-m4-s0" in n and "micro-batch" in n for n in options.notes)
    assert any("from step 17" in n for n in options.notes)
