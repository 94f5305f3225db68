"""The one prepared GPU check: `tuner profile` with a 3-minute budget, then the figures + NVML.

Run on a GPU machine from the repository root (needs the ``profile`` extra:
``pip install -e '.[profile]'``)::

    python benchmarks/device_profile.py [--budget-s 180] [--out profiles/<host>.yaml]

It prints the GPUs NVML sees (power limit, clocks, driver), runs ``tuner profile`` into
``--out`` (default ``$OUT/profile.yaml`` when ``$OUT`` is set, else ``profiles/<host>.yaml``),
prints ``tuner profile --compare`` of the result, then NVML power/clocks/throttle reasons
right after the run, and the wall time. Exit status: tuner's (0 = profile written).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def nvml_report(label: str) -> None:
    """Power, clocks, temperature and throttle reasons of every GPU (nothing without pynvml)."""
    try:
        import pynvml
    except ImportError:
        print(f"[{label}] pynvml not installed (pip install nvidia-ml-py): no NVML figures")
        return
    pynvml.nvmlInit()
    print(f"[{label}] driver {pynvml.nvmlSystemGetDriverVersion()}")
    for i in range(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        print(
            f"[{label}] GPU {i} {pynvml.nvmlDeviceGetName(h)}: "
            f"power {pynvml.nvmlDeviceGetPowerUsage(h) / 1000:.0f} W of "
            f"{pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000:.0f} W limit, "
            f"SM {pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)}/"
            f"{pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM)} MHz, "
            f"mem {pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM)} MHz, "
            f"{pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)} C, "
            f"throttle reasons 0x{pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(h):x}"
        )
    pynvml.nvmlShutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=180.0)
    parser.add_argument("--out")
    args = parser.parse_args()
    default_dir = Path(os.environ["OUT"]) if os.environ.get("OUT") else Path("profiles")
    out = Path(args.out) if args.out else default_dir / f"{socket.gethostname()}.yaml"
    nvml_report("before")
    start = time.monotonic()
    tuner = [sys.executable, "-m", "tuner.cli", "profile"]
    code = subprocess.call([*tuner, "--device", "cuda", "--budget-s", str(args.budget_s), "--out", str(out)])
    elapsed = time.monotonic() - start
    nvml_report("after")
    if code == 0:
        subprocess.call([*tuner, "--compare", str(out)])
        print(f"profile: {out} ({elapsed:.0f} s wall, budget {args.budget_s:.0f} s)")
    else:
        print(f"tuner profile failed with exit status {code} after {elapsed:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
