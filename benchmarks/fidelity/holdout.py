"""The set-aside block and the grouped cross-validation folds of the fidelity report.

Set-aside block (issue 14 part 2), chosen before any interval or inflation factor was
designed, by a rule on the row's columns alone: **vLLM on Blackwell** (``backend == vllm``
and the row's GPU is of the Blackwell generation). It is one engine family on one GPU
generation, both of which the rest of the file does inform (vLLM on H100, TRT-LLM and SGLang
on Blackwell), which is how a user meets a new combination. Its rows are left out of every
cross-validation fold and of every fit of the interval model; they are priced once, by
constants refitted from the priors on every other row and by intervals fitted on the other
rows' out-of-sample residuals, and scored once, in ``docs/fidelity.md``. That block has
since been scored and reported, so it is no longer blind: the report keeps it as a "seen"
row.

Fresh block (2026-12-03, written before any TTFT residual of that round was looked at):
**one sweep in eight, by a salted hash** -- every row whose sweep key (:data:`SWEEP_KEY`)
hashes, as ``sha1("fresh-2026-12-03|" + key) % 8 == 0``, into bucket 0
(:func:`is_fresh_block`). A hash, not a named slice, because every named slice (engine,
GPU, model, source) had been seen in earlier rounds' tables; the rule picks whole sweeps
of every kind without looking at their values. Its rows are left out of every fit and
every cross-validation run while designing the TTFT model of that round, and scored once,
as an extra row (scheme ``fresh``), by constants refitted on every other row.
The CV tables keep the earlier folds (the fresh block's rows stay in them; a full refresh
without them was too slow for that round), so the extra row is the only blind figure.

Schemes: leave one GPU type out (``hardware``), one model out (``model``), one engine
family out (``backend``), each over the rows outside the set-aside block; ``sweep``: four
folds of whole sweeps (rows sharing model, GPU, precision, engine, mode, topology and
lengths), assigned by a hash of that key, the "everything seen but this configuration" case
the interval model needs besides the three extrapolations; and ``set-aside`` (one fold: the
block). Each fold refits the global constants from the sourced priors
(``fit.fit_constants``) without its rows. The out-of-sample predictions are cached in
``docs/fidelity/oos_predictions.csv`` under a fingerprint of everything they depend on (the
calibration file, the priors, the fit script and the simulator's predictions, see
:func:`fingerprint`), so they are recomputed whenever the cost model changes (about 20 min
on 2 cores: 17 refits) and reused otherwise.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fit import PRIORS_YAML, Case, fit_constants, load_cases, predict_cases

from backends.simulator import load_constants
from serving import ConfigError, load_gpu
from tuner.validate import METRICS, Prediction

__all__ = [
    "OOS_CACHE",
    "SCHEMES",
    "SET_ASIDE",
    "Fold",
    "fingerprint",
    "fold_value",
    "folds",
    "generation",
    "is_fresh_block",
    "is_set_aside",
    "oos_predictions",
]

logger = logging.getLogger("holdout")

ROOT = Path(__file__).resolve().parents[2]
OOS_CACHE = ROOT / "docs" / "fidelity" / "oos_predictions.csv"
#: The set-aside rule, as data: (engine family, GPU generation).
SET_ASIDE = ("vllm", "blackwell")
#: Cross-validation schemes: label -> calibration column whose values are the folds.
SCHEMES = {"gpu": "hardware", "model": "model", "engine": "backend"}
#: Folds of the ``sweep`` scheme and the columns that make a sweep.
SWEEP_FOLDS = 4
SWEEP_KEY = ("model", "hardware", "precision", "backend", "mode", "topology", "isl", "osl")
SCHEME_TITLES = {
    "gpu": "leave one GPU type out",
    "model": "leave one model out",
    "engine": "leave one engine out",
    "sweep": "leave whole sweeps out (4 folds)",
    "set-aside": "set-aside block (vLLM on Blackwell; seen)",
    "fresh": "fresh block (one sweep in 8, blind; 2026-12-03)",
}


def generation(hardware: str) -> str:
    """The GPU generation of a calibration row's ``hardware`` ("" when unknown)."""
    try:
        return load_gpu(hardware).generation
    except ConfigError:
        return ""


def fold_value(row: Mapping[str, str], scheme: str) -> str:
    """The fold a row belongs to under ``scheme``."""
    if scheme == "sweep":
        key = "|".join(row.get(c) or "" for c in SWEEP_KEY)
        return f"sweep{int(hashlib.sha1(key.encode()).hexdigest(), 16) % SWEEP_FOLDS}"
    return row.get(SCHEMES[scheme]) or "vllm"


FRESH_SALT = "fresh-2026-12-03|"
FRESH_BUCKETS = 8


def is_fresh_block(row: Mapping[str, str]) -> bool:
    """Whether a calibration row is in the fresh block of 2026-12-03 (one sweep in eight)."""
    key = FRESH_SALT + "|".join(row.get(c) or "" for c in SWEEP_KEY)
    return int(hashlib.sha1(key.encode()).hexdigest(), 16) % FRESH_BUCKETS == 0


def is_set_aside(row: Mapping[str, str]) -> bool:
    """Whether a calibration row is in the set-aside block (vLLM on Blackwell)."""
    engine = (row.get("backend") or "vllm").strip()
    return (engine, generation(row.get("hardware", ""))) == SET_ASIDE


