"""`scalingstudy fit`: the JSON contract, and exit 2 with one line for every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli


def _write(tmp_path: Path, text: str | bytes, name: str = "points.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _good_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    lines = ["data_size,model_size,seed,loss,notes"]
    for m in np.geomspace(1000, 128000, 8):
        for size in (8, 32, 128):
            for seed in (0, 1):
                best = 8 * (m / 1000) ** 0.6
                loss = (
                    (3 * m**-0.35 + 0.02)
                    * (1 + 0.1 * abs(np.log(size / best)))
                    * np.exp(0.01 * rng.standard_normal())
                )
                lines.append(f"{int(m)},{size},{seed},{loss:.6f},x")
    return _write(tmp_path, "\n".join(lines) + "\n")


def test_json_output_follows_the_contract(tmp_path: Path) -> None:
    out = run_cli(
        "fit",
        str(_good_csv(tmp_path)),
        "--predict-at",
        "1e6,2e6",
        "--target-loss",
        "0.05",
        "--json",
        "--bootstrap",
        "100",
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    lc = report["learning_curve"]
    for key in (
        "form",
        "alpha",
        "beta",
        "gamma",
        "beta_interval",
        "r2_log",
        "n_points",
        "power_law_range",
    ):
        assert key in lc
    assert lc["n_points"] == 8
    assert lc["beta"] < 0 and lc["beta_interval"][1] < 0
    assert set(report["model_size"]) >= {"alpha", "beta", "beta_interval"}
    assert [p["data_size"] for p in report["predictions"]] == [1000000, 2000000]
    assert all(p["interval"][0] <= p["loss"] <= p["interval"][1] for p in report["predictions"])
    assert report["data_for_target"]["target_loss"] == 0.05
    assert len(report["best"]) == 8
    assert {"data_size", "model_size", "loss"} <= set(report["best"][0])


def test_without_model_sizes_model_size_is_null(tmp_path: Path) -> None:
    path = _write(tmp_path, "data_size,loss\n100,1.0\n200,0.8\n400,0.64\n800,0.51\n")
    out = run_cli("fit", str(path), "--json", "--bootstrap", "20")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["model_size"] is None
    assert "data_for_target" not in report


def test_table_output(tmp_path: Path) -> None:
    out = run_cli("fit", str(_good_csv(tmp_path)), "--bootstrap", "50")
    assert out.returncode == 0, out.stderr
    assert "beta_g" in out.stdout and "beta_p" in out.stdout


BAD = [
    ("missing file", None, "cannot read"),
    ("empty", "", "empty file"),
    ("header only", "data_size,loss\n", "no data rows"),
    ("missing column", "data_size,error\n1,2\n", "lacks column(s) loss"),
    ("non-numeric", "data_size,loss\n100,1\n200,abc\n400,1\n", "points.csv:3: column loss"),
    ("nan", "data_size,loss\n100,1\n200,nan\n400,1\n", "points.csv:3: column loss"),
    ("inf", "data_size,loss\n100,inf\n200,1\n400,1\n", "points.csv:2: column loss"),
    ("zero size", "data_size,loss\n0,1\n200,1\n400,1\n", "points.csv:2: column data_size"),
    ("negative loss", "data_size,loss\n100,1\n200,-1\n400,1\n", "points.csv:3: column loss"),
    (
        "negative model size",
        "data_size,loss,model_size\n100,1,4\n200,1,-4\n400,1,4\n",
        "points.csv:3: column model_size",
    ),
    ("empty required cell", "data_size,loss\n100,1\n200,\n400,1\n", "points.csv:3: column loss"),
    ("short row", "data_size,loss,model_size\n100,1,2\n200\n", "points.csv:3: 1 fields"),
    (
        "decimal comma splits a row",
        "data_size,loss\n1000,1.2\n2000,1.1\n4000,1,08\n",
        "points.csv:4: 3 fields, the header has 2 (a decimal comma",
    ),
    (
        "quoted decimal comma",
        'data_size,loss\n1000,1.2\n2000,1.1\n4000,"1,08"\n',
        "points.csv:4: column loss: '1,08' has a comma",
    ),
    (
        "thousands separator",
        'data_size,loss\n1000,1.2\n2000,1.1\n"4,000",1.0\n',
        "points.csv:4: column data_size: '4,000' has a comma",
    ),
    ("duplicate column", "data_size,loss,loss\n1,2,3\n", "points.csv:1: column loss appears 2"),
    (
        "line counts a quoted line break",
        'data_size,loss,seed\n1000,1.2,"a\nb"\n2000,x,1\n',
        "points.csv:4: column loss",
    ),
    ("two sizes", "data_size,loss\n100,1\n200,0.9\n200,0.8\n", "3"),
    ("binary", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "binary"),
    ("latin-1", "data_size,loss\n100,1\xe9\n".encode("latin-1"), "not UTF-8"),
]


@pytest.mark.parametrize(("label", "content", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_exits_2_with_one_line(
    tmp_path: Path, label: str, content: str | bytes | None, fragment: str
) -> None:
    path = tmp_path / "missing.csv" if content is None else _write(tmp_path, content)
    out = run_cli("fit", str(path), "--json")
    assert out.returncode == 2, (label, out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in out.stderr
    assert out.stdout == ""


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--predict-at", "abc"], "--predict-at"),
        (["--predict-at", "-5"], "--predict-at"),
        (["--target-loss", "0"], "--target-loss"),
        (["--confidence", "1.5"], "--confidence"),
    ],
)
def test_bad_flags_exit_2_with_one_line(tmp_path: Path, flags: list[str], fragment: str) -> None:
    out = run_cli("fit", str(_good_csv(tmp_path)), *flags)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], lines


def test_directory_is_bad_input(tmp_path: Path) -> None:
    out = run_cli("fit", str(tmp_path))
    assert out.returncode == 2 and "directory" in out.stderr


def test_plot_from_results_csv_and_from_fit_json(tmp_path: Path) -> None:
    csv_path = _good_csv(tmp_path)
    png, svg = tmp_path / "curve.png", tmp_path / "curve.svg"
    out = run_cli("plot", str(csv_path), "-o", str(png), "--predict-at", "1000000")
    assert out.returncode == 0, out.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fit = run_cli("fit", str(csv_path), "--json", "--predict-at", "1000000")
    band = json.loads(fit.stdout)["learning_curve"]["band"]
    # The band spans the data and the extrapolation, and holds the fitted curve.
    assert band[-1]["data_size"] == pytest.approx(1000000)
    assert all(b["interval"][0] <= b["loss"] <= b["interval"][1] for b in band)
    fit_json = _write(tmp_path, fit.stdout, "fit.json")
    out = run_cli("plot", str(fit_json), "-o", str(svg))
    assert out.returncode == 0, out.stderr
    assert "<svg" in svg.read_text()[:2000]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["-o", "out.gif"], "must end in .png, .svg or .pdf"),
        (["-o", "out.png", "--bootstrap", "-1"], "--bootstrap must be >= 0"),
    ],
)
def test_plot_bad_arguments_exit_2(tmp_path: Path, args: list[str], fragment: str) -> None:
    out = run_cli(
        "plot",
        str(_good_csv(tmp_path)),
        *[str(tmp_path / a) if a.startswith("out") else a for a in args],
    )
    assert out.returncode == 2 and fragment in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_plot_rejects_a_json_that_is_no_fit(tmp_path: Path) -> None:
    bogus = _write(tmp_path, '{"hello": 1}', "x.json")
    out = run_cli("plot", str(bogus), "-o", str(tmp_path / "x.png"))
    assert out.returncode == 2 and "not a fit report" in out.stderr
