"""Dataset files: one request per row, with its input and output lengths and, optionally, when
it arrives.

Two formats, chosen by the file's extension:

- ``.csv``: a header naming the columns, then one row per request;
- ``.jsonl``: one JSON object per line.

Columns (keys): ``input_tokens`` and ``output_tokens`` (integers >= 1, required) and
``arrival_s`` (seconds from the start of the trace, finite, >= 0 and non-decreasing; either
every row has it or none). Other columns are refused, so that a typo (``output_token``) is
not silently dropped. Every problem is one :class:`~serving.errors.ConfigError` naming the
field ``workload.file``, the file and line, and the rule; the work is bounded by
:data:`MAX_ROWS` and :data:`MAX_BYTES`.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .inputs import read_text

__all__ = ["COLUMNS", "MAX_BYTES", "MAX_ROWS", "Request", "read_dataset"]

COLUMNS = ("input_tokens", "output_tokens", "arrival_s")
#: Bounds on a dataset file: a day of a busy service's trace at 10 req/s is under a million
#: requests; 64 MiB holds a million rows of three numbers with room to spare.
MAX_ROWS = 1_000_000
MAX_BYTES = 64 * 1024 * 1024
FIELD = "workload.file"


@dataclass(frozen=True)
class Request:
    """One request of a dataset: lengths in tokens and its arrival time (None: untimed)."""

    input_tokens: int
    output_tokens: int
    arrival_s: float | None = None


def read_dataset(path: str | Path) -> tuple[Request, ...]:
    """The requests of a CSV or JSONL dataset file, in file order (see the module doc)."""
    p = Path(path)
    if p.suffix not in (".csv", ".jsonl"):
        raise ConfigError(FIELD, str(path), "must be a .csv or .jsonl file")
    if p.is_file() and p.stat().st_size > MAX_BYTES:
        raise ConfigError(FIELD, str(path), f"must be at most {MAX_BYTES // 2**20} MiB")
    text = read_text(p, FIELD, "must be an existing .csv or .jsonl file")
    rows = _csv_rows(text, p) if p.suffix == ".csv" else _jsonl_rows(text, p)
    if len(rows) > MAX_ROWS:
        raise ConfigError(FIELD, str(path), f"must hold at most {MAX_ROWS:,} requests")
    requests = [(line, _request(row, p, line)) for line, row in rows]
    if not requests:
        raise ConfigError(FIELD, str(path), "must hold at least one request")
    _check_arrivals(requests, p)
    return tuple(r for _, r in requests)


def _csv_rows(text: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise ConfigError(FIELD, str(path), "must start with a header line naming its columns") from None
    except csv.Error as exc:
        raise ConfigError(FIELD, f"{path} line 1", f"must be valid CSV ({exc})") from None
    _check_columns(header, path, 1)
    out = []
    try:
        for cells in reader:
            line = reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise ConfigError(
                    FIELD,
                    f"{path} line {line}",
                    f"must have {len(header)} cells like the header (got {len(cells)})",
                )
            out.append((line, dict(zip(header, (c.strip() for c in cells), strict=True))))
    except csv.Error as exc:
        raise ConfigError(FIELD, f"{path} line {reader.line_num}", f"must be valid CSV ({exc})") from None
    return out


def _jsonl_rows(text: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except ValueError:
            raise ConfigError(FIELD, f"{path} line {line}", "must be one JSON object per line") from None
        if not isinstance(row, dict):
            raise ConfigError(FIELD, f"{path} line {line}", "must be one JSON object per line")
        _check_columns(list(row), path, line)
        out.append((line, row))
    return out


def _check_columns(names: list[str], path: Path, line: int) -> None:
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise ConfigError(
            f"{FIELD} column {unknown[0]!r}",
            f"{path} line {line}",
            f"unknown column; allowed: {', '.join(COLUMNS)}",
        )
    for need in COLUMNS[:2]:
        if need not in names:
            raise ConfigError(f"{FIELD} column {need!r}", f"{path} line {line}", "required")


def _request(row: dict[str, Any], path: Path, line: int) -> Request:
    where = f"{path} line {line}"
    lengths = []
    for name in COLUMNS[:2]:
        value = row.get(name)
        number = _number(value)
        if number is None or number != int(number) or number < 1:
            raise ConfigError(f"{FIELD} column {name!r}", where, f"must be an integer >= 1 (got {value!r})")
        lengths.append(int(number))
    arrival = row.get("arrival_s")
    if arrival in (None, ""):
        return Request(lengths[0], lengths[1])
    seconds = _number(arrival)
    if seconds is None or seconds < 0:
        raise ConfigError(
            f"{FIELD} column 'arrival_s'", where, f"must be a finite number of seconds >= 0 (got {arrival!r})"
        )
    return Request(lengths[0], lengths[1], seconds)


def _number(value: Any) -> float | None:
    """A finite number from a JSON number or a CSV cell, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _check_arrivals(requests: list[tuple[int, Request]], path: Path) -> None:
    timed = [r.arrival_s is not None for _, r in requests]
    if any(timed) and not all(timed):
        line = requests[timed.index(not timed[0])][0]
        raise ConfigError(
            f"{FIELD} column 'arrival_s'", f"{path} line {line}", "must be given on every row or on none"
        )
    if all(timed):
        for (_, prev), (line, cur) in itertools.pairwise(requests):
            assert prev.arrival_s is not None and cur.arrival_s is not None
            if cur.arrival_s < prev.arrival_s:
                raise ConfigError(
                    f"{FIELD} column 'arrival_s'",
                    f"{path} line {line}",
                    f"must not decrease ({cur.arrival_s:g} after {prev.arrival_s:g})",
                )
