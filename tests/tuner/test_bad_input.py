"""Bad input, table-driven: every case is one line on stderr, the right exit code, no traceback.

Each row of :data:`CASES` is a command line built from a small real spec (or from a
finished run, its pick, a model directory or a points CSV), the exit code it must give
(2 for bad input, 1 for an SLA nobody meets or a failed check) and a fragment of the
message. The CLI runs in-process through :func:`tuner.cli.main`, with the real spec
parser, catalog, simulator and SQLite storage.

Below the table: the cases that need a file system in a particular state (a read-only run
directory, a full disk), the alias bomb's time, and the secrets rules (no abbreviated
option, no password in ``pick.yaml``).
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tuner.cli import main
from tuner.commands import COMMANDS
from tuner.outputs import write_pick_yaml

from .conftest import small_spec

DELETE = object()
NAN, INF = float("nan"), float("inf")
PG_URL = "postgresql://tuner:s3cret-pw@db.example:5432/studies"

# A billion laughs under a spec field: nine lists of nine references, nine levels deep
# (3.9e8 strings once expanded), and a merge-key bomb that PyYAML alone needs 90 s for.
LIST_BOMB = "\n".join(
    ['x-lol: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"x-a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
)
MERGE_BOMB = "\n".join(
    ["m0: &m0 {k0: 1}"] + [f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: 1}}" for i in range(1, 25)]
)


class Ctx:
    """Builds the files a case needs under ``tmp``; ``run`` is a finished run (read-only
    use: cases that write pass ``--out`` under ``tmp``)."""

    def __init__(self, tmp: Path, run: Path) -> None:
        self.tmp, self.run = tmp, run

    def spec(self, changes: dict[str, Any] | None = None, *extra: str) -> list[str]:
        """``tuner tune SPEC -q`` of the small spec with dotted-path ``changes``."""
        path = small_spec(self.tmp)
        data = yaml.safe_load(path.read_text())
        for dotted, value in (changes or {}).items():
            *parents, leaf = dotted.split(".")
            node = data
            for key in parents:
                node = node.setdefault(key, {})
            if value is DELETE:
                node.pop(leaf, None)
            else:
                node[leaf] = value
        path.write_text(yaml.safe_dump(data))
        return ["tune", str(path), "-q", *extra]

    def raw(self, content: str | bytes, name: str = "spec.yaml") -> Path:
        path = self.tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    def spec_text(self, prefix: str, changes: str = "") -> list[str]:
        """A spec whose YAML text starts with ``prefix`` (anchors) and ends with ``changes``
        (keys replacing the small spec's)."""
        base = yaml.safe_load(small_spec(self.tmp).read_text())
        for key in re.findall(r"^([\w-]+):", changes, flags=re.MULTILINE):
            base.pop(key, None)
        text = prefix + "\n" + yaml.safe_dump(base) + changes + "\n"
        return ["tune", str(self.raw(text)), "-q"]

    def model(self, config: str | bytes | dict[str, Any]) -> list[str]:
        """A spec whose model is a directory holding this ``config.json``."""
        model = self.tmp / "model"
        model.mkdir(exist_ok=True)
        body = config if isinstance(config, (str, bytes)) else _json(config)
        (model / "config.json").write_bytes(body if isinstance(body, bytes) else body.encode())
        return self.spec({"model": str(model)})

    def pick(self, change: Callable[[dict[str, Any]], None], *extra: str) -> list[str]:
        """``tuner check`` of the run's pick.yaml after ``change`` edited it."""
        doc = yaml.safe_load((self.run / "pick.yaml").read_text())
        change(doc)
        path = self.tmp / "pick.yaml"
        path.write_text(yaml.safe_dump(doc))
        return ["check", str(path), *extra]

    def csv(self, content: bytes) -> list[str]:
        return ["validate", str(self.raw(content, "points.csv")), "--out", str(self.tmp / "pred.csv")]


def _json(config: dict[str, Any]) -> str:
    import json

    return json.dumps(config)


LLAMA_CONFIG = {"num_hidden_layers": 2, "hidden_size": 256, "num_attention_heads": 4, "vocab_size": 1000}


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = doc
        for key in parents:
            node = node[key]
        node[leaf] = value

    return change


def _bigger_than_fleet(doc: dict[str, Any]) -> None:
    role = "agg" if doc["deployment"]["mode"] == "agg" else "decode"
    doc["deployment"][role]["count"] = 64
    doc["deployment"].pop("gpus", None)
    doc["deployment"].pop("label", None)
    doc["operating_point"]["gpus"] = 64 * doc["operating_point"]["gpus"]


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[Ctx], list[str]]
    code: int
    fragment: str


