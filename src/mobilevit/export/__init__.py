"""Deployment: an optimised eager inference path; ONNX, ExecuTorch (XNNPACK), LiteRT, OpenVINO and
Core ML exports, each verified in its own runtime; int8."""

from .executorch import export_executorch
from .int8 import Int8NotFaster, export_int8
from .int8_torch import Int8Compiled, Int8Unavailable, load_int8_torch, quantize_int8_torch, save_int8_torch
from .litert import export_litert
from .onnx import ExportError, export_onnx
from .openvino import export_openvino
from .optimize import fold_batchnorm, optimize_for_inference

__all__ = [
    "ExportError",
    "export_executorch",
    "export_litert",
    "export_openvino",
    "Int8Compiled",
    "Int8NotFaster",
    "Int8Unavailable",
    "export_int8",
    "export_onnx",
    "fold_batchnorm",
    "load_int8_torch",
    "optimize_for_inference",
    "quantize_int8_torch",
    "save_int8_torch",
]
