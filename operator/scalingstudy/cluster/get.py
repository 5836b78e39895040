"""`scalingstudy get STUDY`: a cluster study's results as the files a local run writes.

It reads the study once (GET only: the command needs no more than `get` on
scalingstudies) and refits the status's results with the study's own fit settings, so
fit.json holds the whole report (the band, every interval) and not only the summary the
status carries. It fits the same trials the operator fits (those the spec plans now,
`planned_records`; status.results also keeps trials a spec edit left out) with the same
deterministic fit, so its numbers are the status's.

curves.csv holds every evaluation of each trial, read from its pod 0's log through the API
server (`pod_logs.py`: the one channel only the trial writes; it needs `list` on pods and
`get` on pods/log), or, for a pruned trial whose pod is gone, from the compact curve its
record keeps. Without those rights the rest is written and it says so. A trial's pods are
those of the Job that holds its name now, by uid (it lists the study's Jobs): a Job
deleted and made again under the same name (a lapsed pruned trial trained again, a spec
edit, a user) can leave its pods behind, and their logs are another run's. Without `list`
on Jobs it reads them by the Job's name, as before, and says so.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from scalingstudy.records import TrialRecord
from scalingstudy.usage import fail

if TYPE_CHECKING:
    from scalingstudy.cluster.kube import Kube
    from scalingstudy.cluster.manifests import Obj
    from scalingstudy.cluster.pod_logs import JobIdentity
    from scalingstudy.curve_rows import CurveTrial
    from scalingstudy_sdk.curve import Curve


def add_get_command(sub: Any) -> None:
    get = sub.add_parser(
        "get", help="write a cluster study's results.csv, fit.json, plot and report.html"
    )
    get.add_argument("study", help="the ScalingStudy's name")
    get.add_argument("-n", "--namespace", default=None,
                     help="default: the current kubeconfig context's namespace")  # fmt: skip
    get.add_argument("--out", default=None, help="output directory (default: scalingstudy-NAME)")
    get.add_argument("--kubeconfig", default=None, help="default: KUBECONFIG or ~/.kube/config")
    get.set_defaults(func=cmd_get)


def _context_namespace(kubeconfig: str | None) -> str:
    from kubernetes import config

    try:
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError):
        return "default"
    return str((active or {}).get("context", {}).get("namespace") or "default")


def cmd_get(args: argparse.Namespace) -> int:
    import urllib3
    from kubernetes import config

    from scalingstudy.cluster.command import cluster_config_problem
    from scalingstudy.cluster.kube import ApiError, Kube, load_config
    from scalingstudy.render.output import print_summary, write_study_output
    from scalingstudy.results import planned_records
    from scalingstudy.spec import SpecError, parse_spec
    from scalingstudy.status import ScalingStudyStatus

    if problem := cluster_config_problem(args.kubeconfig):  # one line, never a traceback
        fail(problem)
    namespace = args.namespace or _context_namespace(args.kubeconfig)
    try:
        kube = Kube(load_config(args.kubeconfig), user_agent="scalingstudy-get")
        obj = kube.get_study(namespace, args.study)
    except (config.ConfigException, OSError, urllib3.exceptions.HTTPError) as exc:
        fail(f"cannot reach the cluster: {exc}")
    except ApiError as exc:
        fail(f"cannot read scalingstudy {namespace}/{args.study}: {exc}")
    if obj is None:
        fail(f"scalingstudy {args.study!r} not found in namespace {namespace!r}")
    try:
        spec = parse_spec(obj.get("spec"))
    except SpecError as exc:
        fail(f"scalingstudy {namespace}/{args.study} has an invalid spec: {exc.problems[0]}")
    status = ScalingStudyStatus.lenient(obj.get("status") or {})
    out = Path(args.out or f"scalingstudy-{args.study}")
    planned = planned_records(args.study, spec, status.results)
    read = _curves(kube, namespace, args.study, obj.get("metadata") or {}, planned)
    written = write_study_output(
        out, args.study, spec, planned, status.design,
        f"cluster study {namespace}/{args.study}, phase {status.phase or 'unknown'}",
        curves=read.curves, running=read.running,
    )  # fmt: skip
    ok = sum(r.status == "Succeeded" for r in planned)
    left_out = len(status.results) - len(planned)
    print(f"Study {namespace}/{args.study}: phase {status.phase or 'unknown'}, {ok} of "
          f"{len(planned)} planned trials succeeded"
          + (f"; {left_out} recorded trial(s) the spec no longer plans are left out"
             if left_out else ""))  # fmt: skip
    print_summary(written, status.design)
    if read.problem:
        print(f"the trials' pods could not be read ({read.problem}): curves.csv holds only the "
              "curves kept in status")  # fmt: skip
    elif read.by_name:
        print(f"Jobs could not be listed ({read.by_name}): curves.csv read each trial's "
              "pods by its Job's name, so pods an earlier Job of that name left may be "
              "read into its curve")  # fmt: skip
    return 0


class CurvesRead(NamedTuple):
    """What `_curves` read: each trial's curve, the running trials (not yet recorded), why
    pod logs could not be read (None: they were), and why Jobs could not be listed (None:
    they were, and pods were told by their Job's uid; else by its name)."""

    curves: dict[str, Curve]
    running: list[CurveTrial]
    problem: str | None
    by_name: str | None


def _curves(
    kube: Kube, namespace: str, study: str, meta: Obj, planned: list[TrialRecord]
) -> CurvesRead:
    """Each trial's curve from its pod 0's log (the recorded trials' and the running
    ones'; `pod_logs.trial_attempts` says which pods are a trial's), a pruned trial whose
    pod is gone, or whose gone Job's log is another run's, from its record's compact
    curve; the running trials as their pods place them. Jobs forbidden (403): pods by
    the Job's name, said; any other refusal is as pod logs refused: the kept curves."""
    from scalingstudy.cluster.kube import ApiError
    from scalingstudy.cluster.manifests import LABEL_STUDY
    from scalingstudy.cluster.pod_logs import PodLogs, of_pod, trial_curves
    from scalingstudy.curve_rows import compact_curve

    kept = {r.trial: c for r in planned if (c := compact_curve(r)) is not None}
    names = {r.trial for r in planned}
    running: list[CurveTrial] = []
    problem = by_name = None
    try:
        # Pods first: a Job made after them is not seen (its pods were not listed either);
        # one deleted after them is really gone.
        pods = kube.list_pods(namespace, f"{LABEL_STUDY}={study}")
        identity, by_name = _job_identity(kube, namespace, study, meta)
        for pod in _live(pods, identity):
            trial = of_pod(pod)
            if trial is not None and trial.trial not in names:
                names.add(trial.trial)
                running.append(trial)
        curves = trial_curves(PodLogs(kube), namespace, pods, sorted(names), identity, kept)
    except ApiError as exc:
        problem, curves = exc.detail, {}
    for name, curve in kept.items():
        curves.setdefault(name, curve)
    return CurvesRead(curves, running, problem, by_name)


def _job_identity(
    kube: Kube, namespace: str, study: str, meta: Obj
) -> tuple[JobIdentity | None, str | None]:
    """The study's Jobs by name and uid; (None, why) where listing them is forbidden. Any
    other refusal raises, said as the Jobs' (not the pod logs')."""
    from scalingstudy.cluster.kube import ApiError
    from scalingstudy.cluster.manifests import LABEL_STUDY
    from scalingstudy.cluster.observe import parse_time
    from scalingstudy.cluster.pod_logs import job_identity

    uid, since = str(meta.get("uid") or ""), parse_time(meta.get("creationTimestamp"))
    try:
        jobs = list(kube.list_jobs(namespace, f"{LABEL_STUDY}={study}"))
    except ApiError as exc:
        if exc.status != 403:
            raise ApiError(exc.status, "list", "jobs", f"Jobs not listed: {exc.detail}") from exc
        return None, exc.detail
    return job_identity(jobs, uid, since), None


def _live(pods: list[Obj], identity: JobIdentity | None) -> list[Obj]:
    """The pods that may place a running trial: those of a Job that exists now (a pod a
    deleted Job left is no trial running); every pod where Jobs were not listed."""
    from scalingstudy.cluster.observe import controller_of

    if identity is None:
        return pods
    uids = set(identity.current.values())
    return [p for p in pods if (controller_of(p) or {}).get("uid") in uids]
