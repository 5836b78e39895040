"""Every panel of the chart's dashboard shows data from a real study (issue 40 item 3).

On the test control plane, the operator runs a study whose trials are real pods running a
bring-your-own trainer on the SDK (tests/cluster/dashboard_trainer.py: live progress pushed
while it runs, its result at the end). A second real Prometheus scrapes the operator's
/metrics and the Pushgateway as a user's would (the harness's scrapes only the
Pushgateway). When the study has succeeded, every panel's queries run as Grafana runs them
(tests/dashboard_render.render.fetch: the dashboard's variables set to the study's
namespace and name, range queries for time series, instant ones for stats and the
xychart), and each must return a series, with the values the study's status holds.

One study, read once, and one test that runs every check on it and reports each that
failed: a study per test would cost the suite a study each, and xdist may hand a module's
tests to both workers, which would build a module-scoped fixture twice."""

from __future__ import annotations

import json
import math
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster.conftest import ROOT, Cluster, Operator, study_doc, wait_until
from tests.dashboard_render.capture import start_scraper
from tests.dashboard_render.render import PanelData, Series, Window, fetch, legend
from tests.harness import cluster as harness

DASHBOARD = json.loads((ROOT / "charts/scalingstudy/dashboards/scalingstudy.json").read_text())
STUDY = "dashboard"
SCRAPE_SECONDS = 1.0
PROMETHEUS = "dashboard-data-prometheus"
BUDGET_HOURS = 10.0

#: (panel title, refId) -> why that query has no series in this study. Every other query
#: of every panel must return at least one.
NO_DATA: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class StudyData:
    """What the dashboard showed for the study, and the status it showed it for."""

    status: dict[str, Any]
    panels: list[PanelData]
    window: Window

    def panel(self, title_start: str) -> PanelData:
        found = [p for p in self.panels if p.panel["title"].startswith(title_start)]
        assert found, f"the dashboard has no panel titled {title_start!r}..."
        return found[0]

    def series(self, title_start: str, ref: str = "A") -> list[Series]:
        (target,) = [t for t in self.panel(title_start).targets if t.ref_id == ref]
        return target.series


def dashboard_study() -> dict[str, Any]:
    doc = study_doc(
        STUDY,
        dataSizes={"values": [100, 200, 400, 800, 1600]},
        modelSizes={"values": [2, 4, 8, 16, 32]},
        design={"budget": {"deviceHours": BUDGET_HOURS}},
        parallelism=8,  # the trainers mostly wait: 8 at once cost the suite little CPU
    )
    trainer = doc["spec"]["trainer"]
    trainer["command"] = [sys.executable, str(ROOT / "tests" / "cluster" / "dashboard_trainer.py")]
    trainer["env"][0]["value"] += f":{ROOT}"  # the trainer imports tests.contract_trainer
    return doc


def scraped_after(prometheus: str, moment: float, job: str = "scalingstudy") -> bool:
    """Prometheus has scraped ``job`` (the operator's, or the Pushgateway's) since
    ``moment``."""
    answer = httpx.get(
        f"{prometheus}/api/v1/query", params={"query": f'timestamp(up{{job="{job}"}})'}
    ).json()["data"]["result"]
    return bool(answer) and float(answer[0]["value"][1]) > moment


def progress_groups(cluster: Cluster, namespace: str) -> list[dict[str, str]]:
    groups = httpx.get(f"{cluster.env['PUSHGATEWAY_URL']}/api/v1/metrics").json()["data"]
    return [g["labels"] for g in groups if g["labels"].get("job") == "scalingstudy-progress"
            and g["labels"].get("namespace") == namespace]  # fmt: skip


