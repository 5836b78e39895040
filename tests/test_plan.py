"""Trial planning: stable names within Kubernetes limits, every coordinate once."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

from scalingstudy.planning.plan import plan_trials, trial_name
from scalingstudy.spec import parse_study

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_plan_covers_the_grid_once(quickstart_doc: dict[str, Any]) -> None:
    study = parse_study(quickstart_doc)
    trials = plan_trials(study.metadata.name, study.spec)
    coords = [t.coordinates for t in trials]
    assert len(coords) == len(set(coords)) == study.spec.trial_count()
    assert len({t.name for t in trials}) == len(trials)
    assert [t.data_size for t in trials] == sorted(t.data_size for t in trials)


def test_names_are_dns_labels_even_for_long_study_names() -> None:
    names = set()
    for study in ["a", "x" * 63, "ab-" * 21, "long-study-name-" * 3 + "z"]:
        for data, model, seed in [(1, 1, 0), (10**12, 10**6, 31), (1024000, 256, 3)]:
            name = trial_name(study, data, model, seed)
            assert len(name) <= 63, name
            assert DNS_LABEL.match(name), name
            names.add(name)
    assert len(names) == 12


def test_long_names_that_share_a_prefix_stay_distinct() -> None:
    a = trial_name("p" * 60 + "a", 1000, 64, 0)
    b = trial_name("p" * 60 + "b", 1000, 64, 0)
    assert a != b


def test_names_are_stable_across_processes(quickstart_doc: dict[str, Any]) -> None:
    """Hash randomisation must not leak into names: a restarted operator recomputes them."""
    study = parse_study(quickstart_doc)
    here = [
        t.name for t in plan_trials("a-rather-long-study-name-for-hashing-purposes-xyz", study.spec)
    ]
    code = (
        "import json,sys,yaml;from scalingstudy.spec import parse_study;"
        "from scalingstudy.planning.plan import plan_trials;"
        "s=parse_study(yaml.safe_load(open(sys.argv[1])));"
        "print(json.dumps([t.name for t in plan_trials("
        "'a-rather-long-study-name-for-hashing-purposes-xyz', s.spec)]))"
    )
    import json
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "quickstart.yaml"
    for hash_seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code, str(example)],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": hash_seed},
        )
        assert json.loads(out.stdout) == here


def test_a_learning_rate_sweep_adds_a_coordinate_with_short_deterministic_names(
    quickstart_doc: dict[str, Any],
) -> None:
    quickstart_doc["spec"]["learningRates"] = {"values": [0.001, 0.003, 0.01]}
    study = parse_study(quickstart_doc)
    trials = plan_trials("quickstart", study.spec)
    assert len(trials) == 3 * len(plan_trials("quickstart", parse_study({
        **quickstart_doc, "spec": {k: v for k, v in quickstart_doc["spec"].items()
                                   if k != "learningRates"}}).spec))  # fmt: skip
    assert len({t.name for t in trials}) == len(trials)
    assert trials[1].name == "quickstart-d100-m1-l0p003-s0" and trials[1].learning_rate == 0.003
    long = "x" * 63
    names = {trial_name(long, 10**9, 10**6, 31, r) for r in (1e-5, 1.5e-5, 0.1, 1e300)}
    assert len(names) == 4 and all(len(n) <= 63 and DNS_LABEL.match(n) for n in names)


def test_a_swept_trial_is_named_by_its_rate_not_its_position(
    quickstart_doc: dict[str, Any],
) -> None:
    """Inserting, removing or reordering a rate renames no other trial: the trial that
    ran at 0.001 keeps its name (and result) wherever 0.001 sits in the list."""

    def named(rates: list[float]) -> dict[str, float | None]:
        doc = {**quickstart_doc, "spec": {**quickstart_doc["spec"],
                                          "learningRates": {"values": rates}}}  # fmt: skip
        return {t.name: t.learning_rate for t in plan_trials("q", parse_study(doc).spec)}

    before = named([0.001, 0.003])
    for edited in ([0.0003, 0.001, 0.003], [0.003, 0.001], [0.003, 0.01]):
        after = named(edited)
        shared = before.keys() & after.keys()
        assert all(before[n] == after[n] for n in shared)  # a name means one rate
        assert {after[n] for n in shared} == set(edited) & {0.001, 0.003}
    # 0.001 and 1e-3 are one value; 0.0001 and 0.001 are two.
    assert trial_name("q", 1, 1, 0, 0.001) == trial_name("q", 1, 1, 0, 1e-3)
    assert trial_name("q", 1, 1, 0, 0.0001) != trial_name("q", 1, 1, 0, 0.001)


def test_editing_trainer_nodes_renames_no_trial(quickstart_doc: dict[str, Any]) -> None:
    """The topology does not change a trial's result (the batch is global), so it is not
    in the name: `7b-chinchilla` used to be renamed (hashed) as soon as nodes > 1."""
    for study in ("7b-chinchilla", "quickstart", "x" * 50, "9" * 63, "a" * 40 + "-b"):
        names = []
        for nodes in (1, 2, 16, 32):
            doc = {**quickstart_doc, "metadata": {"name": study},
                   "spec": {**quickstart_doc["spec"], "trainer": {"nodes": nodes}}}  # fmt: skip
            spec = parse_study(doc).spec
            names.append([t.name for t in plan_trials(study, spec)])
        assert all(n == names[0] for n in names), study
        for name in names[0]:
            # fit for the pods' hostnames <name>-<index> and the Service of that name
            assert len(f"{name}-127") <= 63 and name[0].isalpha() and DNS_LABEL.match(name)
    # study names that already allowed that keep the names they had
    assert trial_name("quickstart", 100, 4, 0) == "quickstart-d100-m4-s0"


def test_a_sweep_is_rejected_with_an_adaptive_design_or_repeated_values(
    quickstart_doc: dict[str, Any],
) -> None:
    from scalingstudy.spec import SpecError

    for sweep, design, fragment in (
        ({"values": [0.1, 0.1]}, {}, "values must not repeat"),
        ({"values": [0.1]}, {}, "spec.learningRates.values"),
        ({"values": [0.1, 0.2]}, {"strategy": "adaptive"}, "needs design.strategy: grid"),
    ):
        doc = {**quickstart_doc, "spec": {**quickstart_doc["spec"], "learningRates": sweep,
                                          "design": design}}  # fmt: skip
        try:
            parse_study(doc)
        except SpecError as exc:
            assert fragment in str(exc), exc
        else:
            raise AssertionError(f"accepted {sweep} {design}")
