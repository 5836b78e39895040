"""Validation problems as a user can act on them: the field in the file's spelling, the
file's line, what is allowed in words and the nearest valid name.

Pydantic's own texts describe its machinery (``String should match pattern '^[a-z0-9]...'``,
``Extra inputs are not permitted``); a user needs what to type instead. Everything here is
pure: it turns a pydantic error (and, for a file, its text) into one line per problem.
"""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

from scalingstudy.spec.base import BUILTIN_TASKS, DNS_LABEL, DNS_SUBDOMAIN, ENV_NAME

#: Patterns of the spec, said in words. Kubernetes names are DNS labels (or subdomains).
_LABEL_WORDS = (
    "may hold only lowercase letters, digits and '-', and must start and end with a "
    "letter or digit (Kubernetes' DNS-label pattern, at most 63 characters)"
)
PATTERN_WORDS: dict[str, str] = {
    DNS_LABEL: _LABEL_WORDS,
    DNS_SUBDOMAIN: (
        "may hold only lowercase letters, digits, '-' and '.', and each part between dots "
        "must start and end with a letter or digit (Kubernetes' DNS-subdomain pattern)"
    ),
    r"^[a-z_][a-z0-9_]*$": (
        "may hold only lowercase letters, digits and '_', and must not start with a digit "
        "(the pattern of a metric key)"
    ),
    ENV_NAME: (
        "may hold only letters, digits, '-', '.' and '_', and must not start with a digit "
        "(the pattern of an environment variable name)"
    ),
}


@dataclass(frozen=True)
class Located:
    """Where a problem is: the field path in the file's spelling and the line (if known)."""

    path: tuple[str | int, ...]
    line: int | None = None


def clean_loc(loc: Iterable[int | str]) -> tuple[str | int, ...]:
    """A pydantic location without the union branch labels it inserts (``int``,
    ``function-after[...]``): only the keys and indexes of the document."""
    return tuple(
        part
        for part in loc
        if isinstance(part, int) or (part not in {"int", "str", "float"} and "[" not in part)
    )


def dotted(path: tuple[str | int, ...], prefix: str = "") -> str:
    """``spec.trainer.env[0].name``: a path as the docs and ``kubectl explain`` spell it."""
    out = prefix
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "study"


# --------------------------------------------------------------------------- names


def _squashed(name: str) -> str:
    return re.sub(r"[-_\s]", "", name).lower()


def nearest(word: str, choices: Iterable[str]) -> str | None:
    """The valid name a typo most likely meant: the same name up to case, '-' and '_'
    (``learning_rate`` -> ``learningRate``), else the closest by difflib; None if nothing
    is close."""
    options = sorted(set(choices))
    for choice in options:
        if _squashed(choice) == _squashed(word):
            return choice
    by_squashed = {_squashed(c): c for c in options}
    close = difflib.get_close_matches(_squashed(word), list(by_squashed), n=1, cutoff=0.6)
    return by_squashed[close[0]] if close else None


