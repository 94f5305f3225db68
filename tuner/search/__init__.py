"""The search: what one run searches (:class:`Task`), who proposes the next deployment
(:mod:`.proposers`), how a run goes (:class:`RunMode`), the trial loop (:mod:`.loop`) and
what a trial stores (:class:`TrialRecord`, the one owner of a trial's user attributes).
"""

from .outcome import StudySummary, TrialOutcome
from .proposers import Proposer, QueueProposer
from .record import TrialRecord
from .task import Feasible, Task

__all__ = ["Feasible", "Proposer", "QueueProposer", "StudySummary", "Task", "TrialOutcome", "TrialRecord"]
