"""`scalingstudy get`'s curves.csv tells a trial's pods by its Job's uid, not its name.

A trial's Job can be deleted and made again under the same name (a lapsed pruned trial
trained again, a spec edit, a user); the old Job's pods can linger (terminating,
orphaned). Their logs are another run's and must not be merged into the trial's curve.
The API is faked at the HTTP layer (`ApiClient.param_serialize`/`call_api`), so the real
`Kube.list_jobs`, `Kube.list_pods` and `PodLogs` run, and every request is seen.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client

from scalingstudy.cluster import command, kube
from scalingstudy.cluster.get import _curves, cmd_get
from scalingstudy.cluster.kube import Kube
from scalingstudy.cluster.manifests import (
    LABEL_DATA_SIZE,
    LABEL_MODEL_SIZE,
    LABEL_SEED,
    LABEL_STUDY,
    LABEL_TRIAL,
)
from scalingstudy.cluster.pod_logs import JobIdentity, same_run, trial_attempts
from scalingstudy.planning.plan import plan_trials
from scalingstudy.records import TrialRecord
from scalingstudy.spec import parse_spec
from scalingstudy_sdk.curve import Curve, CurvePoint

STUDY, STUDY_UID, NS = "s", "study-uid", "ns"
#: The study object's metadata: made before every pod of these tests.
META = {"uid": STUDY_UID, "creationTimestamp": "2025-12-31T00:00:00Z"}
SPEC = {"task": {"name": "teacher-student"},
        "dataSizes": {"values": [100, 200, 400]}, "modelSizes": {"values": [4]}}  # fmt: skip


def _log(losses: list[float], first_step: int = 10) -> str:
    """A trial's log: one SDK evaluation line a step, and other output around them."""
    lines = ["starting"]
    for i, loss in enumerate(losses):
        step = first_step * (i + 1)
        lines.append(json.dumps({"ts": 100.0 + i, "event": "eval", "step": step,
                                 "validation_loss": loss}))  # fmt: skip
    return "\n".join(lines) + "\n"


def _pod(name: str, trial: str, job_uid: str, created: str) -> dict[str, Any]:
    """Pod 0 of a trial's Job (a Job of one pod has no completion index)."""
    labels = {LABEL_STUDY: STUDY, LABEL_TRIAL: trial, LABEL_DATA_SIZE: "100",
              LABEL_MODEL_SIZE: "4", LABEL_SEED: "0"}  # fmt: skip
    owner = {"kind": "Job", "name": trial, "uid": job_uid, "controller": True}
    return {"metadata": {"name": name, "creationTimestamp": created, "labels": labels,
                         "ownerReferences": [owner]}}  # fmt: skip


def _job(trial: str, uid: str, study_uid: str = STUDY_UID) -> dict[str, Any]:
    owner = {"kind": "ScalingStudy", "name": STUDY, "uid": study_uid, "controller": True}
    labels = {LABEL_STUDY: STUDY, LABEL_TRIAL: trial}
    return {"metadata": {"name": trial, "uid": uid, "labels": labels,
                         "ownerReferences": [owner]}}  # fmt: skip


class _Response:
    def __init__(self, status: int, body: str) -> None:
        self.status, self.body = status, body.encode()

    def read(self) -> bytes:
        return self.body


class FakeApi:
    """The API server as `get` reads it: Jobs (or a refusal), pods, and pods' logs."""

    def __init__(
        self, jobs: list[dict[str, Any]], pods: list[dict[str, Any]], logs: dict[str, str],
        jobs_status: int = 200,
    ) -> None:  # fmt: skip
        self.jobs, self.pods, self.logs, self.jobs_status = jobs, pods, logs, jobs_status
        self.user_agent = ""
        self.logs_read: list[str] = []

    def param_serialize(self, method: str, path: str, **_: Any) -> tuple[str, str]:
        return method, path

    def call_api(self, method: str, path: str, **_: Any) -> _Response:
        assert method == "GET", "get only reads"
        if path.endswith("/jobs"):
            if self.jobs_status != 200:
                message = 'jobs.batch is forbidden: User "u" cannot list resource "jobs"'
                return _Response(self.jobs_status, json.dumps({"message": message}))
            return _Response(200, json.dumps({"metadata": {}, "items": self.jobs}))
        if path.endswith("/pods"):
            return _Response(200, json.dumps({"items": self.pods}))
        pod = path.split("/pods/")[1].removesuffix("/log")
        self.logs_read.append(pod)
        return _Response(200, self.logs[pod]) if pod in self.logs else _Response(404, "{}")


def _kube(api: FakeApi) -> Kube:
    return Kube(cast(client.ApiClient, api), user_agent="test")


def _losses(curve: Curve) -> list[float | None]:
    return [p.validation_loss for p in curve.points]


def _pruned(trial: str, pairs: list[list[float]]) -> TrialRecord:
    return TrialRecord(trial=trial, data_size=100, model_size=4, seed=0, status="Pruned",
                       reason="Pruned", curve=pairs)  # fmt: skip


