"""Error types shared by every package.

They live in the lowest package so that backends and search spaces can raise them without
importing the tuner. The CLI turns each into one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import reprlib
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


class _BoundedRepr(reprlib.Repr):
    """``repr`` that looks at a bounded part of a value: a few items per container, a few
    levels deep, the first characters of a string. A value from a YAML alias bomb (a
    billion strings behind a few shared lists) is formatted in microseconds, not after
    gigabytes; ``repr`` of the whole value first would be."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxdict = self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = 4
        self.maxstring = self.maxother = self.maxlong = 80

    def repr_int(self, x: int, level: int) -> str:
        # An int of more than 4300 digits cannot even be turned into text (ValueError).
        if x.bit_length() > 256:
            return f"<an integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        # reprlib sorts every key of a dict first; only the first few are shown anyway.
        if len(x) <= self.maxdict:
            return super().repr_dict(x, level)
        head = dict(item for item, _ in zip(x.items(), range(self.maxdict), strict=False))
        return super().repr_dict(head, level)[:-1] + ", ...}"


_REPR = _BoundedRepr()


def _short(value: Any) -> str:
    """At most 80 characters of ``repr(value)``, computed in bounded time."""
    text = _REPR.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
