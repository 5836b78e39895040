"""Reading the fit CSV (DESIGN §5): every bad cell becomes one line naming row and column."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from scalingstudy.fitting import Point

REQUIRED = ("data_size", "loss")
OPTIONAL_NUMBERS = ("model_size", "parameters")
MAX_BYTES = 256 * 1024 * 1024


class PointsFileError(ValueError):
    """A CSV the fit cannot use; str() is the one line for stderr."""


def _parse_number(text: str, row: int, column: str, *, required: bool) -> float | None:
    cell = text.strip()
    if not cell:
        if required:
            raise PointsFileError(f"row {row}, column {column}: empty (a number is required)")
        return None
    try:
        value = float(cell)
    except ValueError:
        raise PointsFileError(
            f"row {row}, column {column}: {cell[:40]!r} is not a number"
        ) from None
    if not math.isfinite(value):
        raise PointsFileError(f"row {row}, column {column}: {cell!r} is not finite")
    if value <= 0:
        raise PointsFileError(f"row {row}, column {column}: {cell!r} must be > 0")
    return value


def parse_points(text: str, source: str = "input") -> list[Point]:
    """Parse CSV text; rows are numbered from 1 after the header."""
    if "\x00" in text:
        raise PointsFileError(f"{source}: binary data (NUL bytes), not a CSV file")
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise PointsFileError(f"{source}: empty file (expected a header with data_size,loss)")
        names = [h.strip().lower() for h in header]
        missing = [c for c in REQUIRED if c not in names]
        if missing:
            raise PointsFileError(
                f"{source}: header lacks column(s) {', '.join(missing)} (found: {', '.join(names)})"
            )
        index = {
            name: names.index(name)
            for name in (*REQUIRED, *OPTIONAL_NUMBERS, "seed")
            if name in names
        }
        points: list[Point] = []
        for row_number, row in enumerate(reader, start=1):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) < len(names):
                raise PointsFileError(
                    f"row {row_number}: {len(row)} columns, the header has {len(names)}"
                )

            def get(column: str, row: list[str] = row) -> str:
                return row[index[column]] if column in index else ""

            data_size = _parse_number(get("data_size"), row_number, "data_size", required=True)
            loss = _parse_number(get("loss"), row_number, "loss", required=True)
            assert data_size is not None and loss is not None
            points.append(
                Point(
                    data_size=data_size,
                    loss=loss,
                    model_size=_parse_number(
                        get("model_size"), row_number, "model_size", required=False
                    ),
                    parameters=_parse_number(
                        get("parameters"), row_number, "parameters", required=False
                    ),
                    seed=get("seed").strip() or None,
                )
            )
    except csv.Error as exc:
        raise PointsFileError(f"{source}: not a readable CSV file ({exc})") from None
    if not points:
        raise PointsFileError(f"{source}: no data rows after the header")
    distinct = {p.data_size for p in points}
    if len(distinct) < 3:
        raise PointsFileError(
            f"{source}: column data_size has {len(distinct)} distinct value(s); "
            "a learning curve needs at least 3"
        )
    return points


def read_points(path: str | Path) -> list[Point]:
    p = Path(path)
    try:
        if p.is_dir():
            raise PointsFileError(f"{p}: is a directory, not a CSV file")
        if p.stat().st_size > MAX_BYTES:
            raise PointsFileError(f"{p}: larger than {MAX_BYTES // 2**20} MiB")
        raw = p.read_bytes()
    except OSError as exc:
        raise PointsFileError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PointsFileError(f"{p}: not UTF-8 text (binary file?)") from None
    return parse_points(text, str(p))
