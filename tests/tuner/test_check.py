"""``tuner check``: a real tiny study on the simulator, then its pick.yaml checked again.

Covers a passing check, checks that fail (throughput recorded above what the backend
measures, an SLA the point no longer meets, a deployment the backend refuses), the JUnit and
JSON reports, and bad inputs (exit 2, one line, no traceback).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import backends
from serving import ConfigError, Deployment, LoadPoint, Problem
from tuner.check import load_request, parse_tolerance, run_check
from tuner.cli import main

SPEC = {
    "model": "meta-llama/Llama-3.1-8B",
    "precision": "bf16",
    "hardware": {"gpu": "H100", "gpus": 1},
    "workload": {"isl": 1000, "osl": 200, "concurrency": [8, 32, 64]},
    "sla": {"min_tok_s_user": 60, "max_ttft_ms": 500},
    "search_space": {"preset": "small"},
    "backend": {"name": "simulator"},
    "study": {"sampler": "tpe", "trials": 4, "seed": 0},
}
SLA_CASES = ["sla.min_tok_s_user", "sla.max_ttft_ms"]
THROUGHPUT_CASE = "throughput.tok_s_gpu"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real study (4 trials on the simulator) shared by the tests of this module."""
    root = tmp_path_factory.mktemp("check")
    spec = root / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    assert main(["tune", str(spec), "--out", str(root / "run"), "-q"]) == 0
    assert (root / "run" / "pick.yaml").is_file()
    return root / "run"


