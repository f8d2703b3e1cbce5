"""Deployment: an optimised eager inference path and ONNX export verified in onnxruntime."""

from .fast import fold_batchnorm, optimize_for_inference
from .onnx import ExportError, export_onnx

__all__ = ["ExportError", "export_onnx", "fold_batchnorm", "optimize_for_inference"]
