"""An example spec's whole feasible space priced by the simulator, as the study's screening
does (tuner/screen.py): the exact front the example's run converges to, in seconds."""

from __future__ import annotations

from pathlib import Path

import search_spaces
from backends.simulator import SimulatorBackend
from search_spaces import infeasible_reason
from tuner.results import MeasuredPoint
from tuner.spec import StudySpec, build_problem, load_spec
from tuner.studies import default_preset

#: An example's spec and its points.
Run = tuple[StudySpec, list[MeasuredPoint]]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example_points(name: str) -> Run:
    """The spec of ``examples/NAME`` and every load point of every feasible candidate."""
    spec = load_spec(EXAMPLES / name)
    problem = build_problem(spec)
    space = search_spaces.load_space(default_preset(spec, problem), dict(spec.search_space.overrides))
    sim = SimulatorBackend()
    points: list[MeasuredPoint] = []
    for i, dep in enumerate(space.candidates(problem)):
        if infeasible_reason(dep, problem) is None and sim.check(dep, problem) is None:
            points += [MeasuredPoint(i, dep, p) for p in sim.measure(dep, problem)]
    return spec, points
