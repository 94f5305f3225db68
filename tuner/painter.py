"""A chart process started with the run: matplotlib is imported while the study runs.

Importing matplotlib and drawing a first figure (fonts) takes about a second, longer than
an instant backend's whole study on the dense example; done when the outputs are written,
it was the last thing a simulator run waited for. :class:`ChartPainter` forks a child when
the run starts (before any thread exists), which imports the plotting modules and draws a
throw-away figure on the other core while the space is screened, then waits for the run's
charts: it draws the first itself and forks one more child per other chart, so the charts
are drawn side by side.

The child ignores Ctrl-C (the run stops it), and it ends when the pipe to the run closes,
so a killed run leaves nothing behind. Where fork is unavailable or threads are alive,
there is no child and the caller draws as before (:attr:`ChartPainter.ready` is False).
"""

from __future__ import annotations

import io
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["Chart", "ChartPainter"]

#: (plot function, path, its positional data, its keyword arguments).
Chart = tuple[Callable[..., None], Path, Any, dict[str, Any]]
#: Per chart: None when drawn, else (errno or 0, message) of what failed.
Result = tuple[int, str] | None


class ChartPainter:
    """The run's chart child; a context manager that stops it on exit."""

    def __init__(self) -> None:
        self._conn: Connection | None = None
        self._child: multiprocessing.process.BaseProcess | None = None
        if "fork" not in multiprocessing.get_all_start_methods() or threading.active_count() > 1:
            return
        ctx = multiprocessing.get_context("fork")
        ours, theirs = ctx.Pipe()
        self._child = ctx.Process(target=_serve, args=(theirs, ours), daemon=True)
        self._child.start()
        theirs.close()
        self._conn = ours

    @property
    def ready(self) -> bool:
        return self._conn is not None

    def draw(self, charts: Sequence[Chart]) -> Callable[[], list[Result]]:
        """Hand ``charts`` to the child; returns the function that waits for them (one
        result per chart). Only once per painter."""
        assert self._conn is not None, "no chart child: draw inline"
        conn, self._conn = self._conn, None
        conn.send(list(charts))

        def wait() -> list[Result]:
            try:
                results: list[Result] = conn.recv()
            except EOFError:  # the child died: say so for every chart
                results = [(0, "the chart process exited")] * len(charts)
            conn.close()
            self._join()
            return results

        return wait

    def __enter__(self) -> ChartPainter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._conn is not None:  # never used (an error, nothing to draw): stop it
            self._conn.close()
            self._conn = None
        self._join()

    def _join(self) -> None:
        if self._child is not None:
            self._child.join(timeout=30)
            if self._child.is_alive():
                self._child.kill()
                self._child.join()
            self._child = None


def _serve(conn: Connection, parent_end: Connection) -> None:
    """The chart child: warm up, wait for the charts, draw them side by side, report."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent_end.close()  # so the pipe closes when the run ends, however it ends
    _warm_up()
    try:
        charts: list[Chart] = conn.recv()
    except EOFError:
        return
    children = []
    for plot, path, data, kwargs in charts[1:]:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # a grandchild draws one chart and reports through its pipe
            os.close(read_end)
            os.write(write_end, repr(_draw(plot, path, data, kwargs)).encode())
            os._exit(0)
        os.close(write_end)
        children.append((pid, read_end))
    results: list[Result] = [_draw(*charts[0])] if charts else []
    for pid, read_end in children:
        with os.fdopen(read_end, "rb") as pipe:
            text = pipe.read().decode()
        os.waitpid(pid, 0)
        results.append(_parse(text))
    conn.send(results)
    conn.close()


def _warm_up() -> None:
    """Import the plotting modules and draw one small figure (loads the fonts)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import plot, plot_cost  # noqa: F401  (imported for their import cost)

    fig, ax = plt.subplots(figsize=(2, 1), dpi=50)
    ax.plot([0, 1], [0, 1], label="warm-up")
    ax.legend()
    fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)


def _draw(plot: Callable[..., None], path: Path, data: Any, kwargs: dict[str, Any]) -> Result:
    try:
        plot(path, data, **kwargs)
    except OSError as exc:
        return (exc.errno or 0, str(exc.strerror or exc))
    except Exception as exc:  # reported as a failed chart, not a traceback in a child
        return (0, f"{type(exc).__name__}: {exc}")
    return None


def _parse(text: str) -> Result:
    """A grandchild's report (the repr of its result); no report: it died."""
    import ast

    if not text:
        return (0, "the chart process exited")
    value = ast.literal_eval(text)
    return None if value is None else (int(value[0]), str(value[1]))
