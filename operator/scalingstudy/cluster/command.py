"""`scalingstudy operator`: its flags and how they become the operator's options."""

from __future__ import annotations

import argparse
import os
from typing import Any

from scalingstudy.contract import STATUS_BYTES_MAX
from scalingstudy.usage import fail


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_operator_command(sub: Any) -> None:
    op = sub.add_parser("operator", help="run the Kubernetes operator (current kubeconfig)")
    scope = op.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", "-n", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    op.add_argument("--prometheus-url", default="", help="Prometheus to read trial results from")
    op.add_argument(
        "--pushgateway-url", default="", help="Pushgateway that trainers push results to"
    )
    op.add_argument("--metrics-port", type=int, default=8080, help="/metrics and /healthz")
    op.add_argument("--trainer-image", default=None, help="image of the built-in trainer")
    op.add_argument("--kubeconfig", default=None, help="default: KUBECONFIG or in-cluster")
    op.add_argument(
        "--resync-seconds", type=float, default=30.0, help="pass every study this often"
    )
    op.add_argument("--fit-interval", type=float, default=10.0, help="refit at most this often")
    op.add_argument(
        "--result-grace",
        type=float,
        default=15.0,
        help="seconds a finished trial without a termination message waits for Prometheus",
    )
    op.add_argument(
        "--blocked-after", type=float, default=60.0,
        help="seconds a trial's Job may have no pod before the study reports TrialsBlocked",
    )  # fmt: skip
    op.add_argument(
        "--max-status-bytes", type=int, default=STATUS_BYTES_MAX,
        help="a study whose status would be larger fails (StatusTooLarge); lower it when "
             "etcd's --max-request-bytes is below its 1.5 MiB default",
    )  # fmt: skip
    lead = op.add_argument_group("leader election (for more than one replica)")
    lead.add_argument("--leader-election", action="store_true",
                      help="act only while holding a coordination.k8s.io Lease")  # fmt: skip
    lead.add_argument("--leader-election-namespace", default=os.environ.get("POD_NAMESPACE", ""),
                      help="namespace of the Lease (default: $POD_NAMESPACE)")  # fmt: skip
    lead.add_argument("--leader-election-id", default="scalingstudy-operator", help="Lease name")
    lead.add_argument("--lease-duration", type=float, default=15.0)
    lead.add_argument("--renew-deadline", type=float, default=10.0)
    lead.add_argument("--retry-period", type=float, default=2.0)
    from scalingstudy.admission import DEFAULT_VOLUME_TYPES

    rules = op.add_argument_group("what a study may ask for (as the admission policy)")
    for flag, default, note in (
        ("--allowed-volume-types", ",".join(DEFAULT_VOLUME_TYPES), ""),
        ("--allowed-priority-classes", "", "default: none"),
        ("--trusted-namespaces", "", "the allow-lists do not apply there"),
    ):
        rules.add_argument(flag, type=_names, default=default, metavar="A,B", help=note)
    rules.add_argument("--allow-service-account-tokens", action="store_true")
    op.set_defaults(func=cmd_operator)


def cmd_operator(args: argparse.Namespace) -> int:
    from scalingstudy.admission import AdmissionRules
    from scalingstudy.cluster.controller import ControllerConfig
    from scalingstudy.cluster.leader import LeaseTiming
    from scalingstudy.cluster.manifests import JobSettings
    from scalingstudy.cluster.run import LeaderOptions, OperatorOptions, run

    if not (args.all_namespaces or args.namespace):
        fail("say which namespaces to watch: --namespace NS (repeatable) or --all-namespaces")
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
