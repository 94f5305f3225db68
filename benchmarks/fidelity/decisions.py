"""Decision quality of SLA picks made from predictions, played back against measurements.

Issue 14 part 6. Measured load points are grouped by (model, hardware, precision, engine,
isl, osl, source); groups with at least 3 deployments are kept. For each group and each SLA
threshold X at the 20th/40th/60th/80th percentile of its measured tok/s/user, the pick is the
deployment whose best predicted point with predicted tok/s/user >= X has the highest
predicted tok/s/GPU (the robust pick: pessimistic tok/s/user, 1000 / the upper TPOT bound,
>= X). Regret = 1 - (the pick's best measured tok/s/GPU among its points with measured
tok/s/user >= X) / (the best measured over all deployments). A pick with no measured point
meeting X is an SLA miss (and has no regret); a threshold where no deployment's prediction
meets X is a no-pick.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tuner.validate import positive_float

__all__ = ["GROUP_KEY", "THRESHOLDS", "Decisions", "decide", "groups"]

GROUP_KEY = ("model", "hardware", "precision", "backend", "isl", "osl", "source")
DEPLOYMENT_KEY = (
    "mode", "topology", "gpus", "workers", "tp", "dp", "ep",
    "p_workers", "p_tp", "p_dp", "p_ep", "d_workers", "d_tp", "d_dp", "d_ep",
)  # fmt: skip
THRESHOLDS = (20, 40, 60, 80)
#: Regret below which a pick counts as as good as the best.
NEAR = 0.02


@dataclass(frozen=True)
class Decisions:
    """Outcome over every (group, threshold): regrets of the picks that met X, misses, no-picks."""

    regrets: tuple[float, ...]
    misses: int
    no_pick: int

    @property
    def picks(self) -> int:
        return len(self.regrets) + self.misses

    def cells(self) -> tuple[str, str, str, str]:
        """(median regret, share within 2%, SLA-miss rate, picks) as table cells."""
        if not self.picks:
            return "-", "-", "-", "0"
        within = sum(r <= NEAR for r in self.regrets) / self.picks
        med = f"{100 * statistics.median(self.regrets):.1f}%" if self.regrets else "-"
        return med, f"{100 * within:.0f}%", f"{100 * self.misses / self.picks:.1f}%", str(self.picks)


def groups(rows: Sequence[Mapping[str, str]]) -> list[list[Mapping[str, str]]]:
    """Measured load points with tok/s/user and tok/s/GPU, grouped; groups of >= 3 deployments."""
    by: dict[tuple[str, ...], list[Mapping[str, str]]] = {}
    for row in rows:
        if row["kind"] != "load_point" or (row.get("spec_decode") or "none") != "none":
            continue
        if not (positive_float(row.get("tok_s_user")) > 0 and positive_float(row.get("tok_s_gpu")) > 0):
            continue
        by.setdefault(tuple(row.get(c) or "" for c in GROUP_KEY), []).append(row)
    return [g for g in by.values() if len({_dep(r) for r in g}) >= 3]


def _dep(row: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(row.get(c) or "" for c in DEPLOYMENT_KEY)


#: Predicted (tok/s/user used against X, tok/s/GPU) of a row, or None when not priced.
Predict = Callable[[Mapping[str, str]], tuple[float, float] | None]


def decide(group_list: Sequence[Sequence[Mapping[str, str]]], predict: Predict) -> Decisions:
    """Play every (group, threshold) back; ``predict`` gives the values the pick sees."""
    regrets: list[float] = []
    misses = no_pick = 0
    for group in group_list:
        measured_user = [positive_float(r["tok_s_user"]) for r in group]
        for pct in THRESHOLDS:
            x = float(np.percentile(measured_user, pct))
            outcome = _one(group, x, predict)
            if outcome is None:
                no_pick += 1
            elif math.isnan(outcome):
                misses += 1
            else:
                regrets.append(outcome)
    return Decisions(tuple(regrets), misses, no_pick)


def _one(group: Sequence[Mapping[str, str]], x: float, predict: Predict) -> float | None:
    """Regret of the pick at threshold ``x``; NaN for an SLA miss; None when nothing is picked."""
    best_pred: dict[tuple[str, ...], float] = {}
    for row in group:
        pred = predict(row)
        if pred is not None and pred[0] >= x:
            key = _dep(row)
            best_pred[key] = max(best_pred.get(key, -math.inf), pred[1])
    if not best_pred:
        return None
    pick = max(sorted(best_pred), key=lambda k: best_pred[k])
    meeting = [r for r in group if positive_float(r["tok_s_user"]) >= x]
    best = max(positive_float(r["tok_s_gpu"]) for r in meeting)
    mine = [positive_float(r["tok_s_gpu"]) for r in meeting if _dep(r) == pick]
    if not mine:
        return math.nan
    return 1.0 - max(mine) / best
