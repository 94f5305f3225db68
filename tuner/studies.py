"""The study in its storage: create or resume it, let a worker join it, and what is stored
with it (the spec, the resolved search space, the tool version, the trial budget), so the
storage alone is enough to run, join or read a study, and a worker of another version or
space refuses to join, as it refuses a study that one buffering process is writing
(:data:`WRITER_ATTR`).
"""

from __future__ import annotations

import os
import socket
from typing import Any

import optuna

import search_spaces
from serving import Problem

from . import __version__
from .errors import ConfigError, StudyMismatch, TunerError
from .heartbeats import Heartbeats
from .objectives import get_objective
from .samplers import make_sampler
from .spec import StudySpec, build_problem, parse_spec
from .storage import HEARTBEAT_S, Claims, open_storage, redact, storage_errors

__all__ = [
    "BACKEND_ATTR",
    "BUDGET_ATTR",
    "SPACE_ATTR",
    "SPEC_ATTR",
    "VERSION_ATTR",
    "WRITER_ATTR",
    "check_compatible",
    "check_joinable",
    "claims_for",
    "default_preset",
    "fingerprint",
    "heartbeats_for",
    "join_study",
    "mark_writer",
    "open_study",
    "space_of",
    "space_size",
]

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPEC_ATTR = "spec"
#: Study user attributes besides the spec: the tool version, the resolved search space and
#: the trial budget of the last `tuner tune` (what workers run up to) and the measuring
#: backend's ``describe()`` (name, version, settings: the provenance a re-pick keeps).
VERSION_ATTR = "tuner_version"
SPACE_ATTR = "search_space"
BUDGET_ATTR = "trials"
BACKEND_ATTR = "backend"
#: How the running `tuner tune` writes the study: {"mode": "buffered" | "direct", "host",
#: "pid"}. A buffered writer (one process, an instant backend, a write-behind twin) takes
#: no claims and sees no other process's trials, so no worker may join it while it runs.
WRITER_ATTR = "writer"
#: What the parameter names of ordered dimensions held before they were deployed values.
LEGACY_PARAM = ".log2_"
#: Spec fields that may change between runs of one study without changing its meaning.
_FREE_STUDY_FIELDS = ("sampler", "trials", "seed", "storage", "name", "guided")


def fingerprint(spec: StudySpec) -> dict[str, Any]:
    """The parts of a spec that define the problem; a resume must not change them."""
    data = spec.to_dict()
    data.pop("output_dir")
    data["study"] = {k: v for k, v in data["study"].items() if k not in _FREE_STUDY_FIELDS}
    # What the points cost and how many replicas serve a rate change no measurement.
    data.pop("plan", None)
    data["hardware"].pop("usd_per_gpu_hour", None)
    return data


def default_preset(spec: StudySpec, problem: Problem) -> str:
    if spec.search_space.preset:
        return spec.search_space.preset
    return "moe-multi-node" if problem.arch.is_moe else "dense-single-node"


def open_study(
    spec: StudySpec, storage: optuna.storages.BaseStorage | None = None, *, candidates: int | None = None
) -> optuna.Study:
    """Create the study, or load it when it exists with the same problem (resume).

    ``candidates``: the space's size when the caller already counted it (a screening), which
    sizes the sampler; otherwise it is counted here."""
    directions = get_objective(spec.study.objective).directions
    size = space_size(spec) if candidates is None else candidates
    sampler = make_sampler(
        spec.study.sampler, seed=spec.study.seed, candidates=size, snapped=space_of(spec).ordered_params()
    )
    url = spec.storage_url()
    with storage_errors(url):
        study = optuna.create_study(
            storage=storage if storage is not None else open_storage(url),
            study_name=spec.study_name(),
            directions=directions,
            sampler=sampler,
            load_if_exists=True,
        )
        stored = study.user_attrs.get(SPEC_ATTR)
        if stored is None:
            study.set_user_attr(SPEC_ATTR, spec.to_dict())
            study.set_user_attr(VERSION_ATTR, __version__)
            study.set_user_attr(SPACE_ATTR, space_of(spec).to_dict())
            return study
    if fingerprint(parse_spec(stored)) != fingerprint(spec):
        raise StudyMismatch(
            f"study '{spec.study_name()}' in {redact(url)} was created from a different spec "
            "(model, hardware, workload, SLA, search space or backend differ); "
            "use another output_dir or study.name"
        )
    check_compatible(study, spec)
    return study


def space_of(spec: StudySpec) -> search_spaces.SearchSpace:
    return search_spaces.load_space(
        default_preset(spec, build_problem(spec)), dict(spec.search_space.overrides)
    )


def space_size(spec: StudySpec) -> int:
    """How many deployments the spec's search space holds for its problem (sizes the
    sampler's random startup; enumerating takes well under a second for the presets)."""
    return sum(1 for _ in space_of(spec).candidates(build_problem(spec)))


