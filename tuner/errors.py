"""Errors the CLI reports as one line with a non-zero exit (never a traceback).

The shared base types live in :mod:`serving.errors` so that backends and search spaces
raise them without importing the tuner; this module adds the tuner's own outcomes.
"""

from __future__ import annotations

from serving.errors import CandidateFailed, ConfigError, TunerError

__all__ = [
    "CandidateFailed",
    "ConfigError",
    "NoFeasiblePick",
    "OutputError",
    "StorageError",
    "StudyMismatch",
    "TunerError",
    "UsageError",
]


class NoFeasiblePick(TunerError):
    """No measured point meets the SLA: an expected outcome, not a bug (exit 1)."""


class StudyMismatch(TunerError):
    """An existing study was created from another spec; resuming it would mix problems."""


class StorageError(TunerError):
    """The study's storage cannot be reached or written (database down, wrong password,
    full disk): one line naming the storage, exit 2."""


class OutputError(TunerError):
    """A run file or artifact cannot be written (read-only directory, full disk): one line
    naming the file and the reason, exit 2. What was stored in the study stays stored, so
    the same command resumes once the directory is writable again."""


class UsageError(TunerError):
    """A command line the parser refuses (unknown or abbreviated option, bad value): one
    line naming the option, exit 2."""
