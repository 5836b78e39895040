"""A new user's mistakes in a study file, as `scalingstudy plan` reports them: the file,
the line, what is allowed in words and what to type instead (issue 39)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from scalingstudy.spec import BUILTIN_TASKS, SpecError, parse_spec
from scalingstudy.spec.problems import as_dns_label, nearest
from tests.conftest import EXAMPLES, run_cli

QUICKSTART = (EXAMPLES / "quickstart.yaml").read_text()


def _study(tmp_path: Path, old: str, new: str) -> Path:
    """The quickstart with one line changed as a user might mistype it."""
    assert old in QUICKSTART, old
    path = tmp_path / "study.yaml"
    path.write_text(QUICKSTART.replace(old, new, 1))
    return path


def _line(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def _errors(path: Path) -> str:
    result = run_cli("plan", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    return result.stderr


def test_tab_names_the_file_shows_the_line_and_says_use_spaces(tmp_path: Path) -> None:
    path = _study(tmp_path, "    epochs: 60", "\tepochs: 60")
    line = _line(path, "epochs")
    err = _errors(path)
    assert f"{path}:{line}:1: not valid YAML" in err
    assert f"{line:>5} | \tepochs: 60\n" in err  # as in the file, on a line of its own
    assert "use spaces for indentation" in err
    assert "<unicode string>" not in err


def test_tab_after_spaces_puts_the_caret_under_it(tmp_path: Path) -> None:
    path = _study(tmp_path, "    minSteps: 800", "  \tminSteps: 800")
    err = _errors(path)
    shown, caret = err.splitlines()[1:3]
    assert shown.endswith("  \tminSteps: 800")
    assert caret.index("^") == shown.index("\t") and "use spaces" in err


def test_capitals_in_the_name_say_what_is_allowed_and_what_to_type(tmp_path: Path) -> None:
    path = _study(tmp_path, "name: quickstart", "name: MyStudy")
    err = _errors(path)
    assert f"{path}:{_line(path, 'MyStudy')}: metadata.name: 'MyStudy' is not allowed" in err
    assert "only lowercase letters, digits and '-'" in err
    assert "start and end with a letter or digit" in err
    assert "'my-study'" in err
    assert "^[a-z0-9]" not in err  # no regex


def test_underscore_task_suggests_the_builtin_task(tmp_path: Path) -> None:
    path = _study(tmp_path, "name: teacher-student", "name: teacher_student")
    err = _errors(path)
    assert "spec.task.name: 'teacher_student' is not allowed" in err
    assert "did you mean 'teacher-student' (a built-in task)?" in err
    assert "^[a-z0-9]" not in err


def test_field_typo_suggests_the_field(tmp_path: Path) -> None:
    path = _study(tmp_path, "epochs: 60", "epoch: 60")
    err = _errors(path)
    line = _line(path, "epoch:")
    assert f"{path}:{line}: spec.training.epoch: unknown field; did you mean 'epochs'?" in err


def test_field_in_other_case_suggests_the_camel_case_one(tmp_path: Path) -> None:
    err = _errors(_study(tmp_path, "batchSize: 32", "batchsize: 32"))
    assert "spec.training.batchsize: unknown field; did you mean 'batchSize'?" in err


def test_unknown_field_far_from_any_lists_the_fields(tmp_path: Path) -> None:
    err = _errors(_study(tmp_path, "seeds: 1", "seeds: 1\n  zzz: 1"))
    assert "spec.zzz: unknown field; the fields of spec are: task, trainer, dataSizes" in err


def test_misspelt_form_suggests_the_form(tmp_path: Path) -> None:
    err = _errors(_study(tmp_path, "fit: {confidence", "fit: {form: power_law, confidence"))
    assert "spec.fit.form:" in err and "(got 'power_law'); did you mean 'power-law'?" in err


def test_a_missing_field_names_the_line_of_its_mapping(tmp_path: Path) -> None:
    path = _study(tmp_path, "  dataSizes: {min: 100, max: 6400, factor: 2}\n", "")
    err = _errors(path)
    assert f"{path}:{_line(path, 'spec:')}: spec.dataSizes: required field is missing" in err


def test_the_operator_gets_the_same_words_without_a_file(quickstart_doc: dict[str, Any]) -> None:
    """parse_spec (the operator's path) has no file: no line, the same suggestion."""
    spec = copy.deepcopy(quickstart_doc["spec"])
    spec["training"]["epoch"] = spec["training"].pop("epochs")
    with pytest.raises(SpecError) as raised:
        parse_spec(spec)
    assert raised.value.problems == ["spec.training.epoch: unknown field; did you mean 'epochs'?"]


@pytest.mark.parametrize(
    ("word", "choices", "expected"),
    [
        ("learning_rate", ["learningRate", "evalEvery"], "learningRate"),
        ("Epochs", ["epochs", "minSteps"], "epochs"),
        ("teacher-studnet", BUILTIN_TASKS, "teacher-student"),
        ("charlm", BUILTIN_TASKS, "char-lm"),
        ("resnet", BUILTIN_TASKS, None),
    ],
)
def test_nearest(word: str, choices: tuple[str, ...], expected: str | None) -> None:
    assert nearest(word, choices) == expected


@pytest.mark.parametrize(
    ("name", "label"),
    [("MyStudy", "my-study"), ("my_study", "my-study"), ("--A.b--", "a-b"), ("x" * 70, "x" * 63)],
)
def test_as_dns_label(name: str, label: str) -> None:
    assert as_dns_label(name) == label


def test_builtin_tasks_are_the_trainers() -> None:
    """The spec names the built-in tasks without importing the trainer: the same list."""
    from scalingstudy_trainer.tasks import task_names

    assert sorted(BUILTIN_TASKS) == sorted(task_names())


def test_a_key_given_twice_is_refused_at_its_second_line(tmp_path: Path) -> None:
    """As kubectl apply refuses it: keeping the last value silently ran another study
    than the file seemed to say (review of issue 39)."""
    path = _study(tmp_path, "  seeds: 1", "  seeds: 1\n  seeds: 2")
    err = _errors(path)
    second = _line(path, "seeds: 2")
    assert f"{path}:{second}:3: not valid YAML: key 'seeds' given twice" in err
    assert f"started at line {second - 1}" in err


def test_a_misspelt_task_suggests_the_built_in_one(tmp_path: Path) -> None:
    path = _study(tmp_path, "name: teacher-student", "name: teacher-studnet")
    err = _errors(path)
    assert "unknown task 'teacher-studnet'; did you mean 'teacher-student'?" in err


def test_a_list_where_a_grid_belongs_names_the_fields_and_how_to_write_it(
    tmp_path: Path,
) -> None:
    path = _study(tmp_path, "dataSizes: {min: 100, max: 6400, factor: 2}", "dataSizes: [100, 200]")
    err = _errors(path)
    assert f"{path}:{_line(path, 'dataSizes')}: spec.dataSizes: expected a mapping" in err
    assert "min, max, factor, values" in err and "{values: [100, 200]}" in err
    assert "SizeGrid" not in err and "dictionary" not in err


def test_a_mistyped_task_option_names_the_file_line_and_the_tasks_options(tmp_path: Path) -> None:
    path = _study(tmp_path, "studentDepth: 1}", "studentdepth: 1}")
    err = _errors(path)
    assert f"{path}:{_line(path, 'studentdepth')}: spec.task:" in err
    assert "did you mean 'studentDepth'?" in err and "teacherWidth" in err
    assert "Extra inputs" not in err
