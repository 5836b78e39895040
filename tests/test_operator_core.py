"""The operator's pure core: Job manifests, observations, the pass decision, status."""

from __future__ import annotations

import json
from typing import Any

import pytest

from scalingstudy.cluster.collect import CollectPolicy, collect, mismatch_events
from scalingstudy.cluster.manifests import (
    JobSettings,
    StudyRef,
    config_map_manifest,
    config_map_owner,
    job_manifest,
)
from scalingstudy.cluster.observe import (
    JobState,
    failure_reason,
    job_state,
    last_outcome,
    parse_time,
    success_message,
)
from scalingstudy.cluster.prometheus import (
    group_labels,
    group_path,
    promql_string,
    samples_by_trial,
    study_groups,
    study_query,
)
from scalingstudy.cluster.reasons import Failure, Refusal, Stop
from scalingstudy.cluster.reconcile import decide, fit_due, to_collect
from scalingstudy.cluster.status_builder import conditions_for, phase_of
from scalingstudy.planning.plan import Plan, plan_trials
from scalingstudy.spec import SpecError, parse_spec
from scalingstudy.status import FitStatus, TrialCounts, TrialRecord

REF = StudyRef("demo", "ml", "uid-1")


def spec(**extra: Any) -> Any:
    return parse_spec(
        {
            "task": {"name": "teacher-student"},
            "dataSizes": {"values": [100, 200, 400]},
            "modelSizes": {"values": [4, 8]},
            **extra,
        }
    )


# -- manifests ----------------------------------------------------------------------------