@pytest.fixture
def pick_doc(run_dir: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((run_dir / "pick.yaml").read_text())
    return doc


@pytest.fixture
def write_pick(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    def write(doc: dict[str, Any]) -> Path:
        path = tmp_path / "pick.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    return write


def check(pick: Path | str, tmp_path: Path, *extra: str) -> int:
    argv = [
        "check",
        str(pick),
        "--junit",
        str(tmp_path / "out" / "junit.xml"),
        "--json",
        str(tmp_path / "out" / "summary.json"),
        *extra,
    ]
    return main(argv)


def junit(tmp_path: Path) -> ET.Element:
    """The report, checked for the structure CI tools expect; returns the one testsuite."""
    root = ET.parse(tmp_path / "out" / "junit.xml").getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    failed = [c for c in cases if c.find("failure") is not None]
    assert suite.get("tests") == root.get("tests") == str(len(cases))
    assert suite.get("failures") == root.get("failures") == str(len(failed))
    for case in cases:
        assert case.get("classname", "").startswith("tuner.check.") and case.get("name")
        failure = case.find("failure")
        if failure is not None:
            assert failure.get("message") and failure.get("type")
    return suite


def failures(suite: ET.Element) -> dict[str, str]:
    out = {}
    for case in suite.findall("testcase"):
        failure = case.find("failure")
        if failure is not None:
            out[case.get("name", "")] = failure.get("message", "")
    return out


def summary(tmp_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / "out" / "summary.json").read_text())
    return data


# -- passing -----------------------------------------------------------------------------


def test_check_passes_on_an_unchanged_pick(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(run_dir / "pick.yaml", tmp_path) == 0
    suite = junit(tmp_path)
    assert [c.get("name") for c in suite.findall("testcase")] == [*SLA_CASES, THROUGHPUT_CASE]
    assert failures(suite) == {}
    data = summary(tmp_path)
    assert data["verdict"] == "pass" and data["reasons"] == []
    assert data["tolerance"] == pytest.approx(0.05)
    recorded = data["expected"]["operating_point"]
    assert data["measured"]["tok_s_gpu"] == pytest.approx(recorded["tok_s_gpu"], rel=1e-6)
    assert data["measured"]["concurrency"] == recorded["concurrency"]
    assert data["expected"]["min_tok_s_gpu"] == pytest.approx(recorded["tok_s_gpu"] * 0.95, rel=1e-6)
    assert [c["passed"] for c in data["checks"]] == [True, True, True]
    text = capsys.readouterr().out
    assert "throughput.tok_s_gpu" in text and "check passed" in text


def test_check_accepts_the_run_directory(run_dir: Path, tmp_path: Path) -> None:
    assert main(["check", str(run_dir), "--backend", "simulator"]) == 0


def test_check_measures_only_the_operating_point(run_dir: Path) -> None:
    seen: list[tuple[int, ...]] = []
    sim = backends.create("simulator")

    class Spy:
        name = "simulator"
        capabilities = sim.capabilities

        def check(self, deployment: Deployment, problem: Problem) -> str | None:
            return sim.check(deployment, problem)

        def measure(self, deployment: Deployment, problem: Problem, **kw: Any) -> list[LoadPoint]:
            seen.append(problem.workload.concurrency)
            return sim.measure(deployment, problem, **kw)

        def describe(self) -> dict[str, Any]:
            return sim.describe()

    request = load_request(run_dir / "pick.yaml")
    result = run_check(request, Spy())
    assert result.passed
    assert seen == [(request.expected.concurrency,)]


# -- failing -----------------------------------------------------------------------------


def test_check_fails_when_recorded_throughput_is_above_measured(
    pick_doc: dict[str, Any],
    write_pick: Callable[[dict[str, Any]], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pick_doc["operating_point"]["tok_s_gpu"] *= 1.25  # the backend now measures 20% less
    assert check(write_pick(pick_doc), tmp_path) == 1
    failed = failures(junit(tmp_path))
    assert list(failed) == [THROUGHPUT_CASE]
    assert "fell" in failed[THROUGHPUT_CASE] and "-20.0%" in failed[THROUGHPUT_CASE]
    data = summary(tmp_path)
    assert data["verdict"] == "fail"
    assert len(data["reasons"]) == 1 and data["reasons"][0].startswith("tok_s_gpu fell")
    assert "check failed: tok_s_gpu fell" in capsys.readouterr().err


def test_tolerance_absorbs_a_small_drop(
    pick_doc: dict[str, Any], write_pick: Callable[[dict[str, Any]], Path], tmp_path: Path
) -> None:
    pick_doc["operating_point"]["tok_s_gpu"] *= 1.03  # measured is ~2.9% below the record
    path = write_pick(pick_doc)
    assert check(path, tmp_path) == 0
    assert check(path, tmp_path, "--tolerance", "0.05") == 0
    assert check(path, tmp_path, "--tolerance", "1%") == 1
    assert summary(tmp_path)["tolerance"] == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("key", "scale", "measured_key"),
    [("min_tok_s_user", 2.0, "tok_s_user"), ("max_ttft_ms", 0.5, "ttft_ms_p50")],
)
def test_check_fails_when_the_sla_is_no_longer_met(
    pick_doc: dict[str, Any],
    write_pick: Callable[[dict[str, Any]], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    key: str,
    scale: float,
    measured_key: str,
) -> None:
    measured = pick_doc["operating_point"][measured_key]
    pick_doc["sla"][key] = round(measured * scale, 1)
    assert check(write_pick(pick_doc), tmp_path) == 1
    suite = junit(tmp_path)
    failed = failures(suite)
    assert list(failed) == [f"sla.{key}"]
    (case,) = [c for c in suite.findall("testcase") if c.get("name") == f"sla.{key}"]
    failure = case.find("failure")
    assert failure is not None and failure.get("type") == "SLAViolation"
    assert f"{pick_doc['sla'][key]:g}" in failed[f"sla.{key}"]  # the expected bound
    shown = re.search(r"measured ([\d,.]+)", failed[f"sla.{key}"])  # and what was measured
    assert shown is not None and float(shown.group(1).replace(",", "")) == pytest.approx(measured, abs=0.006)
    data = summary(tmp_path)
    assert data["verdict"] == "fail" and f"SLA {key} violated" in data["reasons"][0]
    assert f"check failed: SLA {key} violated" in capsys.readouterr().err


def test_deployment_the_backend_refuses_fails_the_check(
    pick_doc: dict[str, Any],
    write_pick: Callable[[dict[str, Any]], Path],
    tmp_path: Path,
) -> None:
    role = "agg" if pick_doc["deployment"]["mode"] == "agg" else "decode"
    pick_doc["deployment"][role]["gpu_memory_utilization"] = 0.05  # 4 GB for 16 GB of weights
    assert check(write_pick(pick_doc), tmp_path) == 1
    assert list(failures(junit(tmp_path))) == ["measure"]
    data = summary(tmp_path)
    assert data["measured"] is None and "could not be measured" in data["reasons"][0]


# -- bad input ---------------------------------------------------------------------------


def _drop(*keys: str) -> Callable[[dict[str, Any]], Any]:
    def edit(doc: dict[str, Any]) -> Any:
        node = doc
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]
        return doc

    return edit


def _set(value: Any, *keys: str) -> Callable[[dict[str, Any]], Any]:
    def edit(doc: dict[str, Any]) -> Any:
        node = doc
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
        return doc

    return edit


BAD_DOCS: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "no operating point": (_drop("operating_point"), "operating_point: got None; required"),
    "no tok_s_gpu": (_drop("operating_point", "tok_s_gpu"), "operating_point.tok_s_gpu"),
    "text tok_s_gpu": (_set("fast", "operating_point", "tok_s_gpu"), "operating_point.tok_s_gpu"),
    "no deployment": (_drop("deployment"), "deployment: got None; required"),
    "bad tp": (_set(0, "deployment", "agg", "tp"), "deployment.tp"),
    "unknown deployment key": (_set(1, "deployment", "agg", "tpp"), "deployment.agg.tpp"),
    "gpus disagree": (_set(99, "deployment", "gpus"), "deployment.gpus"),
    "bad sla": (_set(-1, "sla", "min_tok_s_user"), "sla.min_tok_s_user"),
    "bad spec": (_set(0, "spec", "workload", "isl"), "spec.workload.isl"),
    "spec without model": (_drop("spec", "model"), "spec.model: got None; required"),
    "unknown recorded backend": (_set({"name": "nope"}, "backend"), "backend.name"),
    "not a pick": (_set("Other", "kind"), "kind"),
    "a list": (lambda doc: [doc], "pick"),
}


@pytest.mark.parametrize("case", list(BAD_DOCS))
def test_bad_pick_documents_exit_2_naming_the_field(
    case: str,
    pick_doc: dict[str, Any],
    write_pick: Callable[[dict[str, Any]], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    edit, field = BAD_DOCS[case]
    if pick_doc["deployment"]["mode"] != "agg" and "agg" in case:
        pytest.skip("the tiny study picked a disagg deployment")
    path = tmp_path / "pick.yaml"
    path.write_text(yaml.safe_dump(edit(pick_doc)))
    _assert_bad_input(check(path, tmp_path), capsys, field, tmp_path)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--tolerance", "abc"], "--tolerance: got 'abc'"),
        (["--tolerance", "150%"], "--tolerance: got '150%'"),
        (["--tolerance=-1%"], "--tolerance"),
        (["--tolerance", "5"], "--tolerance"),
        (["--backend", "nope"], "--backend: got 'nope'; allowed: "),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], field: str
) -> None:
    _assert_bad_input(check(run_dir / "pick.yaml", tmp_path, *args), capsys, field, tmp_path)


def test_missing_and_unparsable_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _assert_bad_input(check(tmp_path / "absent.yaml", tmp_path), capsys, "pick: got", tmp_path)
    broken = tmp_path / "broken.yaml"
    broken.write_text("deployment: [unclosed\n")
    _assert_bad_input(check(broken, tmp_path), capsys, "must be valid YAML", tmp_path)


def _assert_bad_input(code: int, capsys: pytest.CaptureFixture[str], field: str, tmp_path: Path) -> None:
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and field in lines[0], captured.err
    assert "Traceback" not in captured.err + captured.out
    assert not (tmp_path / "out").exists()  # no report for a check that never ran


# -- tolerance parsing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("5%", 0.05), ("0.05", 0.05), ("0", 0.0), (" 12.5% ", 0.125), ("0%", 0.0), ("99.9%", 0.999)],
)
def test_parse_tolerance(text: str, value: float) -> None:
    assert parse_tolerance(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["abc", "150%", "100%", "1", "-0.1", "nan", "%", ""])
def test_parse_tolerance_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="--tolerance"):
        parse_tolerance(text)
