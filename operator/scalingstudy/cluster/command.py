"""`scalingstudy operator`: its flags and how they become the operator's options."""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

from scalingstudy.contract import STATUS_BYTES_MAX
from scalingstudy.usage import fail

#: Where the Kubernetes client looks for a service account inside a pod.
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def cluster_config_problem(kubeconfig: str | None) -> str | None:
    """None when the Kubernetes client finds a configuration; else one line naming both
    places it looked (a pod's service account, then the kubeconfig), so an operator
    started on a machine without a cluster says what to provide instead of ending in
    the client's ConfigException traceback. Reads files only; no request is made."""
    import yaml
    from kubernetes import config

    from scalingstudy.cluster.kube import load_config

    try:
        load_config(kubeconfig)
    except (config.ConfigException, OSError, yaml.YAMLError, TypeError, ValueError) as exc:
        path = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        return (
            "no cluster configuration: not in a pod (no KUBERNETES_SERVICE_HOST and "
            f"{SERVICE_ACCOUNT_TOKEN}) and no usable kubeconfig at {path} "
            f"({' '.join(str(exc).split())}); "
            "give --kubeconfig FILE or set KUBECONFIG"
        )
    return None


def _seconds(text: str) -> float:
    """A period in seconds: a number above 0 (0 or less would spin a loop)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_operator_command(sub: Any) -> None:
    """The `operator` subcommand; every option says what it does and its default."""
    from scalingstudy.cluster.manifests import JobSettings

    op = sub.add_parser("operator", help="run the Kubernetes operator (current kubeconfig)")
    scope = op.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", "-n", action="append", default=[],
        help="watch this namespace (repeatable; required unless --all-namespaces)",
    )  # fmt: skip
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    op.add_argument(
        "--prometheus-url", default="",
        help="Prometheus to check trial results against (default: none, results from "
             "termination messages only)",
    )  # fmt: skip
    op.add_argument(
        "--pushgateway-url", default="",
        help="Pushgateway that trainers push results to (default: none, no push)",
    )  # fmt: skip
    op.add_argument(
        "--metrics-port", type=int, default=8080,
        help="port of /metrics and /healthz (default: %(default)s)",
    )  # fmt: skip
    op.add_argument(
        "--trainer-image", default=None,
        help=f"image of the built-in trainer (default: {JobSettings().trainer_image})",
    )  # fmt: skip
    op.add_argument(
        "--kubeconfig", default=None,
        help="default: the in-cluster service account, else KUBECONFIG or ~/.kube/config",
    )  # fmt: skip
    op.add_argument(
        "--resync-seconds", type=_seconds, default=30.0,
        help="pass over every study this often, events or not (default: %(default)s)",
    )  # fmt: skip
    op.add_argument(
        "--fit-interval", type=_seconds, default=10.0,
        help="refit a study at most this often, in seconds (default: %(default)s)",
    )  # fmt: skip
    op.add_argument(
        "--prune-interval", type=_seconds, default=10.0,
        help="read running trials' logs to prune (design.pruning) at most this often per "
             "study, in seconds (default: %(default)s)",
    )  # fmt: skip
    op.add_argument(
        "--sweep-interval", type=_seconds, default=60.0,
        help="delete Pushgateway groups nothing will read (of deleted studies, progress "
             "pushed after its trial was recorded) this often, in seconds (default: "
             "%(default)s)",
    )  # fmt: skip
    op.add_argument(
        "--result-grace", type=float, default=15.0,
        help="seconds a finished trial without a termination message waits for "
             "Prometheus (default: %(default)s)",
    )  # fmt: skip
    op.add_argument(
        "--blocked-after", type=float, default=60.0,
        help="seconds a trial's Job may have no pod before the study reports TrialsBlocked "
             "(default: %(default)s)",
    )  # fmt: skip
    op.add_argument(
        "--max-status-bytes", type=int, default=STATUS_BYTES_MAX,
        help="a study whose status would be larger fails (StatusTooLarge); lower it when "
             "etcd's --max-request-bytes is below its 1.5 MiB default (default: %(default)s)",
    )  # fmt: skip
    _add_leader_options(op)
    _add_admission_options(op)
    op.set_defaults(func=cmd_operator)


def _add_leader_options(op: argparse.ArgumentParser) -> None:
    lead = op.add_argument_group("leader election (for more than one replica)")
    lead.add_argument("--leader-election", action="store_true",
                      help="act only while holding a coordination.k8s.io Lease")  # fmt: skip
    lead.add_argument("--leader-election-namespace", default=os.environ.get("POD_NAMESPACE", ""),
                      help="namespace of the Lease (default: $POD_NAMESPACE)")  # fmt: skip
    lead.add_argument("--leader-election-id", default="scalingstudy-operator",
                      help="name of the Lease (default: %(default)s)")  # fmt: skip
    lead.add_argument(
        "--lease-duration", type=_seconds, default=15.0,
        help="seconds a Lease not renewed stays held: how long a standby waits before it "
             "takes over (default: %(default)s)",
    )  # fmt: skip
    lead.add_argument(
        "--renew-deadline", type=_seconds, default=10.0,
        help="seconds the leader keeps trying to renew before it stops acting "
             "(below --lease-duration; default: %(default)s)",
    )  # fmt: skip
    lead.add_argument(
        "--retry-period", type=_seconds, default=2.0,
        help="seconds between tries to take or renew the Lease (default: %(default)s)",
    )  # fmt: skip


def _add_admission_options(op: argparse.ArgumentParser) -> None:
    from scalingstudy.admission import DEFAULT_VOLUME_TYPES

    rules = op.add_argument_group("what a study may ask for (as the admission policy)")
    for flag, default, note in (
        ("--allowed-volume-types", ",".join(DEFAULT_VOLUME_TYPES),
         f"volume types a trial pod may mount (default: {','.join(DEFAULT_VOLUME_TYPES)})"),
        ("--allowed-priority-classes", "",
         "priority classes a study may name (default: none)"),
        ("--trusted-namespaces", "",
         "namespaces where the allow-lists do not apply (default: none)"),
    ):  # fmt: skip
        rules.add_argument(flag, type=_names, default=default, metavar="A,B", help=note)
    rules.add_argument(
        "--allow-service-account-tokens", action="store_true",
        help="let a study's projected volumes hold a serviceAccountToken (default: refused)",
    )  # fmt: skip


def cmd_operator(args: argparse.Namespace) -> int:
    from scalingstudy.admission import AdmissionRules
    from scalingstudy.cluster.controller import ControllerConfig
    from scalingstudy.cluster.leader import LeaseTiming
    from scalingstudy.cluster.manifests import JobSettings
    from scalingstudy.cluster.run import LeaderOptions, OperatorOptions, run

    if not (args.all_namespaces or args.namespace):
        fail("say which namespaces to watch: --namespace NS (repeatable) or --all-namespaces")
    if problem := cluster_config_problem(args.kubeconfig):
        fail(problem)
    leader = None
    if args.leader_election:
        if not args.leader_election_namespace:
            fail("--leader-election needs --leader-election-namespace (or $POD_NAMESPACE)")
        try:
            timing = LeaseTiming(args.lease_duration, args.renew_deadline, args.retry_period)
        except ValueError as exc:
            fail(str(exc))
        leader = LeaderOptions(args.leader_election_namespace, args.leader_election_id, timing)
    job = JobSettings(pushgateway_url=args.pushgateway_url)
    if args.trainer_image:
        job = JobSettings(trainer_image=args.trainer_image, pushgateway_url=args.pushgateway_url)
    run(
        OperatorOptions(
            namespaces=tuple(args.namespace),
            all_namespaces=args.all_namespaces,
            prometheus_url=args.prometheus_url,
            metrics_port=args.metrics_port,
            kubeconfig=args.kubeconfig,
            leader=leader,
            controller=ControllerConfig(
                job=job,
                resync_seconds=args.resync_seconds,
                fit_interval=args.fit_interval,
                prune_interval=args.prune_interval,
                sweep_seconds=args.sweep_interval,
                result_grace=args.result_grace,
                blocked_after=args.blocked_after,
                status_bytes_max=args.max_status_bytes,
                admission=AdmissionRules(
                    # argparse applies `type` to string defaults too: all are tuples.
                    volume_types=args.allowed_volume_types,
                    priority_classes=args.allowed_priority_classes,
                    service_account_tokens=args.allow_service_account_tokens,
                    trusted_namespaces=args.trusted_namespaces,
                ),
            ),
        )
    )
    return 0