def check_compatible(study: optuna.Study, spec: StudySpec) -> None:
    """Refuse a study made by another tool version, from another resolved search space (a
    preset file that changed between versions) or with another parameter encoding
    (:func:`check_encoding`)."""
    check_encoding(study)
    version = study.user_attrs.get(VERSION_ATTR)
    if version is not None and version != __version__:
        raise StudyMismatch(
            f"study '{study.study_name}' was created by tuner {version}; this is tuner {__version__}: "
            f"run tuner {version} to join or resume it (pip install llm-serving-tuner=={version})"
        )
    stored = study.user_attrs.get(SPACE_ATTR)
    if stored is not None and stored != space_of(spec).to_dict():
        raise StudyMismatch(
            f"study '{study.study_name}' was created with another search space than this tuner's "
            f"preset '{default_preset(spec, build_problem(spec))}' resolves to; run the study's tuner version"
        )


def check_encoding(study: optuna.Study) -> None:
    """Refuse a study whose trials store ordered dimensions as log2 exponents (parameter
    names ``<role>.log2_<dim>``, tuner runs before parameters became the deployed values):
    a retry or an enqueued trial of it would rebuild another deployment than it measured."""
    for t in study.get_trials(deepcopy=False):
        legacy = next((name for name in t.params if LEGACY_PARAM in name), None)
        if legacy is not None:
            raise StudyMismatch(
                f"study '{study.study_name}' stores parameters as log2 exponents ({legacy}, trial "
                f"{t.number}), from a tuner before deployed-value parameters: it can still be shown "
                "and re-picked (tuner show / tuner pick), but resume it with the tuner that made it, "
                "or start a new output_dir or study.name"
            )


def join_study(
    storage_url: str, study_name: str, *, seed: int | None = None
) -> tuple[StudySpec, optuna.Study, optuna.storages.BaseStorage]:
    """Load a shared study for a worker: the spec comes from the study; the tool version and
    search space must match (:class:`StudyMismatch` otherwise), and no buffering writer may
    be running on it (:func:`check_joinable`)."""
    with storage_errors(storage_url):
        storage = open_storage(storage_url)
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
        if study_name not in names:
            raise ConfigError(
                "--study",
                study_name,
                f"allowed: {', '.join(names) or 'no study in this storage'}"
                " (create it with `tuner tune SPEC --storage URL --study NAME`)",
            )
        probe = optuna.load_study(study_name=study_name, storage=storage)
        spec = parse_spec(probe.user_attrs[SPEC_ATTR])
        sampler = make_sampler(
            spec.study.sampler,
            seed=spec.study.seed if seed is None else seed,
            candidates=space_size(spec),
            snapped=space_of(spec).ordered_params(),
        )
        study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler)
    check_compatible(study, spec)
    check_joinable(study)
    return spec, study, storage


def mark_writer(study: optuna.Study, *, buffered: bool) -> None:
    """Record how this process writes ``study`` (see :data:`WRITER_ATTR`)."""
    mode = "buffered" if buffered else "direct"
    study.set_user_attr(WRITER_ATTR, {"mode": mode, "host": socket.gethostname(), "pid": os.getpid()})


def check_joinable(study: optuna.Study) -> None:
    """Refuse to join a study whose buffering writer is running (:class:`TunerError`): its
    trials are not in storage yet and it takes no claims, so a worker would measure its
    deployments again and overshoot its budget. A mark left by a writer that is gone (a
    killed run on this host) does not count: its stored trials are all finished ones."""
    writer = study.user_attrs.get(WRITER_ATTR)
    if not isinstance(writer, dict) or writer.get("mode") != "buffered":
        return
    host, pid = writer.get("host"), int(writer.get("pid", 0))
    if host == socket.gethostname() and not _alive(pid):
        return
    raise TunerError(
        f"study '{study.study_name}' is being written by one `tuner tune` process (pid {pid} on {host}) "
        "that buffers its trials and takes no claims, so a worker cannot join it: wait for it to finish, "
        "or run the study with workers from the start (`tuner tune SPEC --workers N`, "
        "or `--storage postgresql://...` and `tuner worker` per node)"
    )


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def heartbeats_for(
    storage: optuna.storages.BaseStorage, study: optuna.Study, *, interval_s: float = HEARTBEAT_S
) -> Heartbeats | None:
    """The heartbeat table of an RDB study (none through the gRPC proxy, like claims)."""
    if not isinstance(storage, optuna.storages.RDBStorage):
        return None
    return Heartbeats(storage, storage.get_study_id_from_name(study.study_name), interval_s=interval_s)


def claims_for(storage: optuna.storages.BaseStorage, study: optuna.Study) -> Claims | None:
    """The claim table of an RDB study (none through the gRPC proxy: see README)."""
    if not isinstance(storage, optuna.storages.RDBStorage):
        return None
    return Claims(storage, storage.get_study_id_from_name(study.study_name))
