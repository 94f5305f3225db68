"""The ``tuner`` command line: parses arguments and dispatches to ``tuner.commands``.

Expected failures print one line on stderr and exit non-zero, never a traceback:
2 for bad input, 1 when no deployment meets the SLA (or a CI gate fails), 130 on Ctrl-C.
No option accepts an abbreviation: argparse's prefix matching would read
``--storage URL`` as ``--storage-secret URL`` where both exist.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from . import __version__
from .commands import command_modules
from .commands._common import err, redact_urls
from .errors import ConfigError, NoFeasiblePick, TunerError, UsageError

__all__ = ["build_parser", "main"]

log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    """Every parser of the CLI (subparsers inherit the class): exact option names only, and
    errors raised as one-line :class:`UsageError` instead of usage text and ``exit(2)``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(**kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tuner",
        description="Find the LLM-serving deployment with the most tokens/s per GPU at your SLA, "
        "and how to launch it.",
    )
    parser.add_argument("--version", action="version", version=f"tuner {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in command_modules():
        module.register(sub)
    return parser


def _fail(text: str) -> None:
    err.print(redact_urls(text), markup=False, highlight=False)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
        )
        code: int = args.func(args)
    except NoFeasiblePick as exc:
        _fail(str(exc))
        return 1
    except (ConfigError, TunerError) as exc:
        _fail(f"error: {exc}")
        return 2
    except BrokenPipeError:
        return _reader_went_away()
    except OSError as exc:
        # The last resort for a file the command could not read or write (a full disk, a
        # read-only directory) that no narrower handler named: still one line, exit 2.
        log.debug("I/O error", exc_info=True)
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"error: {where}{exc.strerror or exc}")
        return 2
    return code


def _reader_went_away() -> int:
    """stdout's reader closed the pipe (``tuner status RUN --json | head``): nothing more can
    be shown, so end quietly, as a process killed by SIGPIPE would (exit 141), with stdout
    pointed at /dev/null so the interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
