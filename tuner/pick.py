"""The SLA pick: the best load point that meets the SLA. A pure function.

Rule: among points that meet every SLA constraint, take the highest tok/s/GPU. Points
within ``TIE_TOLERANCE`` of the best count as tied; ties go to the deployment with fewer
GPUs (cheaper to run, smaller blast radius), then to the lower p50 TTFT.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from . import confidence as robust
from .errors import NoFeasiblePick
from .results import MeasuredPoint
from .sla import SLA

__all__ = ["TIE_TOLERANCE", "Pick", "closest_points", "pick_best"]

#: Relative tok/s/GPU difference below which two points count as tied (measurement noise
#: of a live run is a few percent; 0.5% keeps real differences and merges rounding).
TIE_TOLERANCE = 0.005


@dataclass(frozen=True)
class Pick:
    """The chosen operating point and how many points were eligible; with a robust margin
    (``confidence`` > 0.5) also the plain pick it replaced (None when none met the SLA)."""

    chosen: MeasuredPoint
    sla: SLA
    eligible: int
    total: int
    confidence: float = 0.5
    plain: MeasuredPoint | None = None

    @property
    def margin_tok_s_gpu(self) -> float:
        """What the robust margin costs in tok/s/GPU against the plain pick (0 without one)."""
        return 0.0 if self.plain is None else self.plain.point.tok_s_gpu - self.chosen.point.tok_s_gpu


def pick_best(points: Sequence[MeasuredPoint], sla: SLA) -> Pick:
    """Best SLA-feasible point; raises :class:`NoFeasiblePick` naming the failing constraint."""
    level = robust.confidence_for(sla, points)
    ok = [m for m in points if robust.meets(sla, m.point, level)]
    if not ok:
        raise NoFeasiblePick(explain_infeasible(points, sla))
    plain = [m for m in points if sla.meets(m.point)] if level > 0.5 else []
    return Pick(
        chosen=_best(ok), sla=sla, eligible=len(ok), total=len(points), confidence=level,
        plain=_best(plain) if plain else None,
    )  # fmt: skip


def _best(ok: Sequence[MeasuredPoint]) -> MeasuredPoint:
    best = max(m.point.tok_s_gpu for m in ok)
    tied = [m for m in ok if m.point.tok_s_gpu >= best * (1.0 - TIE_TOLERANCE)]
    return min(tied, key=lambda m: (m.gpus, m.point.ttft_ms_p50, -m.point.tok_s_gpu, m.trial))


def explain_infeasible(points: Sequence[MeasuredPoint], sla: SLA) -> str:
    """Which constraint no point meets (or that none meets all at once)."""
    if not points:
        return "no load point was measured: every candidate was infeasible or failed"
    level = robust.confidence_for(sla, points)
    failing = Counter(name for m in points for name in robust.check(sla, m.point, level))
    never = [name for name, n in failing.items() if n == len(points)]
    if never:
        return f"no deployment meets the SLA ({sla.describe()}): no point meets {', '.join(never)}"
    return f"no deployment meets the SLA ({sla.describe()}): no point meets all constraints at once"


def closest_points(points: Sequence[MeasuredPoint], sla: SLA, n: int = 5) -> list[MeasuredPoint]:
    """The nearest point to meeting the SLA (smallest summed relative shortfall, then best
    throughput) of each of the ``n`` nearest topologies: distinct alternatives to consider."""
    ranked = sorted(points, key=lambda m: (sla.violation(m.point), -m.point.tok_s_gpu))
    seen: set[str] = set()
    out: list[MeasuredPoint] = []
    for m in ranked:
        if m.label not in seen:
            seen.add(m.label)
            out.append(m)
    return out[:n]
