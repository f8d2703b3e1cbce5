"""Benchmarks as a library: parameter / FLOP / latency summaries (``summary``), the peers' configs
(``peers``) and the side-by-side inference paths (``paths``, import it explicitly: it sits above
``mobilevit.export``). The timing primitives below both are `mobilevit.timing` (re-exported here)."""

from ..timing import (
    InferencePath,
    Latency,
    machine_info,
    measure_alternating,
    measure_latency,
    summarize_times,
)
from .summary import ModelRow, count_flops, count_params, format_table, rows_as_dicts, summarize_models

__all__ = [
    "InferencePath",
    "Latency",
    "ModelRow",
    "count_flops",
    "count_params",
    "format_table",
    "machine_info",
    "measure_alternating",
    "measure_latency",
    "rows_as_dicts",
    "summarize_models",
    "summarize_times",
]
