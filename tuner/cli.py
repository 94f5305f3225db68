"""The ``tuner`` command line: parses arguments and dispatches to ``tuner.commands``.

Expected failures print one line on stderr and exit non-zero, never a traceback:
2 for bad input, 1 when no deployment meets the SLA (or a CI gate fails), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence

from . import __version__
from .commands import command_modules
from .commands._common import err
from .errors import ConfigError, NoFeasiblePick, TunerError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        code: int = args.func(args)
    except NoFeasiblePick as exc:
        err.print(str(exc), markup=False, highlight=False)
        return 1
    except (ConfigError, TunerError) as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        return 2
    except BrokenPipeError:
        return _reader_went_away()
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
