"""Samplers by name, and the default the search-efficiency benchmark chose."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import optuna
import pytest

from tuner.errors import ConfigError
from tuner.samplers import DEFAULT_SAMPLER, SnappingSampler, make_sampler, tpe_startup_trials
from tuner.spec import SAMPLERS, StudyOptions, load_spec
from tuner.studies import open_study, space_size

from .conftest import small_spec


def base(sampler: optuna.samplers.BaseSampler) -> optuna.samplers.BaseSampler:
    """The named sampler inside the snapping wrapper every study sampler has."""
    assert isinstance(sampler, SnappingSampler)
    return sampler.base


def test_default_sampler_is_the_benchmark_winner() -> None:
    # docs/search.md: TPE (multivariate, group) wins benchmarks/search_efficiency.py.
    assert DEFAULT_SAMPLER == "tpe"
    assert StudyOptions().sampler == DEFAULT_SAMPLER


def test_tpe_is_multivariate_and_grouped() -> None:
    sampler = base(make_sampler("tpe", seed=0))
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._multivariate and sampler._group


@pytest.mark.parametrize("name", [s for s in SAMPLERS if s != "gp"])
def test_every_spec_sampler_is_made(name: str) -> None:
    assert isinstance(make_sampler(name, seed=1), optuna.samplers.BaseSampler)


def test_gp_needs_torch_and_scipy(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "torch" else real(name))
    with pytest.raises(ConfigError) as info:
        make_sampler("gp", seed=0)
    assert "torch" in str(info.value)


def test_unknown_sampler_names_the_choices() -> None:
    with pytest.raises(ConfigError) as info:
        make_sampler("cmaes", seed=0)
    assert "tpe" in str(info.value)


def test_tpe_models_a_quarter_of_the_trials_as_good() -> None:
    # tuner/samplers.py TPE_GOOD_FRACTION: 25% (at most 25) instead of Optuna's 10%.
    sampler = base(make_sampler("tpe", seed=0))
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert [sampler._gamma(n) for n in (4, 20, 60, 200)] == [1, 5, 15, 25]


@pytest.mark.parametrize(
    ("candidates", "startup"),
    [(24, 10), (336, 10), (648, 10), (1000, 15), (1338, 20), (20000, 20), (None, 20)],
)
def test_tpe_random_startup_scales_with_the_space(candidates: int | None, startup: int) -> None:
    # tuner/samplers.py TPE_STARTUP_*: 1.5% of the candidates, between 10 and 20.
    assert tpe_startup_trials(candidates) == startup
    sampler = base(make_sampler("tpe", seed=0, candidates=candidates))
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._n_startup_trials == startup


def test_a_study_sizes_tpe_startup_from_its_space(tmp_path: Path) -> None:
    spec = load_spec(small_spec(tmp_path, study={"sampler": "tpe"}))
    sampler = base(open_study(spec, optuna.storages.InMemoryStorage()).sampler)
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._n_startup_trials == tpe_startup_trials(space_size(spec)) == 10
