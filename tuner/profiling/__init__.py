"""``tuner profile``: measure this machine's GPUs with torch into a hardware profile.

- :mod:`.measure`: timers (CUDA graphs + events, medians, L2 rotation) and the kernels;
- :mod:`.collectives`: NCCL all-reduce / all-to-all over spawned processes;
- :mod:`.plan`: sizes and repeats scaled to the time budget;
- :mod:`.device`: GPU types, NVML environment, catalog matching;
- :mod:`.runner`: runs the sections and assembles the document;
- :mod:`.schema`: headline figures, entries, YAML writing (schema in ``serving.hardware_profile``);
- :mod:`.compare`: measured vs datasheet vs what the simulator assumes.

Nothing here imports torch at import time.
"""

from .compare import compare_rows, compare_table
from .plan import Plan, make_plan
from .runner import run_profile
from .schema import dump_profile, write_profile

__all__ = [
    "Plan",
    "compare_rows",
    "compare_table",
    "dump_profile",
    "make_plan",
    "run_profile",
    "write_profile",
]