def run_study(cluster: Cluster, namespace: str, operator: Operator, prometheus: str) -> StudyData:
    start = time.time() - 10
    assert cluster.apply(dashboard_study(), namespace).returncode == 0

    def done() -> dict[str, Any] | None:
        status = cluster.get("scalingstudy", STUDY, namespace).get("status") or {}
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    began = time.monotonic()
    try:
        status = wait_until("the dashboard study to finish", done, timeout=300, every=1)
    except AssertionError as exc:
        tail = operator.log.read_text(errors="replace").splitlines()[-40:]
        raise AssertionError(f"{exc}\noperator log:\n" + "\n".join(tail)) from None
    assert status["phase"] == "Succeeded", status.get("conditions")
    print(f"the dashboard study ran {time.monotonic() - began:.0f} s")
    read = time.time()
    wait_until("a scrape of the operator after the status was read",
               lambda: scraped_after(prometheus, read + SCRAPE_SECONDS), timeout=30)  # fmt: skip
    # The operator deletes a recorded trial's progress group after writing its status: the
    # live panel ends only once Prometheus has scraped the Pushgateway without it.
    wait_until("the progress groups deleted", lambda: not progress_groups(cluster, namespace),
               timeout=90)  # fmt: skip
    gone = time.time()
    wait_until("a scrape of the Pushgateway without them",
               lambda: scraped_after(prometheus, gone + SCRAPE_SECONDS, "pushgateway"),
               timeout=30)  # fmt: skip
    end = time.time()
    window = Window(start, end, max(SCRAPE_SECONDS, (end - start) / 240), SCRAPE_SECONDS)
    return StudyData(status, fetch(prometheus, DASHBOARD, window, namespace, STUDY), window)


@pytest.fixture
def study(cluster: Cluster, tmp_path: Path) -> Iterator[StudyData]:
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    wait_until(
        "the namespace's default service account",
        lambda: (
            cluster.kubectl("get", "sa", "default", "-n", namespace, check=False).returncode == 0
        ),
        timeout=60,
    )
    operator = Operator(cluster, [namespace], tmp_path / "operator.log")
    prometheus = start_scraper(
        cluster.dir, cluster.env, operator.metrics_port, SCRAPE_SECONDS, PROMETHEUS
    )
    try:
        operator.start()
        yield run_study(cluster, namespace, operator, prometheus)
    finally:
        operator.stop()
        harness.stop(cluster.dir, PROMETHEUS)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def check_every_panel_shows_data(study: StudyData) -> None:
    """Each query of each panel returns at least one series (the exceptions, named in
    NO_DATA, say why), and no series is all NaN (an empty quantile, a 0/0)."""
    counts: dict[str, int] = {}
    for data in study.panels:
        title = data.panel["title"]
        assert data.targets, f"panel {title!r} has no queries"
        for target in data.targets:
            where = (title, target.ref_id)
            if where in NO_DATA:
                assert not target.series, f"{where} has data now: {NO_DATA[where]} is stale"
                continue
            assert target.series, f"panel {title!r} query {target.ref_id} returned no series"
            for s in target.series:
                assert not all(math.isnan(v) for v in s.values), (where, s.labels)
            counts[f"{title} [{target.ref_id}]"] = len(target.series)
    assert len({d.panel["title"] for d in study.panels}) == len(DASHBOARD["panels"])
    print(json.dumps(counts, indent=1))  # the note: every panel and its series


def last(series: Series) -> float:
    return series.values[-1]


def check_the_stats_equal_the_status(study: StudyData) -> None:
    status, fit = study.status, study.status["fit"]
    (phase,) = study.series("Phase")
    assert phase.labels["phase"] == status["phase"] == "Succeeded"
    (beta_g,) = study.series("beta_g (learning-curve exponent)")
    assert last(beta_g) == fit["learningCurve"]["beta"]
    (beta_p,) = study.series("beta_p (model-size exponent)")
    assert last(beta_p) == fit["modelSize"]["beta"]
    design = status["design"]
    (hours,) = study.series("Device-hours used")
    assert hours.labels["device"] == design["device"] == "cpu"
    assert last(hours) == pytest.approx(design["deviceSeconds"] / 3600, rel=1e-12)
    (stopped,) = study.series("Stop reason")
    assert stopped.labels["reason"] == design["stopReason"] == "AllDataSizes"


def check_trials_by_state_match_the_status_counts(study: StudyData) -> None:
    shown = {s.labels["state"]: last(s) for s in study.series("Trials by state")}
    counts = {k: v for k, v in study.status["trials"].items() if k != "total"}
    assert shown == {state: float(n) for state, n in counts.items()}
    assert shown["succeeded"] == study.status["trials"]["total"] == 25