def test_job_manifest_carries_contract_labels_owner_and_safety() -> None:
    s = spec(trainer={"resources": {"limits": {"nvidia.com/gpu": 1}}, "priorityClassName": "low"})
    trial = plan_trials("demo", s)[0]
    job = job_manifest(REF, s, trial, JobSettings(pushgateway_url="http://pgw:9091"))
    meta, pod = job["metadata"], job["spec"]["template"]["spec"]
    assert meta["name"] == trial.name == "demo-d100-m4-s0"
    assert meta["labels"]["scalingstudy.io/model-size"] == "4"
    assert meta["ownerReferences"][0]["uid"] == "uid-1"
    assert meta["ownerReferences"][0]["controller"] is True
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SCALINGSTUDY_RESULT_FILE"] == container["terminationMessagePath"]
    assert env["SCALINGSTUDY_PUSHGATEWAY"] == "http://pgw:9091"
    assert env["SCALINGSTUDY_DATA_SIZE"] == "100"
    assert container["command"] == ["scalingstudy-trainer"]
    assert container["resources"] == {"limits": {"nvidia.com/gpu": 1}, "requests": {}}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["priorityClassName"] == "low"
    assert {"name": "scalingstudy-tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert "suspend" not in job["spec"]
    assert "kueue.x-k8s.io/queue-name" not in meta["labels"]
    assert pod["automountServiceAccountToken"] is False  # no API token unless asked for
    named = spec(trainer={"serviceAccountName": "reader"})
    named_pod = job_manifest(REF, named, trial, JobSettings())["spec"]["template"]["spec"]
    assert named_pod["automountServiceAccountToken"] is True


def test_jobs_read_task_and_training_from_the_studys_config_map_whatever_their_size() -> None:
    small = spec(task={"name": "teacher-student"})
    big = spec(task={"name": "teacher-student", "options": {"blob": "x" * 16000}})
    trial = plan_trials("demo", small)[0]
    jobs = [job_manifest(REF, s, trial, JobSettings()) for s in (small, big)]
    sizes = [len(json.dumps(j)) for j in jobs]
    assert sizes[0] == sizes[1] < 6000  # a Job does not grow with the spec
    pod = jobs[1]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert "SCALINGSTUDY_TASK" not in env and "SCALINGSTUDY_TRAINING" not in env
    assert env["SCALINGSTUDY_TASK_FILE"] == "/etc/scalingstudy/task.json"
    assert env["SCALINGSTUDY_TRAINING_FILE"] == "/etc/scalingstudy/training.json"
    assert {"name": "scalingstudy-config", "configMap": {"name": "demo-trial-config"}} in pod[
        "volumes"
    ]
    mount = {"name": "scalingstudy-config", "mountPath": "/etc/scalingstudy", "readOnly": True}
    assert mount in container["volumeMounts"]
    cm = config_map_manifest(REF, big)
    assert cm["metadata"]["name"] == "demo-trial-config"
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert json.loads(cm["data"]["task.json"])["options"]["blob"] == "x" * 16000
    assert json.loads(cm["data"]["training.json"])["learningRate"] == big.training.learning_rate
    assert config_map_owner(cm, REF) == "ours"
    assert config_map_owner(cm, StudyRef("demo", "ml", "uid-0")) == "previous"
    assert config_map_owner({"metadata": {"name": "demo-trial-config"}}, REF) == "foreign"


@pytest.mark.parametrize("name", ["scalingstudy-config", "scalingstudy-tmp"])
def test_the_operators_volumes_are_reserved(name: str) -> None:
    with pytest.raises(SpecError, match=f"volumes\\[0\\].name '{name}' is the operator's own"):
        spec(trainer={"volumes": [{"name": name, "emptyDir": {}}]})
    with pytest.raises(SpecError, match="/etc/scalingstudy is the trainer's own settings"):
        mounts = [{"name": "d", "mountPath": "/etc/scalingstudy/"}]
        spec(trainer={"volumes": [{"name": "d", "emptyDir": {}}], "volumeMounts": mounts})


def test_kueue_jobs_start_suspended_with_queue_and_priority_labels() -> None:
    s = spec(queueName="gpus", trainer={"priorityClassName": "research"})
    job = job_manifest(REF, s, plan_trials("demo", s)[0], JobSettings())
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpus"
    # A pod PriorityClass is not a Kueue WorkloadPriorityClass: Kueue reads the pods'.
    assert "kueue.x-k8s.io/priority-class" not in job["metadata"]["labels"]
    assert job["spec"]["template"]["spec"]["priorityClassName"] == "research"
    named = spec(queueName="gpus", workloadPriorityClassName="batch-low")
    job = job_manifest(REF, named, plan_trials("demo", named)[0], JobSettings())
    assert job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "batch-low"
    # Kueue's labels stay on the Job: pods are not workloads.
    assert "kueue.x-k8s.io/queue-name" not in job["spec"]["template"]["metadata"]["labels"]


def test_custom_trainer_command_and_checkpoint_volume() -> None:
    s = spec(
        trainer={
            "image": "me/trainer:1",
            "command": ["python", "train.py"],
            "args": ["--fast"],
            "volumes": [{"name": "checkpoints", "persistentVolumeClaim": {"claimName": "ckpt"}}],
            "volumeMounts": [{"name": "checkpoints", "mountPath": "/ckpt"}],
            "terminationGracePeriodSeconds": 300,
        }
    )
    trial = plan_trials("demo", s)[0]
    pod = job_manifest(REF, s, trial, JobSettings())["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["terminationGracePeriodSeconds"] == 300
    assert container["image"] == "me/trainer:1"
    assert container["command"] == ["python", "train.py"] and container["args"] == ["--fast"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SCALINGSTUDY_CHECKPOINT_DIR"] == f"/ckpt/{trial.name}"


# -- observations -------------------------------------------------------------------------


def job_obj(phase: str, **status: Any) -> dict[str, Any]:
    conditions = {
        "complete": [{"type": "Complete", "status": "True"}],
        "failed": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                    "lastTransitionTime": "2026-01-01T00:01:00Z"}],
        "running": [],
    }[phase]  # fmt: skip
    return {
        "metadata": {
            "name": "demo-d100-m4-s0",
            "labels": {
                "scalingstudy.io/trial": "demo-d100-m4-s0",
                "scalingstudy.io/data-size": "100",
                "scalingstudy.io/model-size": "4",
                "scalingstudy.io/seed": "0",
            },
        },
        "spec": {"suspend": status.pop("suspend", False)},
        "status": {"conditions": conditions, "startTime": "2026-01-01T00:00:00Z",
                   "completionTime": "2026-01-01T00:00:30Z", **status},
    }  # fmt: skip


def test_job_states() -> None:
    done = job_state(job_obj("complete"))
    assert done.phase == "succeeded" and done.duration == 30.0
    assert done.as_trial is not None and done.as_trial.coordinates == (100, 4, 0)
    assert job_state(job_obj("failed")).phase == "failed"
    assert job_state(job_obj("running", active=1)).phase == "active"
    # Suspended by Kueue and not admitted: queued, not failed.
    assert job_state(job_obj("running", suspend=True)).phase == "queued"


#: The uid of the trial's current Job in the collection tests: its pods' controller.
JOB_UID = "job-uid-1"


def pod(
    code: int, message: str, reason: str = "Error", finished: str = "2026-01-01T00:00:10Z",
    job_uid: str = JOB_UID,
) -> dict[str, Any]:  # fmt: skip
    term = {"exitCode": code, "reason": reason, "message": message, "finishedAt": finished}
    owner = {"apiVersion": "batch/v1", "kind": "Job", "uid": job_uid, "controller": True}
    return {
        "metadata": {"ownerReferences": [owner]},
        "status": {"containerStatuses": [{"name": "trainer", "state": {"terminated": term}}]},
    }


def test_failure_reasons() -> None:
    job = job_state(job_obj("failed"))
    first, last = pod(1, "old"), pod(137, "", "OOMKilled", "2026-01-01T00:00:50Z")
    reason, message = failure_reason(job, last_outcome([first, last]))
    assert reason == "OOMKilled" and "exit code 137" in message
    reason, message = failure_reason(job, last_outcome([pod(78, "unknown task 'x'")]))
    assert reason == "ConfigError" and "unknown task 'x'" in message
    reason, _ = failure_reason(job, last_outcome([pod(3, "Traceback ...")]))
    assert reason == "ExitCode3"
    reason, message = failure_reason(job, None)
    assert reason == "BackoffLimitExceeded" and "backoff limit" in message
    assert (
        success_message([pod(1, "x"), pod(0, '{"validation_loss": 1}')]) == '{"validation_loss": 1}'
    )


# -- the pass -------------------------------------------------------------------------------


def state(trial: str, phase: str) -> JobState:
    return JobState(trial=trial, name=trial, phase=phase)  # type: ignore[arg-type]


def ok(trial: str, data: int = 100, loss: float = 1.0) -> TrialRecord:
    return TrialRecord(
        trial=trial, data_size=data, model_size=4, seed=0, status="Succeeded", loss=loss
    )


def fitted(results: int, final: bool = False) -> FitStatus:
    return FitStatus(based_on_results=results, final=final)


def pass_of(
    planned: Plan,
    jobs: list[JobState],
    recorded: dict[str, TrialRecord],
    collected: list[TrialRecord],
    parallelism: int = 2,
    max_failed: int = 1,
    fit: FitStatus | None = None,
) -> Any:
    return decide(
        planned, jobs, recorded, collected, parallelism=parallelism, max_failed=max_failed, fit=fit
    )


def test_pass_creates_only_missing_jobs_up_to_parallelism() -> None:
    s = spec(parallelism=3)
    planned = Plan.of("demo", s)
    trials = planned.trials
    jobs = [state(trials[0].name, "active"), state(trials[1].name, "succeeded")]
    p = pass_of(planned, jobs, {}, [], parallelism=3, max_failed=3)
    # One slot taken by the active Job; the finished one is awaiting collection, not re-created.
    assert [t.name for t in p.create] == [trials[2].name, trials[3].name]
    assert to_collect(jobs, {}) == [jobs[1]]
    # Counts are of Jobs that exist: the two to create are pending until they do.
    assert p.counts == TrialCounts(total=6, succeeded=0, failed=0, running=1, pending=5)


def test_suspended_jobs_count_as_queued_not_running_and_keep_their_slot() -> None:
    """Under Kueue: a Job waiting for admission (or preempted) holds a parallelism slot,
    is never started twice and never failed, and status tells it from a running one."""
    s = spec(parallelism=3, queueName="gpus")
    planned = Plan.of("demo", s)
    trials = planned.trials
    jobs = [state(trials[0].name, "active"), state(trials[1].name, "queued")]
    p = decide(planned, jobs, {}, [], parallelism=3, max_failed=0, fit=None)
    assert [t.name for t in p.create] == [trials[2].name]
    assert p.counts == TrialCounts(total=6, running=1, queued=1, pending=4)
    assert not p.final and p.new_records == ()


def test_pass_records_collected_results_and_asks_for_a_fit() -> None:
    planned = Plan.of("demo", spec())
    recorded = {t.name: ok(t.name, t.data_size) for t in planned.trials[:4]}
    collected = [ok(planned.trials[4].name, 400)]
    p = pass_of(planned, [], recorded, collected, fit=fitted(4))
    assert p.new_records == tuple(collected) and len(p.records) == 5
    assert p.needs_fit  # 5 results now, the fit in status used 4
    same = pass_of(planned, [], p.records, [], fit=fitted(5))
    assert not same.needs_fit and not same.new_records


def test_pass_stops_after_too_many_failures() -> None:
    planned = Plan.of("demo", spec())
    failed = [TrialRecord.failed(t, "ExitCode1", "boom", None) for t in planned.trials[:2]]
    p = pass_of(planned, [], {}, failed, parallelism=4)
    assert p.failed_reason and "2 trials failed" in p.failed_reason
    assert p.create == () and p.finished and not p.final
    assert phase_of(p, None, False) == (
        "Failed", Stop(Failure.TOO_MANY_FAILED_TRIALS, p.failed_reason)
    )  # fmt: skip


def test_pass_deletes_active_jobs_dropped_from_the_grid() -> None:
    planned = Plan.of("demo", spec())
    jobs = [state("demo-d9999-m4-s0", "active"), state(planned.trials[0].name, "active")]
    p = pass_of(planned, jobs, {}, [], parallelism=1)
    assert p.delete == ("demo-d9999-m4-s0",) and p.create == ()


def test_finished_pass_needs_the_final_fit_once() -> None:
    planned = Plan.of("demo", spec())
    records = {t.name: ok(t.name, t.data_size) for t in planned}
    p = pass_of(planned, [], records, [], fit=fitted(6))
    assert p.finished and p.final and p.needs_fit
    assert phase_of(p, None, False)[0] == "Fitting"
    assert phase_of(p, None, True)[0] == "Succeeded"
    assert not pass_of(planned, [], records, [], fit=fitted(6, final=True)).needs_fit


def test_fits_are_throttled_except_the_final_one() -> None:
    planned = Plan.of("demo", spec())
    records = {t.name: ok(t.name, t.data_size) for t in planned.trials[:5]}  # 3 data sizes
    interim = pass_of(planned, [], records, [], fit=fitted(3))
    assert fit_due(interim, since_last_fit=2.0, interval=10.0) == (False, 8.0)
    assert fit_due(interim, since_last_fit=12.0, interval=10.0) == (True, None)
    everything = {t.name: ok(t.name, t.data_size) for t in planned}
    final = pass_of(planned, [], everything, [], fit=fitted(4))
    assert fit_due(final, since_last_fit=0.1, interval=10.0) == (True, None)
    settled = pass_of(planned, [], everything, [], fit=fitted(6, final=True))
    assert fit_due(settled, since_last_fit=99.0, interval=10.0) == (False, None)


def test_conditions_keep_transition_times_while_unchanged() -> None:
    first = conditions_for("Running", None, [], 1, "t0")
    again = conditions_for("Running", None, first, 2, "t1")
    assert {c.last_transition_time for c in again} == {"t0"}
    assert {c.observed_generation for c in again} == {2}
    done = {c.type: c for c in conditions_for("Succeeded", None, again, 2, "t2")}
    assert done["Complete"].status == "True" and done["Complete"].last_transition_time == "t2"
    assert done["Progressing"].status == "False"
    # Each refusal keeps its own reason, on SpecValid and on Failed; a failure that no
    # spec change fixes leaves SpecValid alone.
    for kind in (Refusal.INVALID_SPEC, Refusal.FORBIDDEN, Refusal.JOB_REJECTED):
        bad = {c.type: c for c in conditions_for("Failed", Stop(kind, "spec.x: bad"), [], 3, "t3")}
        assert bad["SpecValid"].status == "False" and bad["SpecValid"].reason == kind
        assert bad["Failed"].reason == kind and bad["Failed"].message == "spec.x: bad"
    fit = {c.type: c for c in conditions_for("Failed", Stop(Failure.FIT_FAILED, "x"), [], 3, "t")}
    assert fit["SpecValid"].status == "True" and fit["Failed"].reason == "FitFailed"


# -- Prometheus --------------------------------------------------------------------------


@pytest.mark.parametrize("value", ['a"b', "back\\slash", "new\nline", "plain"])
def test_promql_strings_are_escaped(value: str) -> None:
    literal = promql_string(value)
    assert literal.startswith('"') and literal.endswith('"')
    inner = literal[1:-1]
    assert "\n" not in inner
    unescaped = inner.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
    assert unescaped == value


def sample(name: str, trial: str | None, value: str) -> dict[str, Any]:
    labels = {"__name__": name, **({"trial": trial} if trial else {})}
    return {"metric": labels, "value": [1, value]}


def test_study_query_and_answer_parsing() -> None:
    assert 'study="s\\"x"' in study_query("ns", 's"x')
    answer = {
        "status": "success",
        "data": {
            "result": [
                sample("scalingstudy_trial_validation_loss", "t1", "0.5"),
                sample("scalingstudy_trial_step", "t1", "300"),
                sample("push_time_seconds", "t1", "1700000000"),
                sample("scalingstudy_trial_validation_loss", None, "9"),
                sample("other", "t2", "1"),
            ]
        },
    }  # fmt: skip
    assert samples_by_trial(answer) == {
        "t1": {"validation_loss": 0.5, "steps": 300.0, "push_time_seconds": 1.7e9}
    }


def test_every_group_with_the_study_labels_is_found_and_addressed_exactly() -> None:
    answer = {
        "status": "success",
        "data": [
            {"labels": {"job": "scalingstudy", "namespace": "ml", "study": "s", "trial": "t1"}},
            {"labels": {"job": "scalingstudy", "namespace": "ml", "study": "s", "trial": "t1",
                        "zzz": "x"}},
            {"labels": {"job": "scalingstudy", "namespace": "ml", "study": "other", "trial": "t1"}},
            {"labels": {"job": "node", "namespace": "ml", "study": "s", "trial": "t1"}},
            {"labels": "garbage"},
        ],
    }  # fmt: skip
    groups = group_labels(answer)
    assert len(groups) == 4
    found = study_groups(groups, "ml", "s", {"t1"})
    assert [sorted(g) for g in found] == [
        ["job", "namespace", "study", "trial"],
        ["job", "namespace", "study", "trial", "zzz"],
    ]
    assert group_labels({"data": "notalist"}) == [] and group_labels([1, 2]) == []
    path = group_path({"job": "scalingstudy", "trial": "a/b", "empty": ""})
    assert path == "job@base64/c2NhbGluZ3N0dWR5/empty@base64/=/trial@base64/YS9i"


# -- fits in a child process -----------------------------------------------------------


def test_fit_in_child_process_matches_the_in_process_fit() -> None:
    from scalingstudy.cluster.fitproc import run_fit
    from scalingstudy.fitting import FitError, FitOptions, Point, fit_points

    points = [Point(float(d), 3.0 * d**-0.3, 4.0, "0") for d in (100, 200, 400, 800, 1600)]
    options = FitOptions(bootstrap=30, predict_at=(10_000.0,))
    assert run_fit(points, options).to_json() == fit_points(points, options).to_json()
    with pytest.raises(FitError, match="3 distinct data sizes"):
        run_fit(points[:2], options)


def test_trial_pods_declare_the_metrics_port_the_trainer_serves() -> None:
    s = spec()
    trial = plan_trials("demo", s)[0]
    container = job_manifest(REF, s, trial, JobSettings(metrics_port=9090))["spec"]["template"][
        "spec"
    ]["containers"][0]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SCALINGSTUDY_METRICS_PORT"] == "9090"
    none = job_manifest(REF, s, trial, JobSettings(metrics_port=0))["spec"]["template"]["spec"]
    assert "ports" not in none["containers"][0]


# -- collecting results ----------------------------------------------------------------


def finished_job(phase: str, started: str = "2026-01-01T00:00:00Z") -> JobState:
    return JobState(
        trial="demo-d100-m4-s0",
        name="demo-d100-m4-s0",
        phase=phase,  # type: ignore[arg-type]
        started=parse_time(started),
        finished=parse_time("2026-01-01T00:00:30Z"),
        coordinates=(100, 4, 0),
        uid=JOB_UID,
    )


NOW = parse_time("2026-01-01T00:00:40Z")
TRIAL = "demo-d100-m4-s0"
PUSHED = {"validation_loss": 0.5, "steps": 300.0, "push_time_seconds": 1767225620.0}
STALE = {**PUSHED, "push_time_seconds": 1.0}  # pushed before this Job started
MESSAGE = '{"validation_loss": 0.5, "steps": 300}'


def collected(
    phase: str, pods: list[dict[str, Any]], sample: dict[str, float] | None,
    waits: bool = True, grace: float = 15.0,
) -> Any:  # fmt: skip
    return collect(
        [finished_job(phase)],
        {TRIAL: pods},
        {TRIAL: sample} if sample else {},
        NOW,
        CollectPolicy("validation_loss", waits, grace),
    )


def test_the_termination_message_is_the_result_and_prometheus_is_checked_against_it() -> None:
    agree = collected("succeeded", [pod(0, MESSAGE)], PUSHED)
    (rec,) = agree.records
    assert (rec.source, rec.verified, rec.loss, rec.steps) == (
        "termination-message",
        True,
        0.5,
        300,
    )
    assert agree.mismatches == ()
    forged = collected("succeeded", [pod(0, MESSAGE)], {**PUSHED, "validation_loss": 0.000123})
    assert forged.records[0].loss == 0.5 and forged.records[0].source == "termination-message"
    assert [(m.message_value, m.prometheus_value) for m in forged.mismatches] == [(0.5, 0.000123)]
    (event,) = mismatch_events(forged.mismatches, "validation_loss")
    assert event.type == "Warning" and TRIAL in event.message and "0.000123" in event.message


def test_prometheus_stands_in_unverified_only_when_no_pod_can_tell() -> None:
    gone = collected("succeeded", [], PUSHED)
    (rec,) = gone.records
    assert (rec.source, rec.verified, rec.loss) == ("prometheus", False, 0.5)
    # A stale sample is never used: wait while it may still be replaced, then fail.
    assert collected("succeeded", [], STALE).records == ()
    assert collected("succeeded", [], STALE).wake_in == pytest.approx(5.0)
    late = collected("succeeded", [], STALE, grace=5.0).records[0]
    assert late.status == "Failed" and late.reason == "BadResult"
    # Prometheus unreachable (or no Pushgateway): no waiting.
    assert collected("succeeded", [], None, waits=False).records[0].reason == "BadResult"


def test_only_pods_of_the_trials_current_job_are_its_result() -> None:
    """Pods were taken by their labels: a pod left by an earlier Job of the same name (a
    spec revert, a re-created study) or a user's copy with the labels was recorded as a
    verified result. Only the current Job's pods (its controller uid) count (issue 42)."""
    forged = '{"validation_loss": 0.01, "steps": 300}'
    stale = pod(0, forged, job_uid="an-earlier-job")
    copy = {**pod(0, forged), "metadata": {}}  # labels copied, no controller
    (rec,) = collected("succeeded", [stale, copy, pod(0, MESSAGE)], None).records
    assert (rec.loss, rec.source, rec.verified) == (0.5, "termination-message", True)
    # Only the forged pods: no message of this Job's run; nothing of theirs is recorded.
    (alone,) = collected("succeeded", [stale, copy], None, waits=False).records
    assert alone.status == "Failed" and alone.loss is None
    # A failed Job's reason is its own pod's, never an older pod's.
    failed = collected("failed", [pod(137, "", "OOMKilled", job_uid="old"), pod(3, "x")], None)
    assert failed.records[0].reason == "ExitCode3"
    from scalingstudy.cluster.observe import controlled_by

    assert not controlled_by(pod(0, "", job_uid=JOB_UID), "")
    assert job_state({**job_obj("complete"), "metadata": {
        **job_obj("complete")["metadata"], "uid": "u-7"}}).uid == "u-7"  # fmt: skip


def test_records_from_pods_say_what_went_wrong() -> None:
    garbage = collected("succeeded", [pod(0, "not json")], PUSHED).records[0]
    assert garbage.reason == "BadResult" and "not JSON" in (garbage.message or "")
    failed = collected("failed", [pod(137, "", "OOMKilled")], PUSHED).records[0]
    assert failed.status == "Failed" and failed.reason == "OOMKilled"


def test_messages_copied_into_status_are_bounded() -> None:
    secret_and_more = "é" * 5000 + "the end"
    failed = collected("failed", [pod(1, secret_and_more)], None).records[0]
    assert len((failed.message or "").encode()) <= 256 and failed.message.endswith("the end")


# -- faults: blocked trials, malformed or silent Prometheus, health -------------------------


def test_jobs_without_pods_are_blocked_after_the_grace_with_the_controllers_reason() -> None:
    from scalingstudy.cluster import blocked

    created = parse_time("2026-01-01T00:00:00Z")
    waiting = JobState(trial="a", name="a", phase="active", created=created, has_pods=False)
    running = JobState(trial="b", name="b", phase="active", created=created, has_pods=True)
    queued = JobState(trial="c", name="c", phase="queued", created=created, has_pods=False)
    late = parse_time("2026-01-01T00:01:01Z")
    assert blocked.candidates([waiting, running, queued], late, grace=60) == [waiting]
    assert blocked.candidates([waiting], parse_time("2026-01-01T00:00:30Z"), grace=60) == []
    found = [
        {"type": "Warning", "reason": "FailedCreate", "message": "old",
         "lastTimestamp": "2026-01-01T00:00:10Z"},
        {"type": "Warning", "reason": "FailedCreate", "message": 'serviceaccount "x" not found',
         "lastTimestamp": "2026-01-01T00:00:50Z"},
        {"type": "Normal", "reason": "Whatever", "lastTimestamp": "2026-01-01T00:00:59Z"},
    ]  # fmt: skip
    why = blocked.why(waiting, found)
    assert why.message == 'FailedCreate: serviceaccount "x" not found'
    first = blocked.condition([why], [], 1, "t0")
    assert first.status == "True" and "1 trial(s) have no pod" in (first.message or "")
    event = blocked.became_blocked([], first)
    assert event is not None and event.type == "Warning"
    again = blocked.condition([why], [first], 1, "t1")
    assert again.last_transition_time == "t0" and blocked.became_blocked([first], again) is None
    cleared = blocked.condition([], [again], 1, "t2")
    assert cleared.status == "False" and cleared.last_transition_time == "t2"
    # A ConfigMap conflict blocks the study under its own reason, says so once, and clears
    # itself the pass after the foreign object is gone (no spec change).
    clash = blocked.condition([], [cleared], 1, "t3", conflict="ConfigMap x exists")
    assert (clash.status, clash.reason, clash.message) == ("True", "ConfigMapConflict",
                                                          "ConfigMap x exists")  # fmt: skip
    said = blocked.became_blocked([cleared], clash)
    assert said is not None and said.reason == "ConfigMapConflict"
    still = blocked.condition([], [clash], 1, "t4", conflict="ConfigMap x exists")
    assert blocked.became_blocked([clash], still) is None
    assert blocked.condition([], [clash], 1, "t5").status == "False"


@pytest.mark.parametrize(
    "answer",
    [{"status": "success", "data": {"result": "notalist"}}, [1, 2], {"data": None}, "text"],
)
def test_a_prometheus_answer_of_the_wrong_shape_means_unavailable(answer: Any) -> None:
    from scalingstudy.cluster.prometheus import PrometheusUnavailableError

    with pytest.raises(PrometheusUnavailableError):
        samples_by_trial(answer)


def test_a_silent_prometheus_is_skipped_after_one_timeout() -> None:
    """A real socket that accepts and never answers: the first query costs the timeout,
    the next ones none until the breaker's wait is over."""
    import socket
    import time

    from scalingstudy.cluster.prometheus import Prometheus, PrometheusUnavailableError

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        prometheus = Prometheus(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(PrometheusUnavailableError, match="failed"):
            prometheus.study_results("ns", "s")
        first = time.monotonic() - started
        started = time.monotonic()
        for _ in range(20):
            with pytest.raises(PrometheusUnavailableError, match="next try in"):
                prometheus.study_results("ns", "s")
        assert first >= 0.4 and time.monotonic() - started < 0.2
        assert prometheus.backoff == 5.0
    finally:
        silent.close()


def test_health_fails_only_while_every_pass_fails() -> None:
    from scalingstudy.cluster.workers import Health

    health = Health()
    assert health.problem(stale_after=0.0) is None  # no study, nothing wrong
    health.failed("ns/s: ApiError 500")
    assert health.problem(stale_after=3600) is None  # not for long yet
    trouble = health.problem(stale_after=0.0)
    assert trouble is not None and "ns/s: ApiError 500" in trouble
    health.passed()
    assert health.problem(stale_after=0.0) is None


def test_lease_moves() -> None:
    from scalingstudy.cluster.leader import LeaseTiming, move

    assert move("me", "me", 100.0, 15.0) == "renew"
    assert move("", "me", 0.0, 15.0) == "take"  # released
    assert move("other", "me", 3.0, 15.0) == "wait"
    assert move("other", "me", 15.5, 15.0) == "take"  # unchanged for longer than it lasts
    with pytest.raises(ValueError, match="retry < renew deadline < duration"):
        LeaseTiming(duration=10, renew_deadline=10, retry=2)


# -- the fit's failures and its settings (issue 37) -------------------------------------


def test_a_final_fit_that_ran_to_no_answer_leaves_the_study_fitting_never_failed() -> None:
    """A fit that timed out or whose process died says nothing of the data: with no
    earlier fit the study used to turn Failed (FitFailed, "fewer than 3 data sizes have a
    succeeded trial", false: all had) with a StudyFailed Event, then Succeeded later."""
    from scalingstudy.cluster.status_builder import build_status
    from scalingstudy.cluster.study_events import status_events
    from scalingstudy.status import ScalingStudyStatus

    planned = Plan.of("demo", spec())
    records = {t.name: ok(t.name, t.data_size) for t in planned}
    p = pass_of(planned, [], records, [])
    assert p.final and p.needs_fit
    before = ScalingStudyStatus(phase="Running")
    plain = build_status(p, 1, before, None, None, "t")
    assert plain.phase == "Fitting"
    assert {c.type: c.status for c in plain.conditions}["Failed"] == "False"
    note = "the fit ran to no answer (the fit took longer than 600 s); trying again in 10 s"
    after = build_status(p, 1, before, None, None, "t", fit_note=note)
    conditions = {c.type: c for c in after.conditions}
    assert after.phase == "Fitting"
    assert (conditions["Progressing"].reason, conditions["Progressing"].message) == (
        "Fitting", note
    )  # fmt: skip
    assert "StudyFailed" not in {e.reason for e in status_events([], before, after, False)}
    # Data that really cannot be fitted still say so, truthfully.
    two = {t.name: r for t in planned
           for r in [ok(t.name, t.data_size) if t.data_size < 400
                     else TrialRecord.failed(t, "ExitCode1", "x", None)]}  # fmt: skip
    unfit = pass_of(planned, [], two, [], max_failed=9)
    failed = {c.type: c for c in build_status(unfit, 1, before, None, None, "t").conditions}
    assert failed["Failed"].reason == "FitFailed" and "fewer than 3" in (failed["Failed"].message
                                                                         or "")  # fmt: skip


def test_the_fit_child_tells_a_fit_that_raised_from_one_that_ran_to_no_answer() -> None:
    """Any exception in the fit child used to exit 1, read as "no answer" and retried
    forever; an exception on the input is the same on every run: a failed fit, with its
    words. Only a child that wrote no answer (killed, out of memory) is unavailable."""
    import subprocess
    import sys

    from scalingstudy.cluster.fitproc import FitDefectError, answer_of
    from scalingstudy.fitting import FitError, FitUnavailableError

    # A request the fit raises on (a TypeError: an option it does not know) in the real child.
    request = {"points": [], "options": {"form": "auto", "no-such-option": 1}}
    child = subprocess.run(
        [sys.executable, "-m", "scalingstudy.cluster.fitproc"], input=json.dumps(request),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr[-500:]
    with pytest.raises(FitDefectError, match="the fit raised TypeError") as raised:
        answer_of(child.returncode, child.stdout, child.stderr)
    assert not isinstance(raised.value, FitUnavailableError)
    with pytest.raises(FitUnavailableError, match="Killed"):
        answer_of(-9, "", "Killed")
    with pytest.raises(FitError) as plain:
        answer_of(0, '{"error": "3 distinct data sizes needed"}', "")
    assert type(plain.value) is FitError
    # An answer this operator cannot read is a defect said in status, not a crash of the
    # pass (review of issue 37).
    with pytest.raises(FitDefectError, match="unreadably"):
        answer_of(0, '{"fit": {"learning_curve": 3}}', "")


def test_a_finished_study_whose_fit_settings_change_is_refitted_before_it_says_so() -> None:
    """targetLoss removed from a Succeeded study: observedGeneration used to reach the new
    generation with dataForTarget (for a target nobody asks for) still in status."""
    from scalingstudy.cluster.reconcile import fit_settings
    from scalingstudy.cluster.status_builder import build_status
    from scalingstudy.fitting.report import DataForTarget
    from scalingstudy.status import ScalingStudyStatus

    with_target = spec(fit={"targetLoss": 0.5})
    without = spec()
    planned = Plan.of("demo", without)
    records = {t.name: ok(t.name, t.data_size) for t in planned}
    old = FitStatus(
        final=True, based_on_results=6, settings=fit_settings(with_target),
        data_for_target=DataForTarget(target_loss=0.5, data_size=1e5),
    )  # fmt: skip
    assert fit_settings(with_target) != fit_settings(without)
    same = decide(planned, [], records, [], parallelism=2, max_failed=1, fit=old,
                  settings=fit_settings(with_target))  # fmt: skip
    assert not same.needs_fit and not same.stale_fit
    p = decide(planned, [], records, [], parallelism=2, max_failed=1, fit=old,
               settings=fit_settings(without))  # fmt: skip
    assert p.needs_fit and p.stale_fit
    assert fit_due(p, since_last_fit=0.1, interval=10.0) == (True, None)
    before = ScalingStudyStatus(phase="Succeeded", observed_generation=1, fit=old)
    # No new fit could be made in that pass: the stale one is not shown as the spec's.
    after = build_status(p, 2, before, old, None, "t")
    assert after.fit is None and after.phase == "Fitting"


# -- creates the API server refuses or a name another object holds (issue 42) -----------


def test_a_job_name_held_by_another_owner_blocks_the_trial_and_says_whose() -> None:
    """A 409 on a Job name the study does not own was ignored: the trial was reported
    started forever with a TrialsStarted Event every pass. Now TrialsBlocked names the
    owner, with one Warning Event, not one per pass."""
    from scalingstudy.cluster import blocked

    foreign = {"metadata": {"name": "demo-d100-m4-s0", "ownerReferences": [
        {"kind": "ScalingStudy", "apiVersion": "x.io/v1", "name": "other", "uid": "u-9",
         "controller": True}]}}  # fmt: skip
    taken = blocked.name_taken("demo-d100-m4-s0", foreign)
    assert config_map_owner(foreign, REF) == "foreign"
    cond = blocked.condition([], [], 1, "t0", refused=taken)
    assert (cond.status, cond.reason) == ("True", "JobNameTaken")
    assert "ScalingStudy other (uid u-9)" in (cond.message or "")
    event = blocked.became_blocked([], cond)
    assert event is not None and event.type == "Warning" and "other" in event.message
    again = blocked.condition([], [cond], 1, "t1", refused=taken)
    assert blocked.became_blocked([cond], again) is None  # not every pass
    refused = blocked.create_refused(
        "Job", "demo-d100-m4-s0",
        'jobs.batch "demo-d100-m4-s0" is forbidden: exceeded quota: q, requested: '
        "count/jobs.batch=1, used: count/jobs.batch=2, limited: count/jobs.batch=2",
    )  # fmt: skip
    quota = blocked.condition([], [again], 1, "t2", refused=refused)
    assert (quota.reason, quota.status) == ("CreateRefused", "True")
    assert "Job demo-d100-m4-s0" in (quota.message or "") and "exceeded quota" in (
        quota.message or "")  # fmt: skip
    assert blocked.became_blocked([again], quota) is not None  # another cause: said once
    assert blocked.condition([], [quota], 1, "t3").status == "False"


# -- leader election against a stalled API server (issue 42) ------------------------------


def test_a_renew_stalled_on_its_connection_stops_the_leader_inside_the_renew_deadline() -> None:
    """A renew blocked for the client's 60 s read timeout kept the leader acting long past
    the renew deadline and the lease (the standby took over: two leaders). A real server
    that accepts the connection and never answers: the leader must give up while that
    request is still unanswered."""
    import asyncio
    import socket
    import threading

    from kubernetes import client

    from scalingstudy.cluster.kube import Kube
    from scalingstudy.cluster.leader import LeaderElector, LeaseTiming

    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
    config = client.Configuration()
    config.host = f"http://127.0.0.1:{server.getsockname()[1]}"
    kube = Kube(client.ApiClient(config))
    elector = LeaderElector(kube, "ns", "lease", "me", LeaseTiming(3.0, 2.0, 0.2))
    elector.leading = True
    lost: list[bool] = []
    try:
        # 30 s: far inside the 60 s a stalled read used to take, far above the deadline.
        asyncio.run(asyncio.wait_for(elector.keep(lambda: lost.append(True)), 30))
        assert lost == [True] and not elector.leading
        assert accepted, "the renew never reached the server"
        assert accepted[0].recv(1, socket.MSG_PEEK) != b""  # its request was never answered
    finally:
        for conn in accepted:
            conn.close()
        server.close()


def test_a_prometheus_outage_delays_a_pushgateway_only_result_and_never_fails_it_early() -> None:
    """A trial whose result only the Pushgateway has was recorded Failed at once when
    Prometheus was down (or its breaker open): not having asked says nothing of the
    trial. It now waits while Prometheus cannot be asked, and gets its full grace window
    once Prometheus answers again (issue 42)."""
    down = collect([finished_job("succeeded")], {TRIAL: []}, {}, NOW,
                   CollectPolicy("validation_loss", True, 5.0, reachable=False))  # fmt: skip
    assert down.records == () and down.wake_in == 5.0
    hours_later = parse_time("2026-01-01T05:00:00Z")
    back = parse_time("2026-01-01T04:59:58Z")  # Prometheus answered 2 s ago
    policy = CollectPolicy("validation_loss", True, 5.0, reachable=True, answering_since=back)
    waiting = collect([finished_job("succeeded")], {TRIAL: []}, {}, hours_later, policy)
    assert waiting.records == () and waiting.wake_in == pytest.approx(3.0)
    found = collect([finished_job("succeeded")], {TRIAL: []}, {TRIAL: PUSHED}, hours_later, policy)
    assert found.records[0].loss == 0.5 and found.records[0].source == "prometheus"
    # Once its window has passed with Prometheus answering, the missing result is a failure.
    late = collect([finished_job("succeeded")], {TRIAL: []}, {},
                   parse_time("2026-01-01T05:00:04Z"), policy)  # fmt: skip
    assert late.records[0].status == "Failed"


def test_trials_that_wait_for_a_prometheus_that_does_not_answer_are_said_in_status() -> None:
    """An outage that lasts (Prometheus down for good, a wrong URL) kept Pushgateway-only
    trials waiting with no word in status: the study looked stuck for no reason. The wait
    is now said in its Progressing condition, with Prometheus's error (issue 42)."""
    policy = CollectPolicy("validation_loss", True, 5.0, reachable=False,
                           unreachable_because="connection refused")  # fmt: skip
    down = collect([finished_job("succeeded")], {TRIAL: []}, {}, NOW, policy)
    assert down.waiting_for_prometheus == (TRIAL,)
    note = down.waiting_note()
    assert note is not None and TRIAL in note and "connection refused" in note
    assert "1 finished trial(s)" in note
    from scalingstudy.cluster.status_builder import build_status
    from scalingstudy.status import ScalingStudyStatus

    planned = Plan.of("demo", spec())
    p = pass_of(planned, [], {}, [])
    status = build_status(p, 1, ScalingStudyStatus(), None, None, "t", fit_note=note)
    progressing = next(c for c in status.conditions if c.type == "Progressing")
    assert progressing.status == "True" and progressing.message == note
    answered = collect([finished_job("succeeded")], {TRIAL: []}, {}, NOW,
                       CollectPolicy("validation_loss", True, 5.0))  # fmt: skip
    assert answered.waiting_for_prometheus == () and answered.waiting_note() is None


def test_a_taken_job_name_does_not_keep_the_other_trials_from_starting() -> None:
    """Review of issue 42: with parallelism 1, a trial whose Job name another owner holds
    was picked first on every pass and nothing else ever started. A name found taken is
    tried after every other waiting trial; the study stays unfinished while it waits."""
    spec = parse_spec(
        {"task": {"name": "teacher-student"}, "dataSizes": {"values": [100, 200, 400]},
         "modelSizes": {"values": [4]}}
    )  # fmt: skip
    planned = Plan(tuple(plan_trials("demo", spec)))
    first = planned.trials[0].name
    blocked = decide(planned, [], {}, [], parallelism=1, max_failed=0, fit=None)
    assert [t.name for t in blocked.create] == [first]
    p = decide(planned, [], {}, [], parallelism=1, max_failed=0, fit=None, deferred={first})
    assert [t.name for t in p.create] == [planned.trials[1].name]
    assert not p.finished