def _succeeded(trial: str) -> TrialRecord:
    return TrialRecord(trial=trial, data_size=100, model_size=4, seed=0, status="Succeeded",
                       loss=1.0)  # fmt: skip


OLD = _pod("t1-old", "t1", "old-uid", "2026-01-01T00:00:00Z")
NEW = _pod("t1-new", "t1", "new-uid", "2026-01-01T01:00:00Z")
LOGS = {"t1-old": _log([9.0, 8.0, 7.0, 6.0]), "t1-new": _log([5.0, 4.0])}


# -- the Job made again under the same name -------------------------------------------------
def test_only_the_current_jobs_pods_are_a_trials_attempts() -> None:
    identity = JobIdentity({"t1": "new-uid"}, frozenset({"new-uid"}))
    attempts, gone = trial_attempts("t1", [OLD, NEW], identity)
    assert [p["metadata"]["name"] for p in attempts] == ["t1-new"] and not gone
    # By name (Jobs not listed) both runs are the trial's: the merge this guards against.
    by_name, _ = trial_attempts("t1", [OLD, NEW], None)
    assert [p["metadata"]["name"] for p in by_name] == ["t1-old", "t1-new"]


@pytest.mark.parametrize("old_created", ["2026-01-01T00:00:00Z", "2026-01-01T02:00:00Z"])
def test_a_job_made_again_has_only_its_own_pods_logs_in_its_curve(old_created: str) -> None:
    """Whether the old Job's pod is older (orphaned) or listed after the new one."""
    old = _pod("t1-old", "t1", "old-uid", old_created)
    api = FakeApi([_job("t1", "new-uid")], [old, NEW], LOGS)
    read = _curves(_kube(api), NS, STUDY, META, [_succeeded("t1")])
    assert _losses(read.curves["t1"]) == [5.0, 4.0]
    assert api.logs_read == ["t1-new"]  # the old run's log is not even read
    assert read.problem is None and read.by_name is None


def test_a_pod_a_deleted_job_left_is_no_running_trial() -> None:
    """A trial not yet recorded is running only when a Job that exists now holds its pod."""
    live = _pod("t2-a", "t2", "t2-uid", "2026-01-01T00:00:00Z")
    left = _pod("t3-a", "t3", "t3-gone-uid", "2026-01-01T00:00:00Z")
    logs = {"t2-a": _log([3.0]), "t3-a": _log([2.0])}
    api = FakeApi([_job("t2", "t2-uid")], [live, left], logs)
    read = _curves(_kube(api), NS, STUDY, META, [])
    assert [t.trial for t in read.running] == ["t2"]
    assert set(read.curves) == {"t2"} and api.logs_read == ["t2-a"]


def test_a_job_of_an_earlier_study_of_the_same_name_is_not_the_trials() -> None:
    """Its Job is listed (garbage collection has not removed it yet) but not owned by this
    study: neither current nor gone, so its pods are not read."""
    api = FakeApi([_job("t1", "old-uid", study_uid="earlier-study")], [OLD], LOGS)
    read = _curves(_kube(api), NS, STUDY, META, [_succeeded("t1")])
    assert read.curves == {} and api.logs_read == []


# -- Jobs that cannot be listed ------------------------------------------------------------
def test_jobs_forbidden_falls_back_to_the_jobs_name_and_says_so() -> None:
    api = FakeApi([], [OLD, NEW], LOGS, jobs_status=403)
    read = _curves(_kube(api), NS, STUDY, META, [_succeeded("t1")])
    assert read.by_name is not None and "forbidden" in read.by_name
    assert read.problem is None
    assert sorted(api.logs_read) == ["t1-new", "t1-old"]  # as before: by name
    assert "t1" in read.curves


def test_another_refusal_to_list_jobs_is_as_pod_logs_refused() -> None:
    kept = [[10.0, 7.5], [20.0, 7.0]]
    api = FakeApi([], [OLD, NEW], LOGS, jobs_status=500)
    read = _curves(_kube(api), NS, STUDY, META, [_pruned("t1", kept)])
    assert read.problem is not None and read.by_name is None
    assert _losses(read.curves["t1"]) == [7.5, 7.0] and api.logs_read == []


def _study_obj() -> tuple[dict[str, Any], str]:
    trial = plan_trials(STUDY, parse_spec(SPEC))[0].name
    record = _succeeded(trial).model_dump(by_alias=True, exclude_none=True, mode="json")
    obj = {"apiVersion": "scalingstudy.io/v1alpha1", "kind": "ScalingStudy",
           "metadata": {"name": STUDY, "namespace": NS, "uid": STUDY_UID},
           "spec": SPEC, "status": {"phase": "Running", "results": [record]}}  # fmt: skip
    return obj, trial