def check_spend_panels_equal_the_status_design(study: StudyData) -> None:
    design = study.status["design"]
    spent = {legend(t.legend, s.labels): last(s)
             for t in study.panel("Device-seconds spent").targets for s in t.series}  # fmt: skip
    assert spent == {
        "spent (cpu)": design["deviceSeconds"],
        "full grid, estimate (cpu)": design["gridDeviceSeconds"],
        "budget (cpu)": design["budgetDeviceSeconds"],
    }
    assert design["budgetDeviceSeconds"] == BUDGET_HOURS * 3600


def check_the_exponents_over_time_end_at_the_status_fit(study: StudyData) -> None:
    for name, part in (("beta_g", "learningCurve"), ("beta_p", "modelSize")):
        fit = study.status["fit"][part]
        shown = {legend(t.legend, s.labels): last(s)
                 for t in study.panel(f"{name} over time").targets for s in t.series}  # fmt: skip
        assert shown[name] == fit["beta"]
        assert [shown.get("lower"), shown.get("upper")] == fit["betaInterval"]


def check_the_learning_curve_shows_recorded_results_only(study: StudyData) -> None:
    """Each point of the xychart is a trial's result as the status recorded it (a final
    value, never a progress push); the trials whose result Prometheus never scraped
    (the operator deletes the group once it recorded the result) are only missing."""
    results = {r["trial"]: r for r in study.status["results"]}
    points = study.series("Validation loss vs data size")
    assert points
    for s in points:
        result = results[s.labels["trial"]]
        assert s.labels["job"] == "scalingstudy"
        assert (int(s.labels["data_size"]), int(s.labels["model_size"])) == (
            result["dataSize"], result["modelSize"])  # fmt: skip
        assert last(s) == pytest.approx(result["loss"], rel=1e-3)


def check_the_live_panel_shows_running_trials_progress(study: StudyData) -> None:
    """Running trials' curves: one line per trial of this study, falling as the trainer's
    progress fell, each trial's last progress no lower than its recorded result, and each
    line ended before the time range did: a recorded trial runs no more (the operator
    deletes its progress group), so its last evaluation must not stay on the panel."""
    results = {r["trial"]: r["loss"] for r in study.status["results"]}
    lines = study.series("Validation loss of running trials")
    assert lines
    (succeeded,) = [s for s in study.series("Trials by state") if s.labels["state"] == "succeeded"]
    last_step = succeeded.times[-1]  # the range query's last evaluation
    for s in lines:
        trial = s.labels["trial"]
        assert trial in results
        seen = [v for v in s.values if not math.isnan(v)]
        assert seen == sorted(seen, reverse=True), (trial, seen)
        assert seen[-1] >= results[trial] * (1 - 1e-3)
        assert s.times[-1] < last_step, f"{trial}'s progress is still shown after its result"


def check_the_step_panel_shows_each_trials_evaluations(study: StudyData) -> None:
    """Each point is an evaluation the trainer made, at its step: dashboard_trainer.py's
    k-th of 4 evaluations is at step 100 k with loss final * (1 + (400 - step) / 400),
    where final is the result the status recorded; at least one trial's curve shows its
    points past the first (pushed with the trainer's last progress, at its end)."""
    results = {r["trial"]: r["loss"] for r in study.status["results"]}
    points = study.series("Validation loss vs step")
    assert points
    steps: dict[str, set[int]] = {}
    for s in points:
        trial, step = s.labels["trial"], int(s.labels["step"])
        assert step in (100, 200, 300, 400), s.labels
        assert last(s) == pytest.approx(results[trial] * (1 + (400 - step) / 400), rel=1e-6)
        steps.setdefault(trial, set()).add(step)
    assert max(len(v) for v in steps.values()) == 4, steps


CHECKS = (
    check_every_panel_shows_data,
    check_the_stats_equal_the_status,
    check_trials_by_state_match_the_status_counts,
    check_spend_panels_equal_the_status_design,
    check_the_exponents_over_time_end_at_the_status_fit,
    check_the_learning_curve_shows_recorded_results_only,
    check_the_live_panel_shows_running_trials_progress,
    check_the_step_panel_shows_each_trials_evaluations,
)


@pytest.mark.slow(50)
def test_every_panel_shows_the_studys_data(study: StudyData) -> None:
    failed = []
    for check in CHECKS:
        try:
            check(study)
        except (AssertionError, LookupError, ValueError) as exc:
            failed.append(f"{check.__name__}: {type(exc).__name__}: {exc}")
    assert not failed, "\n\n".join(failed)
