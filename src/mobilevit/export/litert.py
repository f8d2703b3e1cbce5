"""LiteRT (TFLite) export through ``litert-torch`` (``.tflite``), verified in ai-edge-litert's
``Interpreter`` (whose default CPU path is the XNNPACK delegate).

The file takes the export's batch and size (litert-torch converts static shapes; a dynamic batch
fails in its converter). ``int8``: litert-torch's PT2E quantizer (symmetric, int8 weights per
output channel, int8 activations calibrated on training images), converted with its
``QuantConfig`` so the file holds int8 kernels; such a file takes and gives int8 tensors (full
integer quantization), which `load_litert` quantizes and dequantizes with the file's own
scales. Inputs stay NCHW as in PyTorch.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Unpack

import numpy as np
import torch
from torch import nn

from ..models.mobilevitv2 import LinearSelfAttention
from .onnx import export_core
from .reports import ExportReport
from .runtime_checks import calibrate, require
from .runtime_export import ExportOptions, Graph, RuntimeBackend, export_to_runtime
from .xnnpack_graph import shape_for_xnnpack

log = logging.getLogger(__name__)

RUNTIME = "LiteRT"


def load_litert(path: str | Path, threads: int | None = None) -> Any:
    """A runner for a ``.tflite`` file: float32 NCHW batch -> list of outputs (``Interpreter``)."""
    interpreter_mod = require("ai_edge_litert.interpreter", RUNTIME)
    interp = interpreter_mod.Interpreter(model_path=str(path), num_threads=threads or torch.get_num_threads())
    runner = interp.get_signature_runner()
    inputs = runner.get_input_details()
    ((input_name, input_detail),) = inputs.items()
    outputs = runner.get_output_details()

    def order(name: str) -> int:  # output_0, output_1, ... in the traced order
        found = re.findall(r"\d+", name)
        return int(found[-1]) if found else 0

    names = sorted(outputs, key=order)

    def run(x: np.ndarray) -> list[np.ndarray]:
        # an int8 file takes and gives int8 tensors: (de)quantized here with the file's own scales
        out = runner(**{input_name: _quantize(np.asarray(x, dtype=np.float32), input_detail)})
        return [_dequantize(out[n], outputs[n]) for n in names]

    return run


def _quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return np.ascontiguousarray(x)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if y.dtype == np.float32:
        return y
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


def litert_graph(model: nn.Module) -> tuple[nn.Module, nn.Module, list[str]]:
    """What the LiteRT export converts: ``(graph, eager reference, output names)``. LiteRT runs on
    XNNPACK too, so the graph is the ExecuTorch one (`shape_for_xnnpack`),
    with the NHWC unfold / fold: the fastest of our graphs in LiteRT. v2's separable attention
    keeps its own form: litert-torch's int8 conversion of the bmm rewrite fails on a broadcast."""
    fast, reference, outputs = export_core(model, patch_layout="nhwc")
    shape_for_xnnpack(fast, keep=(LinearSelfAttention,))
    return fast, reference, outputs


def convert_litert(module: nn.Module, example: torch.Tensor, calib: np.ndarray | None = None) -> Any:
    """``module`` converted by litert-torch (quantized when ``calib`` is given): its edge model.

    Args:
        module: the shaped inference graph.
        example: an input at the file's batch and size.
        calib: calibration images for int8, or None for fp32.

    Returns:
        litert-torch's edge model (``.export(path)`` writes the ``.tflite``).
    """
    litert_torch = require("litert_torch", RUNTIME)
    with torch.no_grad():
        if calib is None:
            return litert_torch.convert(module, (example,))
        # The attention's bmm and softmax stay float, with (de)quantize ops around them: LiteRT's
        # XNNPACK delegate takes no int8 BATCH_MATMUL (annotated int8, it runs on the builtin
        # kernels between delegate pieces, far slower), and the softmax sits between two of
        # them. The residual adds stay float too (the
        # stock annotator finds adds by source partition, which torch.export's graph lacks);
        # annotated int8 by aten op, they changed neither the time nor the agreement.
        q = require("litert_torch.quantize.pt2e_quantizer", RUNTIME)
        quant_config = require("litert_torch.quantize.quant_config", RUNTIME)
        pt2e = require("torchao.quantization.pt2e.quantize_pt2e", RUNTIME)
        quantizer = q.PT2EQuantizer().set_global(q.get_symmetric_quantization_config(is_per_channel=True))
        prepared = pt2e.prepare_pt2e(torch.export.export(module, (example,)).module(), quantizer)
        calibrate(prepared, calib, example.shape[0])
        converted = pt2e.convert_pt2e(prepared, fold_quantize=False)
        return litert_torch.convert(
            converted, (example,), quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer)
        )


def _graph(model: nn.Module) -> Graph:
    return Graph(*litert_graph(model))


def _convert(
    graph: Graph, example: torch.Tensor, calib: np.ndarray | None, precision: str, path: Path
) -> dict[str, Any]:
    convert_litert(graph.module, example, calib).export(str(path))
    return {}


BACKEND = RuntimeBackend(
    name=RUNTIME,
    format="litert",
    suffix=".tflite",
    modules=("litert_torch", "ai_edge_litert.interpreter"),
    graph=_graph,
    convert=_convert,
    load=load_litert,
)


def export_litert(
    model: nn.Module,
    path: str | Path,
    img_size: tuple[int, int] = (256, 256),
    batch: int = 1,
    **options: Unpack[ExportOptions],
) -> ExportReport:
    """Export ``model`` to a LiteRT ``.tflite`` and check it in LiteRT's interpreter.

    The same outputs, checks and arguments as `export_executorch`.

    Args:
        model: a classifier, segmenter or detector (put in eval mode; a detector exports its core).
        path: the file to write.
        img_size: the input ``(H, W)`` the file takes.
        batch: the fixed batch the file takes.
        **options: `ExportOptions`: ``int8``, ``data`` (labelled images of
            the model's classes, required for int8), ``calib_images``, ``max_val``,
            ``model_classes``, ``max_drop``, ``min_agreement``, ``atol``.

    Returns:
        The `ExportReport`.
    """
    return export_to_runtime(BACKEND, model, path, img_size=img_size, batch=batch, **options)
