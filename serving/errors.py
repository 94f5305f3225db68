"""Error types shared by every package.

They live in the lowest package so that backends and search spaces can raise them without
importing the tuner. The CLI turns each into one line on stderr and a non-zero exit.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CandidateFailed", "ConfigError", "TunerError"]


class TunerError(Exception):
    """Base of every expected error: printed as one line, never as a traceback."""


class ConfigError(TunerError):
    """Bad input: names the field, the value received and what is allowed."""

    def __init__(self, field: str, value: Any, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}: got {_short(value)}; {allowed}")


class CandidateFailed(TunerError):
    """A candidate deployment could not be measured (crash, out of memory, bad flags).

    The study records it as a failed trial with ``reason`` and goes on.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
