"""Trials store the deployed values as Optuna parameters, and the SLA constraint where
optuna-dashboard reads it (system attribute ``constraints``, a list)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import TrialState

from search_spaces import load_space
from serving import Deployment
from tuner.errors import StudyMismatch
from tuner.rundir import load_run
from tuner.runs import tune
from tuner.samplers import SnappingSampler, make_sampler
from tuner.search import TrialRecord
from tuner.spec import load_spec

from .conftest import small_spec


def deployed(dep: Deployment, name: str) -> int:
    """The value a parameter name ``<role>.<dim>`` deploys (a launch flag's value)."""
    role, dim = name.split(".")
    group = dep.groups()[role]
    return int(getattr(group.parallel, dim) if dim in ("tp", "dp", "pp") else getattr(group.knobs, dim))


@pytest.fixture(scope="module")
def tpe_run(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("tpe")
    spec = load_spec(
        small_spec(
            tmp,
            study={"sampler": "tpe", "trials": 30, "seed": 2},
            search_space={"preset": "dense-single-node"},
            hardware={"gpu": "H100", "gpus": 8, "gpus_per_node": 8},
            sla={"min_tok_s_user": 150},  # tight: some deployments miss it
        )
    )
    return spec, tune(spec)


def test_params_are_the_deployed_values(tpe_run) -> None:  # type: ignore[no-untyped-def]
    _, result = tpe_run
    space = load_space("dense-single-node")
    ordered = space.ordered_params()
    checked = 0
    for frozen in result.study.get_trials(states=(TrialState.COMPLETE,)):
        dep = TrialRecord.of(frozen).deployment
        assert dep is not None
        assert not any("log2" in name for name in frozen.params), frozen.params
        for name, value in frozen.params.items():
            if name in ordered:
                assert value in ordered[name], (name, value)
                assert value == deployed(dep, name), (frozen.number, name)
                checked += 1
    assert checked >= 30  # several ordered parameters per trial


def test_stored_study_opens_with_deployed_best_params(tpe_run) -> None:  # type: ignore[no-untyped-def]
    spec, _ = tpe_run
    study = optuna.load_study(study_name=spec.study_name(), storage=spec.storage_url())
    best = study.best_trials
    assert best
    ordered = load_space("dense-single-node").ordered_params()
    for t in best:
        dep = TrialRecord.of(t).deployment
        assert dep is not None
        for name, value in t.params.items():
            if name in ordered:
                assert value == deployed(dep, name)
            assert "log2" not in name


def test_sla_constraint_is_where_the_dashboard_reads_it(tpe_run) -> None:  # type: ignore[no-untyped-def]
    spec, _ = tpe_run
    study = optuna.load_study(study_name=spec.study_name(), storage=spec.storage_url())
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert complete
    for t in complete:
        violation = TrialRecord.of(t).violation
        # optuna-dashboard's serializer: trial.system_attrs.get("constraints", [])
        assert list(t.system_attrs["constraints"]) == [violation]
        assert t.constraints["sla_violation"] == violation  # Optuna 5's own form
    assert any(TrialRecord.of(t).violation > 0 for t in complete)  # some miss the SLA
    for t in study.get_trials(states=(TrialState.PRUNED,)):  # never measured: no constraint
        assert not t.system_attrs.get("constraints")


def test_snapping_sampler_stores_only_listed_values() -> None:
    listed = (64, 128, 256, 512)
    study = optuna.create_study(sampler=SnappingSampler(optuna.samplers.RandomSampler(seed=0), {"x": listed}))
    for _ in range(40):
        trial = study.ask()
        trial.suggest_int("x", 64, 512, log=True)
        study.tell(trial, 0.0)
    assert {t.params["x"] for t in study.trials} <= set(listed)
    assert len({t.params["x"] for t in study.trials}) == len(listed)  # every value reachable
    assert isinstance(study.trials[0].distributions["x"], IntDistribution)
    assert isinstance(make_sampler("tpe", seed=0), SnappingSampler)


def test_resuming_a_log2_study_fails_with_one_line(tmp_path: Path) -> None:
    """A run directory from before deployed-value parameters: resuming it is refused with
    the reason; showing and re-picking it still work."""
    spec = load_spec(small_spec(tmp_path, study={"trials": 4}))
    tune(spec)
    study = optuna.load_study(study_name=spec.study_name(), storage=spec.storage_url())
    old = study.get_trials()[0]
    study.add_trial(
        optuna.trial.create_trial(
            params={"agg.log2_tp": 1},
            distributions={"agg.log2_tp": IntDistribution(0, 3)},
            value=1.0,
            user_attrs=dict(old.user_attrs),
        )
    )
    bigger = load_spec(small_spec(tmp_path, study={"trials": 8}))
    with pytest.raises(StudyMismatch, match="log2 exponents") as info:
        tune(bigger)
    assert "\n" not in str(info.value)
    assert load_run(spec.output_dir).points  # `tuner show` / `tuner pick` still read it
