"""Measured vs datasheet, per GPU type: the fraction of peak this node reaches.

Each row sets a profile's measured figure beside the datasheet peak and beside what the
simulator assumes without a profile (datasheet x fitted fraction, ``constants.yaml``). A
ratio to that assumption under :data:`LOW_RATIO` is flagged: the usual causes are a lowered
power limit, clocks held down, thermal throttling, a PCIe-attached card or a noisy neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.table import Table

from backends.simulator.measured import assumed_figures
from serving.hardware_profile import gpu_from_entry

__all__ = ["LOW_RATIO", "CompareRow", "compare_rows", "compare_table"]

#: Measured / simulator-assumed below this is flagged (kernel timings vary by a few percent
#: run to run and card to card, h200.md caveats; 15% is well outside that).
LOW_RATIO = 0.85

# (label, measured key, datasheet key or None, higher is better)
_ROWS: tuple[tuple[str, str, str | None, bool], ...] = (
    ("HBM copy TB/s", "hbm_copy_tb_s", "hbm_tb_s", True),
    ("HBM read TB/s", "hbm_read_tb_s", "hbm_tb_s", True),
    ("GEMM bf16 TFLOPS (sustained)", "gemm_bf16_tflops", "bf16_tflops", True),
    ("GEMM fp8 TFLOPS (sustained)", "gemm_fp8_tflops", "fp8_tflops", True),
    ("GEMM fixed cost us", "gemm_overhead_us", None, False),
    ("attention prefill TFLOPS", "attn_prefill_tflops", "bf16_tflops", True),
    ("attention decode TB/s", "attn_decode_tb_s", "hbm_tb_s", True),
    ("attention decode fixed us", "attn_decode_overhead_us", None, False),
    ("MoE grouped GEMM TFLOPS", "moe_grouped_tflops", "bf16_tflops", True),
    ("all-reduce bus GB/s", "allreduce_bus_gb_s", "nvlink_gb_s", True),
    ("all-to-all bus GB/s", "all_to_all_bus_gb_s", "nvlink_gb_s", True),
)


@dataclass(frozen=True)
class CompareRow:
    """One figure of one GPU type."""

    gpu: str
    label: str
    measured: float | None
    datasheet: float | None
    assumed: float | None

    @property
    def of_peak(self) -> float | None:
        if self.measured is None or not self.datasheet:
            return None
        return self.measured / self.datasheet

    @property
    def vs_assumed(self) -> float | None:
        if self.measured is None or not self.assumed:
            return None
        return self.measured / self.assumed

    def low(self, higher_is_better: bool = True) -> bool:
        ratio = self.vs_assumed
        if ratio is None:
            return False
        return ratio < LOW_RATIO if higher_is_better else ratio > 1 / LOW_RATIO


def compare_rows(profile: dict[str, Any]) -> list[tuple[CompareRow, bool]]:
    """Rows (and whether higher is better) for every GPU type of a validated profile."""
    rows: list[tuple[CompareRow, bool]] = []
    for entry in profile["gpus"]:
        sheet = dict(entry["datasheet"])
        sheet["nvlink_gb_s"] = (
            entry["interconnect"]["nvlink_gb_s"] if entry["interconnect"].get("source") == "catalog" else None
        )
        assumed: dict[str, float | None] = {}
        if profile["device"] == "cuda" and sheet.get("bf16_tflops") and sheet.get("hbm_tb_s"):
            assumed = assumed_figures(_datasheet_gpu(entry))
        for label, key, sheet_key, higher in _ROWS:
            measured = entry["measured"].get(key)
            rows.append(
                (
                    CompareRow(
                        entry["name"],
                        label,
                        measured,
                        sheet.get(sheet_key) if sheet_key else None,
                        assumed.get(key),
                    ),
                    higher,
                )
            )
    return rows


def _datasheet_gpu(entry: dict[str, Any]) -> Any:
    """The entry as a datasheet-only GPU (what the simulator knows without the profile)."""
    import dataclasses

    from serving.hardware import MEASURED_FIELDS

    gpu = gpu_from_entry(entry)
    cleared: dict[str, Any] = dict.fromkeys(MEASURED_FIELDS)
    return dataclasses.replace(gpu, **cleared)


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:.0%}" if pct else f"{value:,.4g}"


def compare_table(profile: dict[str, Any]) -> list[Table]:
    """One rich table per GPU type."""
    tables: dict[str, Table] = {}
    env = {e["name"]: e for e in profile["gpus"]}
    for row, higher in compare_rows(profile):
        table = tables.get(row.gpu)
        if table is None:
            entry = env[row.gpu]
            e = entry.get("environment") or {}
            title = (
                f"{row.gpu} x{entry['count']} ({entry.get('catalog_id') or 'not in catalog'}); "
                f"power limit {_fmt(e.get('power_limit_w'))} W, "
                f"SM clock max {_fmt(e.get('sm_clock_max_mhz'))} MHz, driver {e.get('driver') or '-'}"
            )
            table = tables[row.gpu] = Table(title=title, title_justify="left")
            for col in (
                "figure",
                "measured",
                "datasheet",
                "of peak",
                "simulator assumes",
                "measured/assumed",
                "",
            ):
                table.add_column(col, justify="left" if col in ("figure", "") else "right")
        flag = f"{'LOW' if higher else 'HIGH'}: throttled or misconfigured?" if row.low(higher) else ""
        table.add_row(
            row.label,
            _fmt(row.measured),
            _fmt(row.datasheet),
            _fmt(row.of_peak, pct=True),
            _fmt(row.assumed),
            _fmt(row.vs_assumed, pct=True),
            flag,
        )
    return list(tables.values())