@dataclass(frozen=True)
class Fold:
    """One held-out group of one scheme: the rows predicted and the rows fitted on."""

    scheme: str
    value: str
    held: tuple[int, ...]
    train: tuple[int, ...]


def folds(cases: Sequence[Case]) -> list[Fold]:
    """Every fold of every scheme, as indices into ``cases``."""
    inside = [i for i, c in enumerate(cases) if not is_set_aside(c.row)]
    block = tuple(i for i, c in enumerate(cases) if is_set_aside(c.row))
    out = [Fold("set-aside", "vllm@blackwell", block, tuple(inside))]
    # The fresh block: fitted on every other row (the earlier block is seen by now).
    fresh = tuple(i for i, c in enumerate(cases) if is_fresh_block(c.row))
    others = tuple(i for i, c in enumerate(cases) if not is_fresh_block(c.row))
    out.append(Fold("fresh", FRESH_SALT.rstrip("|"), fresh, others))
    for scheme in (*SCHEMES, "sweep"):
        for value in sorted({fold_value(cases[i].row, scheme) for i in inside}):
            held = tuple(i for i in inside if fold_value(cases[i].row, scheme) == value)
            train = tuple(i for i in inside if fold_value(cases[i].row, scheme) != value)
            out.append(Fold(scheme, value, held, train))
    return out


def fingerprint(csv_path: Path, rows: Sequence[Mapping[str, str]]) -> str:
    """A hash of the data, the priors, the fit script and what the simulator predicts for
    every row with the priors and with the packaged constants: any change of the cost
    model's form moves those predictions, while changes that predict the same (a new output
    field, an interval) keep the cache."""
    digest = hashlib.sha256(csv_path.read_bytes())
    here = Path(__file__).resolve().parent
    for path in (PRIORS_YAML, here / "fit.py"):
        digest.update(path.read_bytes())
    digest.update(repr((SET_ASIDE, SCHEMES, SWEEP_FOLDS, SWEEP_KEY)).encode())
    cases = load_cases(rows)
    for consts in (load_constants(str(PRIORS_YAML)), load_constants(None)):
        for pred in predict_cases(cases, consts):
            digest.update(repr((pred.point_id, pred.status, sorted(pred.values.items()))).encode())
    return digest.hexdigest()[:16]


#: Out-of-sample predictions: scheme -> point_id -> (fold value, prediction).
OOS = dict[str, dict[str, tuple[str, Prediction]]]


def oos_predictions(
    rows: Sequence[Mapping[str, str]], csv_path: Path, *, cache: Path = OOS_CACHE, max_nfev: int = 12
) -> OOS:
    """Every fold's predictions, from the cache when its fingerprint matches, else refitted.

    A valid cache that lacks a scheme (the ``fresh`` block, added after the cache was made)
    gets only that scheme's folds refitted and appended; the fingerprint covers the data and
    the model, not the list of schemes, so the other folds stay as they were scored.
    """
    stamp = fingerprint(csv_path, rows)
    cached = _read_cache(cache, stamp)
    cases = load_cases(rows)
    todo = folds(cases)
    if cached is not None:
        todo = [f for f in todo if f.scheme not in cached]
        if not todo:
            return cached
        logger.info("out-of-sample predictions: refitting the folds of %s", sorted({f.scheme for f in todo}))
    else:
        logger.info("out-of-sample predictions: cache %s stale or missing, refitting every fold", cache)
    prior = load_constants(str(PRIORS_YAML))
    out: OOS = dict(cached or {})
    for fold in todo:
        start = time.perf_counter()
        consts = fit_constants([cases[i] for i in fold.train], prior, max_nfev=max_nfev)
        preds = predict_cases([cases[i] for i in fold.held], consts)
        for i, pred in zip(fold.held, preds, strict=True):
            out.setdefault(fold.scheme, {})[cases[i].row["point_id"]] = (fold.value, pred)
        logger.info(
            "  %s=%s: %d held, %d fitted, %.0f s",
            fold.scheme, fold.value, len(fold.held), len(fold.train), time.perf_counter() - start,
        )  # fmt: skip
    _write_cache(cache, stamp, out)
    return out


_PRED_COLUMNS = [col for _, col in METRICS]


def _write_cache(path: Path, stamp: str, oos: OOS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["fingerprint", "scheme", "fold", "point_id", "status", *_PRED_COLUMNS])
        for scheme, preds in oos.items():
            for pid, (value, pred) in preds.items():
                cells = [pred.values.get(c) for c in _PRED_COLUMNS]
                writer.writerow(
                    [
                        stamp,
                        scheme,
                        value,
                        pid,
                        pred.status,
                        *("" if v is None else f"{v:.6g}" for v in cells),
                    ]
                )


def _read_cache(path: Path, stamp: str) -> OOS | None:
    if not path.is_file():
        return None
    out: OOS = {}
    with path.open(newline="") as fh:
        for rec in csv.DictReader(fh):
            if rec["fingerprint"] != stamp:
                return None
            values = {c: float(rec[c]) for c in _PRED_COLUMNS if rec.get(c)}
            pred = Prediction(rec["point_id"], rec["status"], values)
            out.setdefault(rec["scheme"], {})[rec["point_id"]] = (rec["fold"], pred)
    return out or None
