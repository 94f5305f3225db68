"""Reading the files a user hands the tuner: UTF-8 text and YAML, with bounded work.

Every reader turns a bad file into one :class:`ConfigError` naming the field, the file and
what is allowed; none lets a hostile file cost more than a bounded amount of time or memory:

- text must be UTF-8 (the error gives the byte offset of the first bad byte);
- YAML aliases may expand to at most :data:`MAX_YAML_NODES` nodes in all, checked on the
  composed node graph *before* anything is constructed: PyYAML's own constructor needs 90 s
  for a 25-line merge-key bomb (``<<: [*m, *m]`` nested 24 times), and a "billion laughs"
  list bomb, cheap to load, costs gigabytes wherever it is formatted or copied later;
- recursive aliases (a value that contains itself) are refused;
- ``.nan`` and ``.inf`` are refused wherever they appear: no field of a spec, pick, profile,
  constants file or search space means anything with them (a NaN SLA bound silently
  disables the constraint, since every comparison with NaN is false).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

__all__ = ["MAX_YAML_NODES", "parse_yaml", "read_text", "read_yaml"]

#: The most nodes a YAML document may hold once aliases are expanded. The largest file the
#: tuner reads (a multi-GPU hardware profile) has a few thousand; 100k leaves room for any
#: honest use of anchors and bounds a bomb's cost to well under a second.
MAX_YAML_NODES = 100_000
_FLOAT_TAG = "tag:yaml.org,2002:float"
_NON_FINITE = re.compile(r"^[-+]?\.(inf|Inf|INF|nan|NaN|NAN)$")


def read_text(path: Path, field: str, missing: str) -> str:
    """The UTF-8 text of ``path``; :class:`ConfigError` naming ``field`` when the file is
    absent or unreadable (``missing`` says what was expected) or is not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = "" if isinstance(exc, FileNotFoundError) else f" ({exc.strerror or exc})"
        raise ConfigError(field, str(path), missing + reason) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            field, str(path), f"must be UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x})"
        ) from None


def read_yaml(path: Path, field: str, missing: str) -> Any:
    """The parsed YAML file at ``path`` (see :func:`read_text` and :func:`parse_yaml`)."""
    if not path.is_file():
        raise ConfigError(field, str(path), missing)
    return parse_yaml(read_text(path, field, missing), field, str(path))


def parse_yaml(text: str, field: str, source: str) -> Any:
    """``text`` parsed as YAML (safe types only), or one :class:`ConfigError`: not YAML
    (with the line), aliases expanding past :data:`MAX_YAML_NODES`, a recursive alias, or
    a non-finite float (named by its key path, e.g. ``sla.min_tok_s_user``)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node, field, source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(field, f"{source}{where}", "must be valid YAML") from None
    except RecursionError:
        raise ConfigError(field, source, "must be valid YAML nested at most a few hundred levels") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ConfigError(field, source, f"must be valid YAML ({str(exc)[:80]})") from None
    finally:
        loader.dispose()


def _children(node: yaml.Node) -> list[tuple[str | None, yaml.Node]]:
    """(key name or None, child) pairs: mapping keys and values, sequence items."""
    if isinstance(node, yaml.MappingNode):
        out: list[tuple[str | None, yaml.Node]] = []
        for key, value in node.value:
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else None
            out += [(None, key), (name, value)]
        return out
    if isinstance(node, yaml.SequenceNode):
        return [(f"[{i}]", item) for i, item in enumerate(node.value)]
    return []


def _check_graph(root: yaml.Node, field: str, source: str) -> None:
    """Refuse a node graph whose expansion is too large or cyclic, or that holds a
    non-finite float. One pass over the distinct nodes (aliases share nodes), iterative so
    that depth costs no Python stack."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, str, bool]] = [(root, "", False)]
    while stack:
        node, path, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for _, c in _children(node))
            if size[key] > MAX_YAML_NODES:
                raise ConfigError(
                    path.split("[")[0] or field,
                    f"{source} line {node.start_mark.line + 1}",
                    f"YAML aliases may expand to at most {MAX_YAML_NODES:,} values (got {size[key]:,})",
                )
            continue
        if key in size:
            continue
        if key in on_path:
            raise ConfigError(path or field, f"{source} line {node.start_mark.line + 1}", _RECURSIVE)
        if isinstance(node, yaml.ScalarNode) and node.tag == _FLOAT_TAG and _NON_FINITE.match(node.value):
            where = f"{node.value} ({source} line {node.start_mark.line + 1})"
            raise ConfigError(path or field, where, "must be a finite number (no .nan or .inf)")
        on_path.add(key)
        stack.append((node, path, True))
        for name, child in reversed(_children(node)):
            if id(child) not in size:
                child_path = path if name is None else (f"{path}.{name}" if path else name).replace(".[", "[")
                stack.append((child, child_path, False))


_RECURSIVE = "must not contain itself (a recursive YAML alias)"
