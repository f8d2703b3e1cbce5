"""Deployment: an optimised eager inference path, ONNX export verified in onnxruntime, int8."""

from .fast import fold_batchnorm, optimize_for_inference
from .int8 import Int8NotFaster, export_int8
from .onnx import ExportError, export_onnx

__all__ = [
    "ExportError",
    "Int8NotFaster",
    "export_int8",
    "export_onnx",
    "fold_batchnorm",
    "optimize_for_inference",
]
