"""The README's quickstart output is what the program prints (issue 39).

scripts/readme-quickstart writes the block from a real run and commits that run's
results.csv under tests/data/quickstart/; here the committed results are refitted with
the current code (`scalingstudy fit ... --study examples/quickstart.yaml`, the run's own
settings) and every fit line of the block must be one the fit prints now. The block's
first line (trial count and time) and its `wrote` lines are the run's, not the fit's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scalingstudy.cli import main

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(
    r"<!-- quickstart-output:begin -->\n```\n(.*?)```\n<!-- quickstart-output:end -->", re.S
)


def readme_block() -> list[str]:
    found = BLOCK.search((ROOT / "README.md").read_text())
    assert found, "README.md has no quickstart-output block"
    return found.group(1).splitlines()


def test_readme_block_is_the_fit_of_the_committed_results(
    capsys: pytest.CaptureFixture[str],
) -> None:
    block = readme_block()
    assert block[0].startswith("Study quickstart: ")
    fit_lines = [line for line in block[1:] if not line.startswith("wrote ")]
    code = main(
        [
            "fit",
            str(ROOT / "tests" / "data" / "quickstart" / "results.csv"),
            "--study",
            str(ROOT / "examples" / "quickstart.yaml"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out.splitlines()
    assert fit_lines == printed, "README's quickstart block is stale: run scripts/readme-quickstart"


def test_readme_block_shows_both_laws_measured() -> None:
    """The quickstart is there to show the method: beta_p bounded, not null."""
    text = "\n".join(readme_block())
    beta_p = re.search(r"beta_p = (-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\]", text)
    assert beta_p, text
    low, point, high = float(beta_p.group(2)), float(beta_p.group(1)), float(beta_p.group(3))
    assert low < point < high
    assert re.search(r"beta_g = -[\d.]+ \[-[\d.]+, -[\d.]+\]", text)


def test_trial_count_in_block_matches_the_committed_results() -> None:
    rows = (ROOT / "tests" / "data" / "quickstart" / "results.csv").read_text().splitlines()
    first = readme_block()[0]
    count = re.match(r"Study quickstart: (\d+)/(\d+) trials succeeded", first)
    assert count and int(count.group(1)) == len(rows) - 1 == int(count.group(2))
