"""Every `scalingstudy` option says what it does and, where it takes a value, its default
(issue 39): a newcomer reads `--help`, not the source. The test renders each subcommand's
real --help and checks each option's own text in it; and `operator` without any cluster
configuration refuses in one line instead of the Kubernetes client's traceback."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from scalingstudy.cli import build_parser, main


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


SUBCOMMANDS = sorted(_subcommands())


def _help_of(action: argparse.Action, parser: argparse.ArgumentParser) -> str:
    """The action's help as --help prints it, whitespace collapsed."""
    text = parser._get_formatter()._expand_help(action) if action.help else ""
    return " ".join(text.split())


def _takes_value(action: argparse.Action) -> bool:
    return bool(action.option_strings) and action.nargs != 0


def test_every_subcommand_is_checked() -> None:
    assert {"run", "plan", "fit", "plot", "get", "operator"} <= set(SUBCOMMANDS)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_option_has_a_description_and_its_default(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    printed = " ".join(capsys.readouterr().out.split())
    parser = _subcommands()[name]
    problems = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        label = "/".join(action.option_strings) or action.dest
        text = _help_of(action, parser)
        if not text:
            problems.append(f"{name} {label}: no description")
            continue
        # argparse wraps long words (a hyphenated flag, a list) at any character.
        if text.replace(" ", "") not in printed.replace(" ", ""):
            problems.append(f"{name} {label}: its help is not in --help's output")
        # An option that takes a value either has a default it names or must be given.
        if _takes_value(action) and not re.search(r"\b(default|required)\b", text):
            problems.append(f"{name} {label}: no default in {text!r}")
        # A default argparse holds must be the one the text names (not a stale figure).
        if (
            _takes_value(action)
            and isinstance(action.default, int | float)
            and not isinstance(action.default, bool)
            and f"default: {action.default}" not in text
        ):
            problems.append(f"{name} {label}: default {action.default} not shown in {text!r}")
    assert not problems, "\n".join(problems)


def test_operator_without_cluster_configuration_says_where_it_looked(
    tmp_path: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No kubeconfig and no service account (this machine is not a pod): exit 2 with one
    line naming both places, before anything starts."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    missing = f"{tmp_path}/no-kubeconfig"
    monkeypatch.setenv("KUBECONFIG", missing)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(SystemExit) as exit_:
        main(["operator", "--all-namespaces"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "no cluster configuration" in err
    assert "KUBERNETES_SERVICE_HOST" in err
    assert f"kubeconfig at {missing}" in err
    assert "--kubeconfig" in err


@pytest.mark.parametrize("command", [["operator", "--all-namespaces"], ["get", "quickstart"]])
def test_a_malformed_kubeconfig_is_one_line_not_a_traceback(
    command: list[str],
    tmp_path: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A kubeconfig that is not YAML (a truncated file) used to end `get` and the operator
    in the YAML parser's traceback (review of issue 40)."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    broken = f"{tmp_path}/kubeconfig"
    Path(broken).write_text("apiVersion: v1\nclusters: [\n")
    monkeypatch.setenv("KUBECONFIG", broken)
    with pytest.raises(SystemExit) as exit_:
        main(command)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert f"no usable kubeconfig at {broken}" in err and "Traceback" not in err