def as_dns_label(value: str) -> str:
    """The DNS label closest to ``value``: lowercase, camelCase words and the runs of
    other characters turned into '-', no '-' at either end, at most 63 characters."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", value)  # MyStudy -> My-Study
    label = re.sub(r"[^a-z0-9]+", "-", words.lower()).strip("-")[:63].rstrip("-")
    return label or "my-study"


def _pattern_problem(value: Any, pattern: str, path: tuple[str | int, ...]) -> str | None:
    words = PATTERN_WORDS.get(pattern)
    if words is None or not isinstance(value, str):
        return None
    text = f"{value!r} is not allowed: a name here {words}"
    if pattern != DNS_LABEL:
        return text
    suggestion = as_dns_label(value)
    if path[-2:] == ("task", "name"):
        builtin = nearest(value, BUILTIN_TASKS)
        if builtin is not None:
            return f"{text}; did you mean {builtin!r} (a built-in task)?"
    return f"{text}; for example {suggestion!r}"


# --------------------------------------------------------------------------- model fields


def _branches(tp: Any) -> list[Any]:
    """The types a value of annotation ``tp`` may take (Annotated and unions unwrapped)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _branches(typing.get_args(tp)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [b for arg in typing.get_args(tp) for b in _branches(arg)]
    return [tp]


def _models(tp: Any) -> list[type[BaseModel]]:
    return [b for b in _branches(tp) if isinstance(b, type) and issubclass(b, BaseModel)]


def _field_annotation(model: type[BaseModel], key: str) -> Any | None:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info.annotation
    return None


def _type_at(root: type[BaseModel], path: tuple[str | int, ...]) -> Any | None:
    """The annotation of the value at ``path`` in a document of model ``root``; None
    where the path leaves the models (a free-form mapping, an unknown key)."""
    tp: Any = root
    for part in path:
        if isinstance(part, int):
            items = [b for b in _branches(tp) if typing.get_origin(b) in (list, tuple)]
            if not items:
                return None
            tp = typing.get_args(items[0])[0]
            continue
        found = [a for m in _models(tp) if (a := _field_annotation(m, part)) is not None]
        if not found:
            return None
        tp = found[0]
    return tp


def field_names(root: type[BaseModel], path: tuple[str | int, ...]) -> list[str]:
    """The valid keys of the mapping at ``path`` (camelCase, as in a study file)."""
    tp = _type_at(root, path)
    return [info.alias or name for m in _models(tp) for name, info in m.model_fields.items()]


# --------------------------------------------------------------------------- one error


def describe(error: Any, root: type[BaseModel], prefix: str = "") -> tuple[Located, str]:
    """One pydantic error as (where, what): the message says what is allowed in words and
    names the nearest valid name where there is one."""
    path = clean_loc(error["loc"])
    where = Located(path)
    kind = error["type"]
    message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        return where, _unknown_field(root, path, prefix)
    if kind == "missing":
        return where, "required field is missing"
    if kind == "string_pattern_mismatch":
        said = _pattern_problem(value, str(ctx.get("pattern", "")), path)
        if said is not None:
            return where, said
    shown = "" if isinstance(value, dict | list) or value is None else f" (got {value!r})"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return where, _not_a_mapping(root, path, value)
    if kind in {"literal_error", "enum"} and isinstance(value, str):
        allowed = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        guess = nearest(value, allowed)
        if guess is not None:
            return where, f"{message}{shown}; did you mean {guess!r}?"
    return where, f"{message}{shown}"


def _not_a_mapping(root: type[BaseModel], path: tuple[str | int, ...], value: Any) -> str:
    """A value where a mapping belongs, said in the file's words (not pydantic's "a valid
    dictionary or instance of SizeGrid")."""
    got = "a list" if isinstance(value, list) else f"{value!r}"
    fields = field_names(root, path)
    if not fields:
        return f"expected a mapping, got {got}"
    hint = ""
    if isinstance(value, list) and "values" in fields:
        hint = f": write a list as {{values: {json.dumps(value)}}}"
    return f"expected a mapping with the fields {', '.join(fields)}; got {got}{hint}"


def _unknown_field(root: type[BaseModel], path: tuple[str | int, ...], prefix: str) -> str:
    key = path[-1] if path else ""
    valid = field_names(root, path[:-1])
    if not valid or not isinstance(key, str):
        return "unknown field"
    guess = nearest(key, valid)
    if guess is not None:
        return f"unknown field; did you mean {guess!r}?"
    return f"unknown field; the fields of {dotted(path[:-1], prefix)} are: {', '.join(valid)}"


# --------------------------------------------------------------------------- the file


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """(the node that names ``part``, its value): a mapping's key, or a list item twice."""
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == part:
                return key, value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part], node.value[part]
    return None


def line_of(text: str, path: tuple[str | int, ...], prefix: tuple[str, ...] = ()) -> int | None:
    """The 1-based line in the YAML ``text`` that ``path`` names, or the line of the
    deepest part of it that exists (a missing field: the mapping it belongs in)."""
    try:
        node: yaml.Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in (*prefix, *path):
        found = _child(node, part)
        if found is None:
            break
        named, node = found
        line = named.start_mark.line + 1
    return line


# --------------------------------------------------------------------------- YAML syntax

_YAML_HINTS: tuple[tuple[str, str], ...] = (
    ("'\\t'", "use spaces for indentation: YAML does not allow tabs"),
    (
        "mapping values are not allowed",
        "a value that holds ': ' needs quotes (\"...\"), "
        "or this line is indented deeper than its key",
    ),
    ("could not find expected ':'", "each key needs ': ' (a colon and a space) before its value"),
    (
        "expected <block end>",
        "this line's indentation does not match the lines above: "
        "keys of one mapping (and items of one list) start in the same column",
    ),
    ("unexpected end of stream", "a quote or bracket opened here is never closed"),
    ("expected ',' or ']'", "a '[' list opened here is never closed with ']'"),
    ("expected ',' or '}'", "a '{' mapping opened here is never closed with '}'"),
)


def _caret(line: str, column: int) -> str:
    """A '^' under ``column`` of ``line``, the tabs before it kept so it lines up."""
    lead = "".join(c if c == "\t" else " " for c in line[:column])
    return f"{lead}^"


def yaml_problem(file: str, text: str, exc: yaml.YAMLError) -> str:
    """A YAML syntax error as ``file:line:column: what``, the line as it is in the file
    with a caret under the column, and what to type instead where the mistake is a
    common one."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return f"{file}: not valid YAML: {problem}"
    lines = text.splitlines()
    out = [f"{file}:{mark.line + 1}:{mark.column + 1}: not valid YAML: {problem}"]
    if mark.line < len(lines):
        shown = lines[mark.line]
        number = f"{mark.line + 1:>5} | "
        out += [f"{number}{shown}", f"{' ' * (len(number) - 2)}| {_caret(shown, mark.column)}"]
    context = getattr(exc, "context_mark", None)
    if context is not None and context.line != mark.line:
        out.append(f"  ({getattr(exc, 'context', '')} started at line {context.line + 1})")
    hint = next((h for key, h in _YAML_HINTS if key in problem), None)
    if hint is not None:
        out.append(f"  hint: {hint}")
    return "\n".join(out)


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key given twice in one mapping, as ``kubectl
    apply`` does: silently keeping the last one would run a study other than the one
    the file seems to say (and point errors at the first key's line)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                first = seen[key].start_mark
                raise yaml.constructor.ConstructorError(
                    f"the first {key!r}", first,
                    f"key {key!r} given twice (each key once)", key_node.start_mark,
                )  # fmt: skip
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)
