"""The run's chart process: warmed up at the start, draws the charts side by side, reports
failures, and leaves no process behind."""

from __future__ import annotations

import errno
import multiprocessing
from pathlib import Path
from typing import Any

from tuner.painter import ChartPainter


def _write(path: Path, data: Any, **kwargs: Any) -> None:
    Path(path).write_text(f"{data} {kwargs}")


def _full_disk(path: Path, data: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


def test_charts_are_drawn_by_the_warm_child_and_its_forks(tmp_path: Path) -> None:
    with ChartPainter() as painter:
        assert painter.ready
        wait = painter.draw([(_write, tmp_path / "a", 1, {"k": 2}), (_write, tmp_path / "b", 3, {})])
        assert wait() == [None, None]
    assert (tmp_path / "a").read_text() == "1 {'k': 2}"
    assert (tmp_path / "b").read_text() == "3 {}"
    assert multiprocessing.active_children() == []


def test_a_failed_chart_reports_its_errno(tmp_path: Path) -> None:
    with ChartPainter() as painter:
        results = painter.draw([(_write, tmp_path / "a", 1, {}), (_full_disk, tmp_path / "b", 1, {})])()
    assert results[0] is None
    assert results[1] is not None and results[1][0] == errno.ENOSPC


def test_an_unused_painter_stops(tmp_path: Path) -> None:
    with ChartPainter():
        pass
    assert multiprocessing.active_children() == []
