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


def resolved_imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved against its package."""
    package = path.relative_to(ROOT).parent.parts
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            found.add(".".join([*base, *(node.module.split(".") if node.module else [])]))
    return found


def test_live_serving_imports_no_engine() -> None:
    """backends/live is what every live backend shares: it imports no engine's backend."""
    bad = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files("backends/live")
        for name in resolved_imports_of(path)
        if name.startswith(("backends.vllm", "backends.simulator", "vllm"))
    ]
    assert not bad, bad
    assert files("backends/live"), "the package exists"
