"""Dependencies point one way: serving <- search_spaces, backends <- tuner; only the CLI
(tuner/cli.py and tuner/commands/) wires backends, spaces and the study together."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("serving", "search_spaces", "backends", "tuner")
#: What each package may import of ours.
ALLOWED = {
    "serving": set(),
    "search_spaces": {"serving"},
    "backends": {"serving"},
    "tuner": {"serving", "search_spaces", "backends", "tuner"},
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_point_down(package: str) -> None:
    bad = []
    for path in files(package):
        for name in imports_of(path):
            top = name.split(".")[0]
            if top in PACKAGES and top != package and top not in ALLOWED[package]:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, bad


def test_study_front_pick_do_not_import_cli() -> None:
    for path in files("tuner"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("tuner/commands/") or rel == "tuner/cli.py":
            continue
        names = imports_of(path)
        assert not any(n.startswith(("tuner.cli", "tuner.commands")) for n in names), rel


@pytest.mark.parametrize("module", ["tuner/front.py", "tuner/pick.py"])
def test_front_and_pick_are_pure(module: str) -> None:
    names = imports_of(ROOT / module)
    assert not any(n.split(".")[0] in {"optuna", "backends", "search_spaces"} for n in names)


# -- the search package (tuner/search/) and the objectives (tuner/objectives/) -------------
def resolved_imports(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved against its package."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


#: What the search loop must not reach: the run's assembly, its outputs, the CLI.
SEARCH_FORBIDDEN = (
    "tuner.runs",
    "tuner.rundir",
    "tuner.studies",
    "tuner.workers",
    "tuner.outputs",
    "tuner.console",
    "tuner.plot",
    "tuner.export",
    "tuner.commands",
    "tuner.cli",
)


def test_search_package_does_not_reach_up() -> None:
    bad = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "tuner" / "search").glob("*.py"))
        for name in resolved_imports(path)
        if name.startswith(SEARCH_FORBIDDEN)
    ]
    assert not bad, bad


def test_search_record_and_task_are_low() -> None:
    """The trial record and the task import no other module of the search package but each
    other, and nothing that runs trials: every module may read them."""
    for name in ("record", "task"):
        names = resolved_imports(ROOT / "tuner" / "search" / f"{name}.py")
        ours = {n for n in names if n.startswith("tuner.search.") and n.count(".") == 2}
        assert ours <= {"tuner.search.record", "tuner.search.task"}, (name, ours)
        assert not any(
            n.startswith(("tuner.search.loop", "tuner.search.decide", "tuner.study")) for n in names
        )


def _trial_keys() -> set[str]:
    from tuner.search import record

    return {v for k, v in vars(record).items() if k.endswith("_KEY") and isinstance(v, str)}


def test_only_the_trial_record_spells_trial_attribute_keys() -> None:
    """No module but tuner/search/record.py reads or writes a trial's user attribute by its
    string key (``user_attrs["points"]``, ``set_user_attr("fail_reason", ...)``)."""
    keys = _trial_keys()
    assert {"points", "deployment", "fail_reason", "sla_violation"} <= keys
    bad = []
    for path in files("tuner"):
        if path == ROOT / "tuner" / "search" / "record.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            key = _spelled_key(node)
            if isinstance(key, ast.Constant) and key.value in keys:
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} spells {key.value!r}")
    assert not bad, bad


def _spelled_key(node: ast.AST) -> ast.expr | None:
    """The key expression of ``x.user_attrs[k]``, ``x.user_attrs.get(k)``,
    ``x.set_user_attr(k, v)`` or ``storage.set_trial_user_attr(id, k, v)``."""
    if isinstance(node, ast.Subscript) and _is_user_attrs(node.value):
        return node.slice
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return None
    attr, args = node.func.attr, node.args
    if attr == "set_trial_user_attr" and len(args) >= 2:
        return args[1]
    if (attr == "set_user_attr" or (attr == "get" and _is_user_attrs(node.func.value))) and args:
        return args[0]
    return None


def _is_user_attrs(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "user_attrs"


def test_no_private_optuna_api() -> None:
    """Optuna through its public API only: no ``optuna.x._y`` module, no ``_storage`` or
    ``_trial_id`` of an Optuna object."""
    bad = []
    for package in ("tuner", "backends"):
        for path in files(package):
            for name in resolved_imports(path):
                if name.startswith("optuna") and any(part.startswith("_") for part in name.split(".")):
                    bad.append(f"{path.relative_to(ROOT)} imports {name}")
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr in ("_storage", "_trial_id")
                    and not (isinstance(node.value, ast.Name) and node.value.id == "self")
                ):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} uses .{node.attr}")
    assert not bad, bad


def test_an_objective_is_one_module_and_one_registry_line() -> None:
    from tuner.objectives import OBJECTIVES

    modules = sorted(
        p.stem for p in (ROOT / "tuner" / "objectives").glob("*.py") if p.stem not in ("__init__", "base")
    )
    assert modules
    for stem in modules:
        module = __import__(f"tuner.objectives.{stem}", fromlist=["OBJECTIVE"])
        objective = module.OBJECTIVE
        assert OBJECTIVES[objective.name] is objective, stem


def test_live_serving_imports_no_engine() -> None:
    """backends/live is what every live backend shares: it imports no engine's backend."""
    bad = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files("backends/live")
        for name in resolved_imports(path)
        if name.startswith(("backends.vllm", "backends.simulator", "vllm"))
    ]
    assert not bad, bad
    assert files("backends/live"), "the package exists"
