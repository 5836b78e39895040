"""Reading the fit CSV (DESIGN §5): every bad cell becomes one line ``FILE:LINE: column X:
...``, with LINE the line of the file (the header is line 1), so an editor jumps to it.

Strict on purpose: a row with more fields than the header, a repeated column name, a
decimal comma or a thousands separator would otherwise be read as some other number
without a word (``4000,1,08`` is loss 1 in a two-column file).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from scalingstudy.fitting import Point
from scalingstudy.fitting.points import best_rate_per_cell

if TYPE_CHECKING:
    from scalingstudy.status import TrialRecord

REQUIRED = ("data_size", "loss")
OPTIONAL_NUMBERS = ("model_size", "parameters", "compute", "learning_rate")
MAX_BYTES = 256 * 1024 * 1024
#: A cell like ``1,08`` or ``4,000`` (quoted, so it reached one column intact).
_COMMA_NUMBER = re.compile(r"^[+-]?\d+(,\d+)+(\.\d*)?$")


class PointsFileError(ValueError):
    """A CSV the fit cannot use; str() is the one line for stderr."""


def _parse_number(text: str, where: str, column: str, *, required: bool) -> float | None:
    cell = text.strip()
    if not cell:
        if required:
            raise PointsFileError(f"{where}: column {column}: empty (a number is required)")
        return None
    if _COMMA_NUMBER.match(cell):
        raise PointsFileError(
            f"{where}: column {column}: {cell!r} has a comma: write numbers with a decimal "
            "point and no thousands separator (e.g. 1.08, 4000)"
        )
    try:
        value = float(cell)
    except ValueError:
        raise PointsFileError(f"{where}: column {column}: {cell[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise PointsFileError(f"{where}: column {column}: {cell!r} is not finite")
    if value <= 0:
        raise PointsFileError(f"{where}: column {column}: {cell!r} must be > 0")
    return value


def _header(reader: Iterator[list[str]], source: str) -> dict[str, int]:
    """Column positions of the columns the fit reads; refuses repeated names."""
    header = next(reader, None)
    if header is None or not any(h.strip() for h in header):
        raise PointsFileError(f"{source}: empty file (expected a header with data_size,loss)")
    names = [h.strip().lower() for h in header]
    repeated = sorted({n for n in names if n and names.count(n) > 1})
    if repeated:
        raise PointsFileError(
            f"{source}:1: column {repeated[0]} appears {names.count(repeated[0])} times in the "
            "header (each column once)"
        )
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise PointsFileError(
            f"{source}:1: header lacks column(s) {', '.join(missing)} (found: {', '.join(names)})"
        )
    index = {
        name: names.index(name) for name in (*REQUIRED, *OPTIONAL_NUMBERS, "seed") if name in names
    }
    index[""] = len(names)  # the header's width
    return index


def _point(row: list[str], index: dict[str, int], where: str) -> tuple[Point, float | None]:
    """One row's point, and its learning rate (a run's results.csv of a sweep)."""
    width = index[""]
    if len(row) != width:
        hint = (
            " (a decimal comma or a thousands separator splits a number in two)"
            if len(row) > width
            else ""
        )
        raise PointsFileError(f"{where}: {len(row)} fields, the header has {width}{hint}")

    def cell(column: str) -> str:
        return row[index[column]] if column in index else ""

    def value(column: str, required: bool = False) -> float | None:
        return _parse_number(cell(column), where, column, required=required)

    data_size, loss = value("data_size", True), value("loss", True)
    assert data_size is not None and loss is not None
    point = Point(
        data_size=data_size,
        loss=loss,
        model_size=value("model_size"),
        parameters=value("parameters"),
        seed=cell("seed").strip() or None,
        compute=value("compute"),
    )
    return point, value("learning_rate")


def _best_rates(points: list[Point], rates: list[float | None]) -> list[Point]:
    """With a learning_rate column (a sweep's results.csv), the rows of the best rate per
    (data size, model size) only, chosen as a run chooses it (`best_rate_per_cell`), so
    `fit results.csv` fits what the run fitted."""
    if all(r is None for r in rates):
        return points
    rows = [((p.data_size, p.model_size), r, p.loss) for p, r in zip(points, rates, strict=True)]
    best = best_rate_per_cell(rows)
    return [p for p, (cell, r, _) in zip(points, rows, strict=True) if best.get(cell, r) == r]


def parse_points(text: str, source: str = "input") -> list[Point]:
    """Parse CSV text; errors name ``source:LINE`` (the header is line 1)."""
    if "\x00" in text:
        raise PointsFileError(f"{source}: binary data (NUL bytes), not a CSV file")
    reader = csv.reader(io.StringIO(text))
    points: list[Point] = []
    rates: list[float | None] = []
    try:
        index = _header(reader, source)
        start = reader.line_num + 1
        for row in reader:
            if any(cell.strip() for cell in row):
                # line_num is the last line read: the row's first line is where it started.
                point, rate = _point(row, index, f"{source}:{start}")
                points.append(point)
                rates.append(rate)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise PointsFileError(f"{source}:{reader.line_num}: not a readable CSV ({exc})") from None
    if not points:
        raise PointsFileError(f"{source}: no data rows after the header")
    points = _best_rates(points, rates)
    distinct = {p.data_size for p in points}
    if len(distinct) < 3:
        raise PointsFileError(
            f"{source}: column data_size has {len(distinct)} distinct value(s); "
            "a learning curve needs at least 3"
        )
    return points


def read_points(path: str | Path) -> list[Point]:
    p = Path(path)
    return parse_points(_read_text(p), str(p))


def _read_text(p: Path) -> str:
    try:
        if p.is_dir():
            raise PointsFileError(f"{p}: is a directory, not a CSV file")
        if p.stat().st_size > MAX_BYTES:
            raise PointsFileError(f"{p}: larger than {MAX_BYTES // 2**20} MiB")
        raw = p.read_bytes()
    except OSError as exc:
        raise PointsFileError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PointsFileError(f"{p}: not UTF-8 text (binary file?)") from None


def read_records(path: str | Path) -> list[TrialRecord]:
    """A run's results.csv as the records it was written from (`scalingstudy fit
    --study`): the fit then takes the same path as the run's own (`results.points_of`)."""
    from pydantic import ValidationError

    from scalingstudy.status import TrialRecord

    text = _read_text(Path(path))
    reader = csv.DictReader(io.StringIO(text))
    if "trial" not in (reader.fieldnames or []):
        raise PointsFileError(f"{path}:1: no trial column: --study reads a run's results.csv")
    records = []
    for line, row in enumerate(reader, start=2):
        values = {k: v for k, v in row.items() if k and v not in ("", None)}
        try:
            records.append(TrialRecord.model_validate({**values, "status": "Succeeded"}))
        except ValidationError as exc:
            first = exc.errors()[0]
            column = ".".join(str(part) for part in first["loc"])
            raise PointsFileError(f"{path}:{line}: column {column}: {first['msg']}") from None
    return records
