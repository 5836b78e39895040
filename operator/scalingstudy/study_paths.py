"""Relative paths in a study file are read from the study file's folder, as ``kubectl -f``
and compose files read theirs: ``scalingstudy plan /elsewhere/study.yaml`` then finds the
``train.py`` beside it from whatever directory it is run in.

Only ``trainer.command`` is resolved here (its program when written as a path, and the
script a Python interpreter runs): what it names is this machine's file, and it is not
part of the results' digest, so making it absolute never invalidates finished trials.
``task.options`` (a corpus path) is the trainer's to read and is part of the digest: it
is left as written. A path that exists only relative to the current directory (the old
rule) still works, with a note that says what to write instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scalingstudy.spec import ScalingStudy, SpecError

#: Python's options that take the next argument as their value (``python -X dev s.py``).
_PYTHON_VALUE_OPTIONS = frozenset({"-W", "-X", "-Q"})
_RULE = "relative paths in a study file are read from the study file's folder"


@dataclass(frozen=True)
class ResolvedCommand:
    """A study's ``trainer.command`` with its relative paths made absolute where they
    name a file beside the study file; ``problem`` when one names no file anywhere, a
    ``note`` when one was found only in the current directory."""

    command: tuple[str, ...]
    problem: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class LocatedStudy:
    """A loaded study whose paths are this machine's, and what the user should hear."""

    study: ScalingStudy
    notes: tuple[str, ...] = ()


def _is_python(program: str) -> bool:
    name = Path(program).name
    return name.startswith("python") and name.removeprefix("python").strip("0123456789.") == ""


def path_arguments(command: Sequence[str]) -> list[int]:
    """Indexes of the arguments that name files: the program when written as a path
    (``./train.sh``; a bare name is looked up on PATH), and the script a Python
    interpreter runs (none for ``-m`` or ``-c``)."""
    if not command:
        return []
    program = command[0]
    found = [0] if os.sep in program else []
    if not _is_python(program):
        return found
    index = 1
    while index < len(command):
        arg = command[index]
        if arg in ("-m", "-c") or arg == "-":
            return found
        if arg in _PYTHON_VALUE_OPTIONS:
            index += 2
            continue
        if not arg.startswith("-"):
            return [*found, index]
        index += 1
    return found


def resolve_command(command: Sequence[str], study_dir: Path, cwd: Path) -> ResolvedCommand:
    """``command`` with each relative file argument read from ``study_dir``; one found
    only in ``cwd`` is kept as written (with a note), one found in neither is a problem
    that names both folders."""
    parts = list(command)
    study_dir, cwd = study_dir.resolve(), cwd.resolve()
    notes: list[str] = []
    for index in path_arguments(command):
        arg = parts[index]
        if Path(arg).is_absolute():
            continue
        beside = Path(os.path.normpath(study_dir / arg))
        if beside.exists():
            parts[index] = str(beside)
        elif (cwd / arg).exists():
            suggested = os.path.relpath(cwd / arg, study_dir)
            notes.append(
                f"trainer.command: {arg!r} was found in the current directory {cwd}, not "
                f"beside the study file in {study_dir} ({_RULE}): write {suggested!r}"
            )
        else:
            what = "script" if index else "program"
            elsewhere = "" if cwd == study_dir else f", nor in the current directory {cwd}"
            return ResolvedCommand(
                tuple(command),
                problem=f"{what} {arg!r} does not exist in {study_dir} ({_RULE}){elsewhere}",
            )
    return ResolvedCommand(tuple(parts), note="; ".join(notes) or None)


def with_study_paths(
    study: ScalingStudy, study_file: str | Path, cwd: Path | None = None
) -> LocatedStudy:
    """The study as loaded from ``study_file``, the paths of its ``trainer.command`` (and
    ``trainer.args``: ``[python]`` + ``[train.py]`` is one command) made absolute
    (`resolve_command`); raises SpecError (naming the folders looked in) when
    the command names a file that is nowhere."""
    trainer = study.spec.trainer
    command, args = list(trainer.command or []), list(trainer.args or [])
    if not command:
        return LocatedStudy(study)
    resolved = resolve_command([*command, *args], Path(study_file).parent, cwd or Path.cwd())
    if resolved.problem is not None:
        raise SpecError([f"spec.trainer.command {command}: {resolved.problem}"])
    parts = list(resolved.command)
    update = {
        "command": parts[: len(command)],
        "args": parts[len(command) :] if trainer.args is not None else None,
    }
    spec = study.spec.model_copy(update={"trainer": trainer.model_copy(update=update)})
    located = study.model_copy(update={"spec": spec})
    return LocatedStudy(located, (resolved.note,) if resolved.note else ())