CASES = [
    # -- the spec, field by field ----------------------------------------------------------
    Case("model missing", lambda c: c.spec({"model": DELETE}), 2, "model: got None; required"),
    Case("model not a string", lambda c: c.spec({"model": 123}), 2, "model: got 123; must be a non-empty"),
    Case("model empty", lambda c: c.spec({"model": ""}), 2, "model: got ''; must be a non-empty string"),
    Case(
        "model unknown",
        lambda c: c.spec({"model": "no-such-model"}),
        2,
        "model: got 'no-such-model'; allowed",
    ),
    Case("model 100k characters", lambda c: c.spec({"model": "x" * 100_000}), 2, "model: got 'xxxxxxxx"),
    Case(
        "precision unknown",
        lambda c: c.spec({"precision": "int3"}),
        2,
        "precision: got 'int3'; allowed: bf16",
    ),
    Case("hardware missing", lambda c: c.spec({"hardware": DELETE}), 2, "hardware: got None; required"),
    Case(
        "hardware a string",
        lambda c: c.spec({"hardware": "H100"}),
        2,
        "hardware: got 'H100'; must be a mapping",
    ),
    Case("gpu unknown", lambda c: c.spec({"hardware.gpu": "Z100"}), 2, "gpu: got 'Z100'; allowed:"),
    Case(
        "gpus 0", lambda c: c.spec({"hardware.gpus": 0}), 2, "hardware.gpus: got 0; must be an integer >= 1"
    ),
    Case(
        "gpus negative",
        lambda c: c.spec({"hardware.gpus": -8}),
        2,
        "hardware.gpus: got -8; must be an integer",
    ),
    Case(
        "gpus a string",
        lambda c: c.spec({"hardware.gpus": "8"}),
        2,
        "hardware.gpus: got '8'; must be an integer",
    ),
    Case("gpus a bool", lambda c: c.spec({"hardware.gpus": True}), 2, "hardware.gpus: got True"),
    Case("gpus fractional", lambda c: c.spec({"hardware.gpus": 2.5}), 2, "hardware.gpus: got 2.5"),
    Case(
        "gpus a billion",
        lambda c: c.spec({"hardware.gpus": 1_000_000_000, "hardware.gpus_per_node": 8}),
        2,
        "hardware.gpus: got 1000000000; must be an integer in [1, 1,000,000]",
    ),
    Case(
        "gpus not a multiple of gpus_per_node",
        lambda c: c.spec({"hardware.gpus": 3, "hardware.gpus_per_node": 2}),
        2,
        "hardware.gpus: got 3; must be a multiple of hardware.gpus_per_node (2)",
    ),
    Case(
        "gpus_per_node 0", lambda c: c.spec({"hardware.gpus_per_node": 0}), 2, "hardware.gpus_per_node: got 0"
    ),
    Case(
        "hardware unknown key",
        lambda c: c.spec({"hardware.nodes": 2}),
        2,
        "hardware.nodes: got 2; unknown key",
    ),
    Case(
        "hardware profile missing",
        lambda c: c.spec({"hardware.profile": "/nonexistent/profile.yaml"}),
        2,
        "hardware.profile: got '/nonexistent/profile.yaml'",
    ),
    Case("isl 0", lambda c: c.spec({"workload.isl": 0}), 2, "workload.isl: got 0; must be an integer >= 1"),
    Case("osl a string", lambda c: c.spec({"workload.osl": "long"}), 2, "workload.osl: got 'long'"),
    Case("isl missing", lambda c: c.spec({"workload.isl": DELETE}), 2, "workload.isl: got None; required"),
    Case(
        "concurrency empty", lambda c: c.spec({"workload.concurrency": []}), 2, "workload.concurrency: got []"
    ),
    Case(
        "concurrency decreasing",
        lambda c: c.spec({"workload.concurrency": [4, 2]}),
        2,
        "workload.concurrency: got [4, 2]; must be strictly increasing",
    ),
    Case(
        "concurrency zero",
        lambda c: c.spec({"workload.concurrency": [0, 4]}),
        2,
        "workload.concurrency: got 0",
    ),
    Case(
        "concurrency a string",
        lambda c: c.spec({"workload.concurrency": "1,2"}),
        2,
        "workload.concurrency: got",
    ),
    Case(
        "range_ratio 1.5", lambda c: c.spec({"workload.range_ratio": 1.5}), 2, "workload.range_ratio: got 1.5"
    ),
    Case(
        "range_ratio nan",
        lambda c: c.spec({"workload.range_ratio": NAN}),
        2,
        "workload.range_ratio: got '.nan",
    ),
    Case(
        "dataset unknown",
        lambda c: c.spec({"workload.dataset": "sharegpt"}),
        2,
        "workload.dataset: got 'sharegpt'",
    ),
    Case(
        "lengths distribution unknown",
        lambda c: c.spec({"workload.isl": DELETE, "workload.lengths": {"input": {"distribution": "zipf"}}}),
        2,
        "workload.lengths.input.distribution: got 'zipf'; allowed: fixed, uniform, normal, lognormal",
    ),
    Case(
        "lengths normal without std",
        lambda c: c.spec(
            {"workload.isl": DELETE, "workload.lengths": {"input": {"distribution": "normal", "mean": 9}}}
        ),
        2,
        "workload.lengths.input.std: got None; required",
    ),
    Case(
        "lengths uniform max below min",
        lambda c: c.spec(
            {
                "workload.osl": DELETE,
                "workload.lengths": {"output": {"distribution": "uniform", "min": 9, "max": 3}},
            }
        ),
        2,
        "workload.lengths.output.max: got 3; must be an integer >= 9",
    ),
    Case(
        "lengths unknown key",
        lambda c: c.spec(
            {
                "workload.isl": DELETE,
                "workload.lengths": {"input": {"distribution": "fixed", "mean": 9, "std": 1}},
            }
        ),
        2,
        "workload.lengths.input.std: got 1; unknown key; allowed: distribution, mean",
    ),
    Case(
        "lengths and isl both",
        lambda c: c.spec({"workload.lengths": {"input": {"distribution": "fixed", "mean": 9}}}),
        2,
        "workload.isl: got 1000; give either workload.isl or workload.lengths.input",
    ),
    Case(
        "dataset file missing",
        lambda c: c.spec(
            {"workload.isl": DELETE, "workload.osl": DELETE, "workload.file": "/nonexistent/w.csv"}
        ),
        2,
        "workload.file: got '/nonexistent/w.csv'; must be an existing .csv or .jsonl file",
    ),
    Case(
        "dataset file bad cell",
        lambda c: c.spec(
            {
                "workload.isl": DELETE,
                "workload.osl": DELETE,
                "workload.file": str(c.raw("input_tokens,output_tokens\n5,5\n5,-1\n", "w.csv")),
            }
        ),
        2,
        "w.csv line 3'; must be an integer >= 1 (got '-1')",
    ),
    Case(
        "request_rates decreasing",
        lambda c: c.spec({"workload.request_rates": [4, 2]}),
        2,
        "workload.request_rates: got [4, 2]; must be strictly increasing",
    ),
    Case(
        "request_rates zero",
        lambda c: c.spec({"workload.request_rates": [0]}),
        2,
        "workload.request_rates: got 0; must be a number > 0",
    ),
    Case(
        "poisson without rates",
        lambda c: c.spec({"workload.arrivals": "poisson"}),
        2,
        "workload.request_rates: got None; required with workload.arrivals: poisson",
    ),
    Case(
        "trace without timestamps",
        lambda c: c.spec({"workload.arrivals": "trace"}),
        2,
        "workload.arrivals: got 'trace'; needs a workload.file with an arrival_s column",
    ),
    Case(
        "shared_prefix 1",
        lambda c: c.spec({"workload.shared_prefix": 1}),
        2,
        "workload.shared_prefix: got 1; must be in [0, 1)",
    ),
    Case(
        "min_goodput above 1",
        lambda c: c.spec({"sla.min_goodput": 1.5, "sla.max_ttft_ms": 100}),
        2,
        "sla.min_goodput: got 1.5; must be a share in (0, 1]",
    ),
    Case(
        "min_goodput without a latency limit",
        lambda c: c.spec({"sla.min_goodput": 0.9}),
        2,
        "sla.min_goodput: got 0.9; needs a latency limit",
    ),
    Case(
        "max_e2e_ms 0",
        lambda c: c.spec({"sla.max_e2e_ms": 0}),
        2,
        "sla.max_e2e_ms: got 0; must be a number > 0",
    ),
    Case(
        "min_tok_s_user nan",
        lambda c: c.spec({"sla.min_tok_s_user": NAN}),
        2,
        "sla.min_tok_s_user: got '.nan",
    ),
    Case(
        "min_tok_s_user inf",
        lambda c: c.spec({"sla.min_tok_s_user": INF}),
        2,
        "sla.min_tok_s_user: got '.inf",
    ),
    Case("min_tok_s_user -inf", lambda c: c.spec({"sla.min_tok_s_user": -INF}), 2, "must be a finite number"),
    Case(
        "min_tok_s_user negative",
        lambda c: c.spec({"sla.min_tok_s_user": -1}),
        2,
        "sla.min_tok_s_user: got -1",
    ),
    Case(
        "max_ttft_ms 0",
        lambda c: c.spec({"sla.max_ttft_ms": 0}),
        2,
        "sla.max_ttft_ms: got 0; must be a number > 0",
    ),
    Case("max_tpot_ms nan", lambda c: c.spec({"sla.max_tpot_ms": NAN}), 2, "sla.max_tpot_ms: got '.nan"),
    Case(
        "percentile 75",
        lambda c: c.spec({"sla.percentile": 75}),
        2,
        "sla.percentile: got 75; allowed: 50, 90, 99",
    ),
    Case("sla unknown key", lambda c: c.spec({"sla.max_itl_ms": 5}), 2, "sla.max_itl_ms: got 5; unknown key"),
    Case(
        "trials 0", lambda c: c.spec({"study.trials": 0}), 2, "study.trials: got 0; must be an integer >= 1"
    ),
    Case(
        "trials -5",
        lambda c: c.spec({"study.trials": -5}),
        2,
        "study.trials: got -5; must be an integer >= 1",
    ),
    Case(
        "sampler unknown",
        lambda c: c.spec({"study.sampler": "cmaes"}),
        2,
        "study.sampler: got 'cmaes'; allowed",
    ),
    Case(
        "objective unknown",
        lambda c: c.spec({"study.objective": "latency"}),
        2,
        "study.objective: got 'latency'",
    ),
    Case(
        "seed negative",
        lambda c: c.spec({"study.seed": -1}),
        2,
        "study.seed: got -1; must be an integer >= 0",
    ),
    Case(
        "guided a string",
        lambda c: c.spec({"study.guided": "yes"}),
        2,
        "study.guided: got 'yes'; allowed: true",
    ),
    Case("explore_after -1", lambda c: c.spec({"study.explore_after": -1}), 2, "study.explore_after: got -1"),
    Case(
        "mysql without its driver",
        lambda c: c.spec({"study.storage": "mysql://tuner:s3cret-pw@localhost/db"}),
        2,
        "storage mysql://tuner:***@localhost/db: the database driver is not installed (MySQLdb)",
    ),
    Case("backend unknown", lambda c: c.spec({"backend.name": "nosuch"}), 2, "nosuch"),
    Case("backend options a list", lambda c: c.spec({"backend.options": [1]}), 2, "backend.options: got [1]"),
    Case(
        "simulator constants not UTF-8",
        lambda c: c.spec({"backend.options": {"constants": str(c.raw(b"k: \xff\n", "constants.yaml"))}}),
        2,
        "backend.options.constants: got",
    ),
    Case(
        "preset unknown",
        lambda c: c.spec({"search_space.preset": "nosuch"}),
        2,
        "search_space.preset: got 'nosuch'",
    ),
    Case(
        "preset file with nan",
        lambda c: c.spec({"search_space.preset": str(c.raw("gpu_memory_utilization: .nan\n", "space.yaml"))}),
        2,
        "gpu_memory_utilization: got '.nan",
    ),
    Case(
        "overrides a number",
        lambda c: c.spec({"search_space.overrides": 5}),
        2,
        "search_space.overrides: got 5",
    ),
    Case(
        "unknown top-level key",
        lambda c: c.spec({"modle": "x"}),
        2,
        "modle: got 'x'; unknown key; allowed: model",
    ),
    Case(
        "output_dir empty", lambda c: c.spec({"output_dir": ""}), 2, "output_dir: got ''; must be a non-empty"
    ),
    # -- the spec file itself ----------------------------------------------------------------
    Case("spec missing", lambda c: ["tune", str(c.tmp / "none.yaml")], 2, "must be an existing YAML file"),
    Case("spec a directory", lambda c: ["tune", str(c.tmp)], 2, "spec: got"),
    Case(
        "spec not UTF-8",
        lambda c: ["tune", str(c.raw(b"model: \xff\xfe\n"))],
        2,
        "must be UTF-8 text (byte 7 is 0xff)",
    ),
    Case(
        "spec not YAML",
        lambda c: ["tune", str(c.raw("model: [unclosed\n"))],
        2,
        "line 2'; must be valid YAML",
    ),
    Case(
        "spec a list", lambda c: ["tune", str(c.raw("- 1\n- 2\n"))], 2, "spec: got [1, 2]; must be a mapping"
    ),
    Case(
        "spec alias bomb",
        lambda c: c.spec_text(LIST_BOMB, "search_space: {preset: small, overrides: {agg: *a8}}"),
        2,
        "YAML aliases may expand to at most 100,000 values",
    ),
    Case(
        "spec merge-key bomb",
        lambda c: c.spec_text(MERGE_BOMB),
        2,
        "YAML aliases may expand to at most 100,000",
    ),
    Case(
        "spec recursive alias",
        lambda c: c.spec_text("", "search_space: &s {preset: small, overrides: {agg: *s}}"),
        2,
        "must not contain itself (a recursive YAML alias)",
    ),
    Case(
        "spec integer of 5000 digits",
        lambda c: c.spec_text("", f"output_dir: {'9' * 5000}"),
        2,
        "must be valid YAML (Exceeds the limit",
    ),
    Case(
        "spec nested 10000 deep", lambda c: c.spec_text("", "x: " + "[" * 10000 + "]" * 10000), 2, "spec: got"
    ),
    # -- a model directory ------------------------------------------------------------------
    Case("config.json garbage", lambda c: c.model("garbage{"), 2, "config.json): got 'Expecting value"),
    Case(
        "config.json a list",
        lambda c: c.model("[1, 2]"),
        2,
        "config.json): got [1, 2]; must be a JSON object",
    ),
    Case(
        "config.json zero heads",
        lambda c: c.model({**LLAMA_CONFIG, "num_attention_heads": 0}),
        2,
        "config.json) num_attention_heads: got 0; must be an integer in [1, 2^40]",
    ),
    Case(
        "config.json string hidden size",
        lambda c: c.model({**LLAMA_CONFIG, "hidden_size": "256"}),
        2,
        "config.json) hidden_size: got '256'",
    ),
    Case("config.json NaN", lambda c: c.model('{"num_hidden_layers": NaN}'), 2, "NaN is not a number"),
    Case("config.json not UTF-8", lambda c: c.model(b'{"a": "\xff"}'), 2, "must be UTF-8 text"),
    Case(
        "config.json without layers",
        lambda c: c.model({"hidden_size": 256, "num_attention_heads": 4, "vocab_size": 10}),
        2,
        "needs 'num_hidden_layers'",
    ),
    Case(
        "config.json hidden below heads",
        lambda c: c.model({**LLAMA_CONFIG, "hidden_size": 2}),
        2,
        "hidden_size: got 2; must be at least num_attention_heads (4)",
    ),
    # -- command lines ----------------------------------------------------------------------
    Case(
        "--trials 0",
        lambda c: c.spec({}, "--trials", "0"),
        2,
        "argument --trials: got '0'; must be an integer >= 1",
    ),
    Case(
        "--trials -5",
        lambda c: c.spec({}, "--trials", "-5"),
        2,
        "argument --trials: got '-5'; must be an integer",
    ),
    Case("--trials abc", lambda c: c.spec({}, "--trials", "abc"), 2, "argument --trials: got 'abc'"),
    Case(
        "--seed -1",
        lambda c: c.spec({}, "--seed", "-1"),
        2,
        "argument --seed: got '-1'; must be an integer >= 0",
    ),
    Case("--workers 0", lambda c: c.spec({}, "--workers", "0"), 2, "argument --workers: got '0'"),
    Case(
        "--sampler unknown",
        lambda c: c.spec({}, "--sampler", "cmaes"),
        2,
        "argument --sampler: invalid choice",
    ),
    Case("--tri abbreviated", lambda c: c.spec({}, "--tri", "5"), 2, "unrecognized arguments: --tri 5"),
    Case(
        "--out not a directory",
        lambda c: c.spec({}, "--out", "/dev/null/run"),
        2,
        "output_dir (--out): got '/dev/null/run'; must be a directory we can write (Not a directory)",
    ),
    Case(
        "--hardware-profile not UTF-8",
        lambda c: c.spec({}, "--hardware-profile", str(c.raw(b"\xff", "profile.yaml"))),
        2,
        "hardware.profile: got",
    ),
    Case(
        "k8s-workers --storage read as --storage-secret",
        lambda c: ["k8s-workers", "--study", "s", "--storage", PG_URL],
        2,
        "unrecognized arguments: --storage postgresql://tuner:***@db.example",
    ),
    Case(
        "k8s-workers --workers 0",
        lambda c: ["k8s-workers", "--study", "s", "--workers", "0"],
        2,
        "--workers: got '0'",
    ),
    Case(
        "k8s-workers --out on a full disk",
        lambda c: ["k8s-workers", "--study", "s", "--out", "/dev/full"],
        2,
        "--out: got '/dev/full'; must be a writable file path (No space left on device)",
    ),
    Case(
        "router --port 99999",
        lambda c: ["router", "--port", "99999", "--prefill", "a", "--decode", "b"],
        2,
        "--port: got '99999'; must be an integer in [1, 65535]",
    ),
    Case(
        "router --port 0",
        lambda c: ["router", "--port", "0", "--prefill", "a", "--decode", "b"],
        2,
        "--port: got '0'",
    ),
    Case(
        "router without --prefill",
        lambda c: ["router", "--port", "8000", "--decode", "b"],
        2,
        "--prefill/--decode",
    ),
    Case(
        "worker --heartbeat 0",
        lambda c: ["worker", "--storage", "sqlite:///x.db", "--study", "s", "--heartbeat", "0"],
        2,
        "--heartbeat: got '0'",
    ),
    Case(
        "worker --stor abbreviated",
        lambda c: ["worker", "--stor", "x", "--study", "s"],
        2,
        "unrecognized arguments: --stor",
    ),
    Case(
        "profile --budget-s nan",
        lambda c: ["profile", "--budget-s", "nan"],
        2,
        "--budget-s: got 'nan'; must be a finite",
    ),
    Case("unknown command", lambda c: ["tunes"], 2, "invalid choice: 'tunes'"),
    # -- a finished run ---------------------------------------------------------------------
    Case("show missing run", lambda c: ["show", str(c.tmp / "none")], 2, "RUN: got"),
    Case("show --top 0", lambda c: ["show", str(c.run), "--top", "0"], 2, "--top: got '0'"),
    Case("status --top -1", lambda c: ["status", str(c.run), "--top", "-1"], 2, "--top: got '-1'"),
    Case(
        "pick --min-tok-s-user nan",
        lambda c: ["pick", str(c.run), "--min-tok-s-user", "nan"],
        2,
        "--min-tok-s-user: got 'nan'",
    ),
    Case(
        "pick --max-ttft-ms inf",
        lambda c: ["pick", str(c.run), "--max-ttft-ms", "inf"],
        2,
        "--max-ttft-ms: got 'inf'",
    ),
    Case(
        "pick --max-tpot-ms -1",
        lambda c: ["pick", str(c.run), "--max-tpot-ms", "-1"],
        2,
        "--max-tpot-ms: got '-1'",
    ),
    Case(
        "pick --percentile 75",
        lambda c: ["pick", str(c.run), "--percentile", "75"],
        2,
        "--percentile: invalid choice",
    ),
    Case(
        "pick --min abbreviated",
        lambda c: ["pick", str(c.run), "--min", "5"],
        2,
        "unrecognized arguments: --min",
    ),
    Case(
        "pick an impossible SLA (exit 1)",
        lambda c: ["pick", str(c.run), "--min-tok-s-user", "1000000", "--out", str(c.tmp / "re")],
        1,
        "no point meets min_tok_s_user",
    ),
    Case(
        "export --out not a directory",
        lambda c: ["export", str(c.run), "--out", "/dev/null/x"],
        2,
        "--out: got '/dev/null/x'; must be a writable directory",
    ),
    # -- tuner check ------------------------------------------------------------------------
    Case(
        "check pick.yaml not UTF-8",
        lambda c: ["check", str(c.raw(b"kind: \xff", "pick.yaml"))],
        2,
        "pick: got",
    ),
    Case(
        "check pick.yaml alias bomb",
        lambda c: ["check", str(c.raw(LIST_BOMB + "\nspec: *a8\n", "pick.yaml"))],
        2,
        "YAML aliases may expand to at most",
    ),
    Case(
        "check deployment larger than the spec's GPUs",
        lambda c: c.pick(_bigger_than_fleet),
        2,
        "must fit the spec's hardware (2 x H100): gpu_budget:",
    ),
    Case(
        "check operating point ttft nan",
        lambda c: c.pick(_set("operating_point.ttft_ms", NAN)),
        2,
        "operating_point.ttft_ms: got '.nan",
    ),
    Case(
        "check sla nan", lambda c: c.pick(_set("sla.min_tok_s_user", NAN)), 2, "sla.min_tok_s_user: got '.nan"
    ),
    Case(
        "check --tolerance 150%",
        lambda c: c.pick(lambda d: None, "--tolerance", "150%"),
        2,
        "--tolerance: got '150%'",
    ),
    Case(
        "check --json on a full disk",
        lambda c: c.pick(lambda d: None, "--json", "/dev/full"),
        2,
        "--json: got '/dev/full'; must be a writable file path (No space left on device)",
    ),
    Case(
        "check lost throughput (exit 1)",
        lambda c: c.pick(
            lambda d: d["operating_point"].update(tok_s_gpu=d["operating_point"]["tok_s_gpu"] * 10)
        ),
        1,
        "check failed: tok_s_gpu fell",
    ),
    # -- tuner validate ---------------------------------------------------------------------
    Case("validate CSV not UTF-8", lambda c: c.csv(b"model,isl\n\xff,1\n"), 2, "POINTS: got"),
    Case("validate CSV missing columns", lambda c: c.csv(b"a,b\n1,2\n"), 2, "missing columns"),
    Case(
        "validate CSV missing",
        lambda c: ["validate", "/nonexistent.csv", "--out", "x.csv"],
        2,
        "must be an existing CSV",
    ),
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small finished run on the simulator (its pick.yaml, study.db, ...), shared."""
    tmp = tmp_path_factory.mktemp("run")
    assert main(["tune", str(small_spec(tmp)), "-q"]) == 0
    return tmp / "run"


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(
    case: Case, tmp_path: Path, finished_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = case.argv(Ctx(tmp_path, finished_run))
    capsys.readouterr()
    start = time.perf_counter()
    code = main(argv)
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err.strip()
    assert code == case.code, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert case.fragment in err, err
    assert len(err) < 600, err  # a huge value is truncated, not echoed
    assert "s3cret-pw" not in err
    assert elapsed < 20


def test_alias_bomb_returns_in_well_under_a_second(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = Ctx(tmp_path, tmp_path)
    for argv in (
        ctx.spec_text(LIST_BOMB, "search_space: {preset: small, overrides: {agg: *a8}}"),
        ctx.spec_text(MERGE_BOMB),
    ):
        start = time.perf_counter()
        assert main(argv) == 2
        assert time.perf_counter() - start < 0.5
    assert "aliases may expand" in capsys.readouterr().err


def test_honest_anchors_still_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Aliases are bounded, not banned: a spec that shares a list by anchor still runs."""
    argv = Ctx(tmp_path, tmp_path).spec_text(
        "", "workload: {isl: &len 1000, osl: *len, concurrency: [1, 16]}"
    )
    assert main(argv) == 0, capsys.readouterr().err


def test_no_option_accepts_an_abbreviation(capsys: pytest.CaptureFixture[str]) -> None:
    """Every long option of every subcommand, cut by one letter, is refused (exit 2)."""
    checked = 0
    for command in COMMANDS:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        options = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", capsys.readouterr().out)) - {"--help"}
        for option in sorted(options):
            prefix = option[:-1]
            if prefix in options or len(prefix) < 4:
                continue
            assert main([command, prefix, "1"]) == 2, (command, option)
            err = capsys.readouterr().err.strip()
            # Refused as unknown, or for the required options it did not stand in for.
            assert len(err.splitlines()) == 1 and (prefix in err or "required" in err), err
            checked += 1
    assert checked >= 30


def test_pick_yaml_holds_no_password(finished_run: Path, tmp_path: Path) -> None:
    doc = yaml.safe_load((finished_run / "pick.yaml").read_text())
    doc["study"]["storage"] = PG_URL
    doc["spec"]["study"]["storage"] = PG_URL
    original = copy.deepcopy(doc)
    write_pick_yaml(tmp_path / "pick.yaml", doc)
    text = (tmp_path / "pick.yaml").read_text()
    assert "s3cret-pw" not in text
    assert "postgresql://tuner:***@db.example:5432/studies" in text
    assert doc == original  # the caller's document is left alone
    assert stat.S_IMODE((tmp_path / "pick.yaml").stat().st_mode) & 0o044  # still readable


# -- file systems in a particular state -----------------------------------------------------
@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` (root only: skips elsewhere)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def test_read_only_run_is_shown_and_repicked(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _tmpfs(tmp_path / "ro", "20m") as mnt:
        shutil.copytree(finished_run, mnt / "run")
        spec = mnt / "spec.yaml"
        data = yaml.safe_load((finished_run.parent / "spec.yaml").read_text())
        spec.write_text(yaml.safe_dump({**data, "output_dir": str(mnt / "run")}))
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        capsys.readouterr()
        assert main(["show", str(mnt / "run"), "--json"]) == 0
        assert main(["status", str(mnt / "run")]) == 0
        assert main(["pick", str(mnt / "run"), "--min-tok-s-user", "50", "--out", str(tmp_path / "re")]) == 0
        assert (tmp_path / "re" / "pick.yaml").is_file()
        capsys.readouterr()
        for argv, fragment in (
            (["pick", str(mnt / "run")], "Read-only file system; write elsewhere with --out DIR"),
            (["tune", str(spec), "-q"], "must be a directory we can write (Read-only file system)"),
        ):
            assert main(argv) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and fragment in err and "Traceback" not in err, err


def test_full_disk_during_tune_is_one_line_and_the_run_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _tmpfs(tmp_path / "disk", "2m") as mnt:
        spec = small_spec(mnt)
        filler = mnt / "filler"
        filler.write_bytes(b"\0" * (1800 * 1024))  # leaves about 250 KiB: the chart does not fit
        assert main(["tune", str(spec), "-q"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert "No space left on device" in err or "disk full" in err, err
        filler.unlink()
        assert main(["tune", str(spec), "-q"]) == 0, capsys.readouterr().err
        assert (mnt / "run" / "pick.yaml").is_file()
        assert main(["status", str(mnt / "run"), "--json"]) == 0
        assert '"COMPLETE": 12' in capsys.readouterr().out
