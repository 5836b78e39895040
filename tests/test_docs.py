"""Docs that cannot drift silently (issue 39): every relative link in README.md and
docs/*.md names a file (and heading) inside the repository, every example study plans
cleanly, and what an example's comments point to exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, ROOT, run_cli

#: Docs whose links are known broken, until their owners fix them: a strict xfail, so
#: the fix shows (as an unexpected pass) and the entry is then removed.
KNOWN_BROKEN: dict[str, str] = {}
DOCS = [
    pytest.param(
        doc,
        id=str(doc.relative_to(ROOT)),
        marks=[pytest.mark.xfail(strict=True, reason=KNOWN_BROKEN[name])]
        if (name := str(doc.relative_to(ROOT))) in KNOWN_BROKEN
        else [],
    )
    for doc in sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
]
STUDIES = sorted([*EXAMPLES.glob("*.yaml"), *EXAMPLES.glob("*/study.yaml")])

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")
_INLINE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, ...


def links(markdown: str) -> list[str]:
    """The link targets of a Markdown text, outside code blocks and code spans."""
    text = _CODE.sub("", _FENCE.sub("", markdown))
    return _INLINE.findall(text) + _REFERENCE.findall(text)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation dropped, spaces as '-'."""
    text = re.sub(r"[`*_~]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading's anchor, the repeats numbered as GitHub does (-1, -2, ...)."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", _FENCE.sub("", markdown), re.M):
        base = slug(heading)
        count = seen.get(base, 0)
        out.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return out


def link_problem(doc: Path, target: str) -> str | None:
    """Why ``target`` (a link in ``doc``) does not resolve inside the repository; None
    when it does (or is external)."""
    if _EXTERNAL.match(target):
        return None
    path_part, _, fragment = target.partition("#")
    resolved = (doc.parent / path_part).resolve() if path_part else doc
    if not resolved.is_relative_to(ROOT):
        return f"{target}: outside the repository ({resolved})"
    if not resolved.exists():
        return f"{target}: no such file ({resolved.relative_to(ROOT)})"
    headings = anchors(resolved.read_text(encoding="utf-8")) if resolved.suffix == ".md" else None
    if fragment and headings is not None and fragment not in headings:
        return f"{target}: no heading #{fragment} in {resolved.relative_to(ROOT)}"
    return None


def upward_paths(markdown: str) -> list[str]:
    """Paths in code spans that climb out of their folder (``../x``): a doc read in a
    clone must not send the reader beside it."""
    spans = _CODE.findall(_FENCE.sub("", markdown))
    return [s.strip("`") for s in spans if s.strip("`").startswith("../")]


@pytest.mark.parametrize("doc", DOCS)
def test_every_relative_link_resolves_inside_the_repository(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    found = links(text) + upward_paths(text)
    problems = [p for t in found if (p := link_problem(doc, t)) is not None]
    assert not problems, f"{doc.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_the_link_check_catches_what_it_should(tmp_path: Path) -> None:
    """The checker itself: a broken file, a missing heading and a path outside fail;
    links in code and external ones are not links to check."""
    doc = ROOT / "docs" / "fitting.md"
    assert link_problem(doc, "../README.md#two-commands") is None
    assert link_problem(doc, "adaptive.md") is None
    assert "no such file" in (link_problem(doc, "nope.md") or "")
    assert "no heading" in (link_problem(doc, "../README.md#adaptive-studies") or "")
    assert "outside the repository" in (link_problem(doc, "../../shared/data/x.csv") or "")
    assert link_problem(doc, "https://example.org/x") is None
    text = '[a](a.md) `[b](b.md)`\n```\n[c](c.md)\n```\n[d]: d.md\n![e](e.png "t")'
    assert links(text) == ["a.md", "e.png", "d.md"]
    assert upward_paths("see `../shared/x` and `docs/a.md`") == ["../shared/x"]
    assert slug("On a GPU: `scripts/gpu-check`") == "on-a-gpu-scriptsgpu-check"
    assert anchors("# A\n## A\n") == {"a", "a-1"}


@pytest.mark.slow(60)
@pytest.mark.parametrize("study", STUDIES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_every_example_study_plans_cleanly(study: Path, tmp_path: Path) -> None:
    """`scalingstudy plan` on each example, from the repository's root as its own comment
    says and from another directory (a study's relative paths are read from its folder):
    exit 0 and nothing else on stderr (no error, warning or note on a path)."""
    for cwd, path in ((ROOT, str(study.relative_to(ROOT))), (tmp_path, str(study))):
        result = run_cli("plan", path, "--out", str(tmp_path / "o"), cwd=cwd)
        assert result.returncode == 0, result.stderr
        # Only the documented note on a bare `python` may be said (README: "it says so").
        said = [line for line in result.stderr.splitlines() if "(the study's Python)" not in line]
        assert said == [], result.stderr
        assert "nothing was run" in result.stdout


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_what_an_examples_comments_point_to_exists(study: Path) -> None:
    """A file an example's comments name exists; a README section it names is a heading
    of the README (adaptive.yaml pointed to a section that had moved to docs/)."""
    comments = "\n".join(
        line.split("#", 1)[1] for line in study.read_text().splitlines() if "#" in line
    )
    files = re.findall(r"(?<![\w/.-])((?:docs|examples|scripts)/[\w./-]*\w)", comments)
    missing = [f for f in files if not (ROOT / f).exists()]
    readme = anchors((ROOT / "README.md").read_text(encoding="utf-8"))
    sections = re.findall(r'README "([^"]+)"', comments)
    missing += [f'README "{s}"' for s in sections if slug(s) not in readme]
    assert not missing, f"{study.relative_to(ROOT)} points to {missing}"