def _run_get(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    jobs_status: int,
) -> tuple[str, list[str]]:  # fmt: skip
    """`scalingstudy get` against the fake API; what it printed and curves.csv's trials."""
    obj, trial = _study_obj()
    old = _pod("p-old", trial, "old-uid", "2026-01-01T00:00:00Z")
    new = _pod("p-new", trial, "new-uid", "2026-01-01T01:00:00Z")
    api = FakeApi([_job(trial, "new-uid")], [old, new],
                  {"p-old": LOGS["t1-old"], "p-new": LOGS["t1-new"]}, jobs_status)  # fmt: skip
    monkeypatch.setattr(command, "cluster_config_problem", lambda _: None)
    monkeypatch.setattr(kube, "load_config", lambda _: api)
    monkeypatch.setattr(Kube, "get_study", lambda *_: obj)
    out = tmp_path / "got"
    args = argparse.Namespace(study=STUDY, namespace=NS, out=str(out), kubeconfig=None)
    assert cmd_get(args) == 0
    rows = (out / "curves.csv").read_text().splitlines()[1:]
    return capsys.readouterr().out, rows


def test_get_says_when_it_read_pods_by_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    printed, rows = _run_get(monkeypatch, tmp_path, capsys, jobs_status=403)
    assert "Jobs could not be listed (" in printed and "forbidden" in printed
    assert "by its Job's name" in printed and "could not be read" not in printed
    assert len(rows) == 4  # the merged curve: old steps 10..40, the new run's 10, 20 over them

    printed, rows = _run_get(monkeypatch, tmp_path, capsys, jobs_status=200)
    assert "Jobs could not be listed" not in printed
    assert len(rows) == 2  # the current Job's run alone


# -- the Job gone ---------------------------------------------------------------------------
def test_a_gone_jobs_pods_are_read_when_they_are_one_runs() -> None:
    api = FakeApi([], [OLD], LOGS)
    read = _curves(_kube(api), NS, STUDY, META, [_succeeded("t1")])
    assert _losses(read.curves["t1"]) == [9.0, 8.0, 7.0, 6.0]


def test_pods_of_two_gone_jobs_are_not_guessed_between() -> None:
    """Without a record's curve: no curve; with one: the record's (the certain run)."""
    api = FakeApi([], [OLD, NEW], LOGS)
    read = _curves(_kube(api), NS, STUDY, META, [_succeeded("t1")])
    assert read.curves == {} and api.logs_read == []
    kept = [[10.0, 5.0], [20.0, 4.0]]
    read = _curves(_kube(FakeApi([], [OLD, NEW], LOGS)), NS, STUDY, META,
                   [_pruned("t1", kept)])  # fmt: skip
    assert _losses(read.curves["t1"]) == [5.0, 4.0]


def test_a_gone_jobs_log_is_read_only_when_it_agrees_with_the_records_curve() -> None:
    """A pruned trial's Job deleted, its pod terminating: the log (every evaluation) when
    it is the recorded run, the record's compact curve when it is another run's."""
    same = [[10.0, 9.0], [30.0, 7.0]]  # thinned from the old run's log
    read = _curves(_kube(FakeApi([], [OLD], LOGS)), NS, STUDY, META, [_pruned("t1", same)])
    assert _losses(read.curves["t1"]) == [9.0, 8.0, 7.0, 6.0]
    other = [[10.0, 5.0], [20.0, 4.0]]  # the recorded run was another one
    read = _curves(_kube(FakeApi([], [OLD], LOGS)), NS, STUDY, META, [_pruned("t1", other)])
    assert _losses(read.curves["t1"]) == [5.0, 4.0]


def test_same_run_needs_a_shared_step_and_agreement_at_each() -> None:
    def curve(*pairs: tuple[int, float]) -> Curve:
        return Curve(tuple(CurvePoint(step=s, validation_loss=v) for s, v in pairs))

    log = curve((10, 9.0), (20, 8.0), (30, 7.0))
    assert same_run(log, curve((10, 9.0), (30, 7.0)))
    assert not same_run(log, curve((10, 9.0), (30, 6.5)))  # one step disagrees
    assert not same_run(log, curve((40, 6.0)))  # nothing shared: cannot tell
    assert not same_run(Curve(), curve((10, 9.0)))


def test_a_gone_jobs_pods_made_before_the_study_are_an_earlier_studys() -> None:
    """A study deleted and made again under the same name can leave pods (orphaned, or
    still terminating): a gone Job's pod made before this study is never its trial's."""
    later = {**META, "creationTimestamp": "2026-01-01T00:30:00Z"}  # after OLD was made
    read = _curves(_kube(FakeApi([], [OLD], LOGS)), NS, STUDY, later, [_succeeded("t1")])
    assert read.curves == {}
    read = _curves(_kube(FakeApi([], [OLD], LOGS)), NS, STUDY, META, [_succeeded("t1")])
    assert _losses(read.curves["t1"]) == [9.0, 8.0, 7.0, 6.0]
