"""Deployment: an optimised eager inference path; ONNX, ExecuTorch (XNNPACK), LiteRT, OpenVINO and
Core ML exports, each verified in its own runtime; int8 calibrated and judged on the model's own
images. Every export returns an `ExportReport` (`reports`)."""

from .calibration import Int8Data, Int8Source, int8_source, load_int8_data
from .errors import ExportError
from .executorch import export_executorch
from .int8 import Int8NotFaster, Int8TooInaccurate, export_int8, int8_sensitivity_onnx
from .int8_parts import int8_units
from .int8_torch import (
    Int8Compiled,
    Int8Unavailable,
    int8_sensitivity,
    load_int8_torch,
    quantize_int8_torch,
    save_int8_torch,
)
from .litert import export_litert
from .onnx import export_onnx
from .openvino import export_openvino
from .optimize import fold_batchnorm, optimize_for_inference
from .reports import AccuracyCheck, Delegation, ExportReport, Int8Report, Int8Timing, ParityCheck

__all__ = [
    "AccuracyCheck",
    "Delegation",
    "ExportError",
    "ExportReport",
    "Int8Compiled",
    "Int8Data",
    "Int8NotFaster",
    "Int8Report",
    "Int8Source",
    "Int8Timing",
    "Int8TooInaccurate",
    "Int8Unavailable",
    "ParityCheck",
    "export_executorch",
    "export_int8",
    "export_litert",
    "export_onnx",
    "export_openvino",
    "fold_batchnorm",
    "int8_source",
    "int8_sensitivity",
    "int8_sensitivity_onnx",
    "int8_units",
    "load_int8_data",
    "load_int8_torch",
    "optimize_for_inference",
    "quantize_int8_torch",
    "save_int8_torch",
]
